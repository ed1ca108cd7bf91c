"""Runners execute commands and move files on one node. Same surface for a local sandbox
and (later) an SSH host, so the executor never knows which it drives."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Protocol

from skyhop.errors import UserError

# Every process skyhop starts on a local node carries this variable, so teardown can find
# exactly the processes it started (by PID, never by name).
NODE_MARKER = "SKYHOP_NODE_DIR"
WORKDIR = "sky_workdir"  # SkyPilot's name for the synced workdir, kept for compatibility


class Process(Protocol):
    pid: int
    stdout: IO[bytes] | None

    def wait(self, timeout: float | None = None) -> int: ...

    def poll(self) -> int | None: ...


class Runner(Protocol):
    home: str  # the node's home: where `~` and the workdir live

    def run(self, command: str, *, env: dict[str, str] | None = None,
            cwd: str | None = None, output: Callable[[str], None] | None = None) -> int:
        """Run to completion; each output line goes to `output`. Returns the exit code."""

    def spawn(self, command: str, *, env: dict[str, str] | None = None,
              cwd: str | None = None) -> Process:
        """Start in its own process group, stdout+stderr piped."""

    def kill(self, process: Process, grace: float = 5.0) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after `grace` seconds."""

    def copy_files(self, src_root: Path, relative_paths: Iterable[str], dst: str) -> None:
        """Copy files (paths relative to src_root) under dst on the node."""

    def remove_files(self, dst: str, relative_paths: Iterable[str]) -> None: ...

    def list_files(self, dst: str) -> dict[str, tuple[int, int]]:
        """{relative path: (size, mtime_ns)} of every file under dst."""

    def file_meta(self, path: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of one file on the node, None when it is not a regular file."""

    def put_file(self, local: Path, path: str) -> None:
        """Copy one local file to `path` on the node (any name there; parents made, the
        modification time kept). Done on the node: nothing local is moved or renamed."""

    def resolve(self, path: str) -> str:
        """A node path with `~` and relative parts resolved."""


def check_relative(rel: str) -> None:
    """A path relative to a sync root must stay under it: no absolute path, no `..`.
    (A listing is never trusted to be well-formed.)"""
    if not rel or rel.startswith("/") or ".." in rel.split("/") or "\0" in rel:
        raise ValueError(f"refusing a path outside the synced folder: {rel!r}")


def confined(root: Path, path: str) -> Path:
    """Where a node path lies on this machine for a node that is the folder `root`: always
    under it. `~` and relative paths start at the folder (the node's home); an absolute path
    outside it is taken inside it too (`/data/x` is `<root>/data/x`), since this machine's
    real /data is not the node's. A path whose `..` leads out is refused (UserError)."""
    base = os.path.normpath(root)
    if path == "~" or path.startswith("~/"):
        joined = os.path.join(base, path[2:])
    elif os.path.isabs(path) and not _under(os.path.normpath(path), base):
        joined = os.path.join(base, os.path.normpath(path).lstrip("/"))
    else:
        joined = os.path.join(base, path)
    target = os.path.normpath(joined)
    if "\0" in path or not _under(target, base):
        raise UserError(f"the node path {path!r} leads outside the local node's folder",
                        hint="on the local provider a node is a folder: give a path under "
                             "`~` (absolute paths are taken inside the folder), without "
                             "`..` leading out of it")
    return Path(target)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class LocalRunner:
    """A node that is a directory on this machine; processes in their own process groups."""

    def __init__(self, node_dir: Path):
        self.node_dir = Path(node_dir)
        self.home = str(self.node_dir)
        self.label = f"local node {self.node_dir.name}"

    def python(self) -> str:
        """How to run skyhop's node-side code (the agent) on this node."""
        import shlex
        import sys

        return shlex.quote(sys.executable)

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        target = Path(self.resolve(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)

    def connect_agent(self, address: str, timeout: float | None = 10.0):
        return connect_unix(address, timeout)

    def resolve(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return str(self.node_dir / path[2:]) if path != "~" else str(self.node_dir)
        if not os.path.isabs(path):
            return str(self.node_dir / path)
        return path

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        merged = dict(os.environ)
        # The node's home is its sandbox, as on a fresh VM: `~/data` in a file mount and
        # `~/data` in the job are the same place, and nodes do not share dotfiles.
        merged["HOME"] = str(self.node_dir)
        merged.update(env or {})
        merged[NODE_MARKER] = str(self.node_dir)
        return merged

    def spawn(self, command: str, *, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        workdir = self.resolve(cwd or f"~/{WORKDIR}")
        os.makedirs(workdir, exist_ok=True)
        return subprocess.Popen(
            ["/bin/bash", "-c", command], cwd=workdir, env=self._env(env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)

    def run(self, command: str, *, env: dict[str, str] | None = None,
            cwd: str | None = None, output: Callable[[str], None] | None = None) -> int:
        process = self.spawn(command, env=env, cwd=cwd)
        try:
            assert process.stdout is not None
            with process.stdout:
                for raw in process.stdout:
                    if output is not None:
                        output(raw.decode(errors="replace"))
            return process.wait()
        except BaseException:
            self.kill(process)
            raise

    def open_process(self, command: str, *, env: dict[str, str] | None = None,
                     cwd: str | None = None) -> ProcessStream:
        """Start a long-lived process (a function worker) whose stdin and stdout are one
        duplex byte stream; stderr goes to the same stream. Marked like every process
        started for the node, in its own process group."""
        workdir = self.resolve(cwd or f"~/{WORKDIR}")
        os.makedirs(workdir, exist_ok=True)
        return ProcessStream(subprocess.Popen(
            ["/bin/bash", "-c", f"exec {command}"], cwd=workdir, env=self._env(env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            bufsize=0, start_new_session=True))

    def kill(self, process: Process, grace: float = 5.0) -> None:
        kill_group(process.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)

    def node_path(self, path: str) -> Path:
        """A node path for file operations (syncs, mounts): always under the node's folder,
        whatever `~`, `..` or absolute parts it has (see `confined`)."""
        path_here = confined(self.node_dir, path)
        # A symlink on the way (made by a job) must not lead out either.
        real_root = os.path.realpath(self.node_dir)
        if not _under(os.path.realpath(path_here), real_root):
            raise UserError(f"{self.label}: {path!r} leads outside the node's folder "
                            "(through a symbolic link)")
        return path_here

    def copy_files(self, src_root: Path, relative_paths: Iterable[str], dst: str) -> None:
        root = self.node_path(dst)
        for rel in relative_paths:
            check_relative(rel)
            target = self.node_path(str(root / rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src_root / rel, target)

    def put_file(self, local: Path, path: str) -> None:
        target = self.node_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)

    def file_meta(self, path: str) -> tuple[int, int] | None:
        try:
            st = self.node_path(path).lstat()
        except FileNotFoundError:
            return None
        import stat

        return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None

    def remove_files(self, dst: str, relative_paths: Iterable[str]) -> None:
        root = self.node_path(dst)
        for rel in relative_paths:
            check_relative(rel)
            self.node_path(str(root / rel)).unlink(missing_ok=True)

    def list_files(self, dst: str) -> dict[str, tuple[int, int]]:
        root = self.node_path(dst)
        out: dict[str, tuple[int, int]] = {}
        if not root.is_dir():
            return out
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
        return out


class ProcessStream:
    """A local process's stdin/stdout as one byte stream: write() sends all of the data,
    readinto() returns what arrived (0 at the end), close() sends end-of-file."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.label = f"pid {process.pid}"

    def write(self, data: bytes | memoryview) -> None:
        assert self.process.stdin is not None
        view = memoryview(data).cast("B")
        while view.nbytes:
            written = self.process.stdin.write(view)
            view = view[written or 0:]

    def readinto(self, buffer: memoryview) -> int:
        assert self.process.stdout is not None
        return self.process.stdout.readinto(buffer) or 0

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()

    def kill(self, grace: float = 2.0) -> None:
        """Stop its process group (quick when it already exited) and release the pipes."""
        kill_group(self.process.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()


def connect_unix(address: str, timeout: float | None = 10.0):
    """A connected socket to a Unix socket on this machine (OSError when none listens)."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with short_unix_path(address) as path:
            sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def short_unix_path(path: str) -> Iterator[str]:
    """`path` itself, or, when it is too long for a Unix socket address (108 bytes), the
    same file reached through an open descriptor of its folder: /proc/self/fd/N/NAME."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{os.path.basename(path)}"
    finally:
        os.close(folder)


def _stat(pid: str) -> tuple[str, int] | None:
    """(state letter, process group) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in the group: killpg(0) also counts zombies,
    which an init that does not reap (containers, sandboxes) leaves behind."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                return True
    return False


def kill_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL what is left after `grace` s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def processes_marked(node_dir_prefix: str) -> list[int]:
    """PIDs of processes whose environment marks them as started for a node under the
    prefix (our own processes, found by PID)."""
    wanted = f"{NODE_MARKER}={node_dir_prefix}".encode()
    pids = []
    me = os.getpid()
    try:  # a node is one network namespace: containers (or test hosts) sharing this
        my_net = os.readlink("/proc/self/ns/net")  # kernel's PIDs are other nodes
    except OSError:
        my_net = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            if my_net is not None and os.readlink(f"/proc/{entry}/ns/net") != my_net:
                continue
        except OSError:
            continue
        if any(var.startswith(wanted) for var in environ.split(b"\0")):
            pids.append(int(entry))
    return pids


def kill_marked(node_dir_prefix: str, grace: float = 3.0) -> None:
    """Stop every process started for nodes under the prefix (and their groups)."""
    for _ in range(3):  # a dying parent may spawn; sweep until nothing is left
        pids = processes_marked(node_dir_prefix)
        if not pids:
            return
        threads = [threading.Thread(target=_kill_pid, args=(pid, grace)) for pid in pids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _kill_pid(pid: int, grace: float) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid == pid:
        kill_group(pid, grace)
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            stat = _stat(str(pid))
            if stat is None or stat[0] in ("Z", "X"):
                return
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
