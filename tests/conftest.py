import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKYHOP_SHARED_DATA", ROOT.parent / "shared" / "data"))

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and
# so would every process it starts: the Ctrl-C tests would wait forever. A handler (unlike
# an ignored signal) is reset at exec, so the children get Python's usual Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `skyhop` command as a user would (a real process)."""
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=120)


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """Point skyhop (this process and the CLI processes it starts) at an isolated
    SKYHOP_HOME: its own state database and `config.yaml`, nothing from the environment."""
    from skyhop import config
    from skyhop.state import db

    monkeypatch.setenv("SKYHOP_HOME", str(home))
    monkeypatch.delenv("SKYHOP_DB_URL", raising=False)
    monkeypatch.delenv("SKYHOP_CONFIG", raising=False)
    config.reload()
    db.engine_for.cache_clear()
    return home


@pytest.fixture(scope="session")
def catalog():
    from skyhop.catalog.catalog import load_catalog

    return load_catalog()
