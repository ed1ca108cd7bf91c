"""Where skyhop keeps its files: `SKYHOP_HOME` (default `~/.skyhop`)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The skyhop home directory, created on first use."""
    path = Path(os.environ.get("SKYHOP_HOME") or Path.home() / ".skyhop").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_url() -> str:
    """`SKYHOP_DB_URL` (e.g. postgresql+psycopg://...) or SQLite under the home."""
    return os.environ.get("SKYHOP_DB_URL") or f"sqlite:///{home() / 'state.db'}"
