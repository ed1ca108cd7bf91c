"""Interactive SSH sessions on this node, for autostop's `wait_for: jobs_and_ssh`.

As SkyPilot counts them: a process on a pseudo-terminal (`ssh host`, not skyhop's own
tty-less commands) below an sshd. Read from /proc with the standard library, since the
agent runs on bare nodes."""

from __future__ import annotations

import os
from pathlib import Path

# Linux's pseudo-terminal slaves (/dev/pts/N) have majors 136-143:
# https://www.kernel.org/doc/Documentation/admin-guide/devices.txt
_PTS_MAJORS = range(136, 144)


def _stat(pid: str) -> tuple[str, int, int] | None:
    """(command name, parent pid, controlling tty device) of a process; None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # `pid (comm) state ppid pgrp session tty_nr ...`; comm may hold spaces and parens
    name, _, rest = raw.partition(" (")[2].rpartition(") ")
    fields = rest.split()
    return name, int(fields[1]), int(fields[4])


def _same_network(pid: str, ours: str | None) -> bool:
    """A session of this node, not of another on the same kernel (test hosts share one in
    network namespaces). A process we may not inspect counts as ours."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == ours
    except OSError:
        return True


def interactive_ssh_sessions() -> int:
    """How many pseudo-terminals on this node have a process started through sshd."""
    table = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (entry := _stat(pid)) is not None:
            table[int(pid)] = entry
    try:
        ours = os.readlink("/proc/self/ns/net")
    except OSError:
        ours = None
    terminals = set()
    for pid, (_, _, tty) in table.items():
        if (tty >> 8) & 0xFFF not in _PTS_MAJORS or tty in terminals:
            continue
        parent, hops = table[pid][1], 0
        while parent in table and hops < 64:  # an sshd above it: `sshd` or `sshd-session`
            if table[parent][0].startswith("sshd"):
                if _same_network(str(pid), ours):
                    terminals.add(tty)
                break
            parent, hops = table[parent][1], hops + 1
    return len(terminals)
