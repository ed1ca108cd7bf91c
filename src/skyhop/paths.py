"""Where skyhop keeps its files: `SKYHOP_HOME` (default `~/.skyhop`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

HOME_ID_FILE = "home_id"


def home() -> Path:
    """The skyhop home directory, created on first use (the owner's alone)."""
    path = Path(os.environ.get("SKYHOP_HOME") or Path.home() / ".skyhop").expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:  # a home made by an older skyhop, or by hand
        path.chmod(0o700)  # everything below it (state, logs, keys, nodes) is then private
    return path


def home_id() -> str:
    """A random id for this skyhop home, made once: it tells two homes apart where they
    share something (a pool login, a database, a checkpoint bucket)."""
    path = home() / HOME_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # Written aside, then linked in: link fails if the file exists, so two first commands
    # at once agree on one id and no reader ever sees a half-written file.
    tmp = path.with_name(f".{HOME_ID_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(8) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def db_url() -> str:
    """`SKYHOP_DB_URL` (e.g. postgresql+psycopg://...) or SQLite under the home."""
    return os.environ.get("SKYHOP_DB_URL") or f"sqlite:///{home() / 'state.db'}"
