"""Run on a node being released: stop everything skyhop started there and remove its files.

    python3 -m skyhop.execute.node_cleanup

Stops the agent, every process marked as started for this node (jobs, setup), and every
process group recorded for SSH commands; then removes the workdir and skyhop's files except
the runtime cache. Processes of the machine's other users and of the user outside skyhop are
left alone. Standard library only (shipped to the nodes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

from skyhop.execute.remote import PID_DIR, WORKDIR
from skyhop.execute.runner import kill_group, kill_marked


def main() -> None:
    home = Path(os.path.expanduser("~"))
    agent_pid = home / ".skyhop" / "agent" / "agent.pid"
    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
        os.kill(int(agent_pid.read_text()), signal.SIGTERM)
    kill_marked(f"{home}", grace=2.0)
    me = os.getpgid(0)
    pid_dir = home / PID_DIR
    for entry in pid_dir.glob("*") if pid_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            pgid = int(entry.read_text())
            if pgid != me:
                kill_group(pgid, grace=2.0)
    shutil.rmtree(home / WORKDIR, ignore_errors=True)
    for child in (home / ".skyhop").glob("*") if (home / ".skyhop").is_dir() else []:
        if child.name != "runtime":
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


if __name__ == "__main__":
    main()
