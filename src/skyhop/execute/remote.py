"""Running commands on another machine over SSH: the shell side, shared by the client's
asyncssh runner and by a cluster's head node, whose agent reaches the other nodes with the
OpenSSH client. Standard library only: this module is shipped to the nodes.

A command is sent as a script on stdin, not on the command line, so environment values
(secrets included) never show up in a process list. The remote shell is the session leader
of its SSH channel, so its PID is the process group of everything the command starts; it
writes that PID to a file, and killing the group stops the whole command.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from pathlib import Path

WORKDIR = "sky_workdir"
PID_DIR = ".skyhop/pids"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def exports(env: dict[str, str] | None) -> list[str]:
    """`export NAME=value` lines, values quoted. Names are checked where they enter (task
    file, --env); one that is not a POSIX name here would be shell syntax, so it is refused."""
    lines = []
    for key, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{key[:80]!r} is not a valid environment variable name")
        lines.append(f"export {key}={shlex.quote(value)}")
    return lines


def script(command: str, env: dict[str, str] | None = None, cwd: str | None = None) -> bytes:
    """The script a remote shell runs: exports, the working directory, the command."""
    lines = ['rm -f "$0"', *exports(env)]  # the script deletes itself once bash has it open
    target = cwd or f"~/{WORKDIR}"
    quoted = ("~/" + shlex.quote(target[2:])) if target.startswith("~/") else (
        "~" if target == "~" else shlex.quote(target))
    lines.append(f"mkdir -p {quoted} && cd {quoted} || exit 1")
    lines.append(command)
    return ("\n".join(lines) + "\n").encode()


def launcher(pid_token: str | None = None) -> str:
    """The remote command line that reads the script from stdin and runs it, recording its
    process group under ~/.skyhop/pids/TOKEN when asked."""
    if not pid_token:
        return "bash -c " + shlex.quote('umask 077; f=$(mktemp) && cat > "$f" && '
                                        'exec bash "$f" </dev/null')
    # The record is removed when the command ends: a stale one could name a process group
    # that the PID's next owner (someone else's, on a pool machine) has by then.
    path = f"~/{PID_DIR}/{pid_token}"
    return "bash -c " + shlex.quote(
        f'umask 077; f=$(mktemp) && cat > "$f" && mkdir -p ~/{PID_DIR} && echo $$ > {path}; '
        f'bash "$f" </dev/null; rc=$?; rm -f {path}; exit $rc')


def kill_command(pid_token: str, signal_name: str = "TERM") -> str:
    path = f"~/{PID_DIR}/{pid_token}"
    return (f'p=$(cat {path} 2>/dev/null) && kill -{signal_name} -- -"$p" 2>/dev/null; '
            f'[ "{signal_name}" = KILL ] && rm -f {path}; true')


def openssh_argv(key: str, port: int, known_hosts: str) -> list[str]:
    """OpenSSH's `ssh` with skyhop's key, trusting a node's host key on first use and
    remembering it in `known_hosts` (options, then the destination, may follow)."""
    return ["ssh", "-i", key, "-p", str(port), "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "LogLevel=ERROR"]


class OpenSSHRunner:
    """A node reached with the `ssh` client (from a cluster's head node): enough of the
    Runner surface for the agent, which spawns, streams and kills jobs."""

    def __init__(self, address: str, user: str, key: str, port: int = 22,
                 known_hosts: str = "~/.skyhop/known_hosts"):
        self.address, self.user, self.port = address, user, port
        self.key = str(Path(key).expanduser())
        self.known_hosts = str(Path(known_hosts).expanduser())
        self.home = "~"
        self._tokens: dict[int, str] = {}

    def ssh_args(self) -> list[str]:
        return [*openssh_argv(self.key, self.port, self.known_hosts), "-o", "BatchMode=yes",
                "-o", "ServerAliveInterval=15", "-o", "ConnectTimeout=20",
                f"{self.user}@{self.address}"]

    def spawn(self, command: str, *, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        token = f"job-{time.time_ns()}"
        process = subprocess.Popen([*self.ssh_args(), launcher(token)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        assert process.stdin is not None
        process.stdin.write(script(command, env, cwd))
        process.stdin.close()
        self._tokens[process.pid] = token
        return process

    def run(self, command: str, *, env: dict[str, str] | None = None,
            cwd: str | None = None, output=None) -> int:
        process = self.spawn(command, env=env, cwd=cwd)
        assert process.stdout is not None
        for raw in process.stdout:
            if output is not None:
                output(raw.decode(errors="replace"))
        return process.wait()

    def kill(self, process: subprocess.Popen, grace: float = 5.0) -> None:
        token = self._tokens.get(process.pid)
        if token is not None:
            self._remote(kill_command(token, "TERM"))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
            self._remote(kill_command(token, "KILL"))
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)

    def _remote(self, command: str) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([*self.ssh_args(), command], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)

