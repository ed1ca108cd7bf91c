"""A runner for a machine reached over SSH (asyncssh): one reused connection per node.

asyncssh is asynchronous; the executor is not. Every SSH connection lives on one event
loop in a background thread and the runner's methods wait on it, so many nodes are driven
in parallel (threads submit, the loop multiplexes) over one connection each.

Host keys: trust on first use, recorded in a known-hosts file (OpenSSH format); a changed
key afterwards is refused with a message saying how to fix it. Cloud nodes get a known-hosts
file per cluster (addresses are reused by new machines); pool hosts share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from skyhop import errors
from skyhop.errors import UserError
from skyhop.execute import remote
from skyhop.execute.runner import check_relative

CONNECT_TIMEOUT_S = 20.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_connections: dict[tuple, Any] = {}
_connection_locks: dict[tuple, asyncio.Lock] = {}


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="skyhop-ssh", daemon=True).start()
        return _loop


def _wait(coro: Any, timeout: float | None = None) -> Any:
    future = asyncio.run_coroutine_threadsafe(coro, _background_loop())
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()  # do not leave it running (holding a connection lock) on the loop
        raise


class Unreachable(errors.Unreachable):
    """The node does not answer over SSH, or refuses our key."""


class SSHRunner:
    def __init__(self, host: str, user: str, key_path: str | Path, port: int = 22,
                 known_hosts: str | Path | None = None, label: str | None = None):
        self.host, self.user, self.port = host, user, int(port)
        self.key_path = str(Path(key_path).expanduser())
        self.known_hosts = Path(known_hosts) if known_hosts else None
        self.label = label or f"{user}@{host}" + (f":{port}" if int(port) != 22 else "")
        self._home: str | None = None

    # -- connection ---------------------------------------------------------------------
    @property
    def _key(self) -> tuple:
        return (self.host, self.port, self.user, self.key_path)

    async def _connection(self) -> Any:
        import asyncssh

        lock = _connection_locks.setdefault(self._key, asyncio.Lock())
        async with lock:
            conn = _connections.get(self._key)
            if conn is not None and not conn.is_closed():
                return conn
            try:
                conn = await asyncio.wait_for(asyncssh.connect(
                    self.host, self.port, username=self.user, client_keys=[self.key_path],
                    known_hosts=self._known_hosts_arg(), agent_path=None,
                    keepalive_interval=15), CONNECT_TIMEOUT_S)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise Unreachable(
                    f"{self.label}: its host key changed since skyhop first connected ({exc})",
                    hint=f"if the machine was reinstalled, remove its line from "
                         f"{self.known_hosts}") from None
            except asyncssh.PermissionDenied:
                raise Unreachable(f"{self.label}: the key {self.key_path} was refused",
                                  hint="add its public key to ~/.ssh/authorized_keys there, or "
                                       "set identity_file") from None
            except (OSError, TimeoutError, asyncssh.Error) as exc:
                reason = str(exc) or type(exc).__name__
                raise Unreachable(f"cannot reach {self.label}: {reason}",
                                  hint="is the machine up and is port "
                                       f"{self.port} open to this one?") from None
            if self.known_hosts is not None:
                self._remember(conn.get_server_host_key())
            _connections[self._key] = conn
            return conn

    def _host_pattern(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _known_hosts_arg(self) -> Any:
        """The recorded key (verified), or None for the first contact (trust on first use)."""
        if self.known_hosts is None or not self.known_hosts.exists():
            return None
        pattern = self._host_pattern()
        lines = [line for line in self.known_hosts.read_text().splitlines()
                 if line.split(" ", 1)[0] == pattern]
        if not lines:
            return None
        import asyncssh

        return asyncssh.import_known_hosts("\n".join(lines) + "\n")

    def _remember(self, key: Any) -> None:
        assert self.known_hosts is not None
        pattern = self._host_pattern()
        existing = (self.known_hosts.read_text().splitlines()
                    if self.known_hosts.exists() else [])
        if any(line.split(" ", 1)[0] == pattern for line in existing):
            return
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        line = f"{pattern} {key.export_public_key().decode().strip()}\n"
        with self.known_hosts.open("a") as fh:
            fh.write(line)

    def check(self, timeout: float = 15.0) -> None:
        """Raise Unreachable with a clear reason unless the node answers now. A cached
        connection may be dead without knowing it (the host vanished): probe it, and on
        silence drop it and connect afresh."""
        async def probe() -> None:
            conn = await self._connection()
            try:
                await asyncio.wait_for(conn.run("true", check=False), timeout)
            except Exception:  # any failure of the old connection: try a new one
                conn.close()
                _connections.pop(self._key, None)
                fresh = await self._connection()
                await asyncio.wait_for(fresh.run("true", check=False), timeout)

        try:
            _wait(probe())
        except Unreachable:
            raise
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach {self.label}: {exc or type(exc).__name__}",
                              hint=f"is the machine up and is port {self.port} open to this "
                                   "one?") from None

    def close(self) -> None:
        conn = _connections.pop(self._key, None)
        if conn is not None:
            _background_loop().call_soon_threadsafe(conn.close)

    # -- commands -----------------------------------------------------------------------
    async def _run(self, command: str, stdin: bytes, output: Callable[[str], None] | None,
                   token: str | None) -> int:
        conn = await self._connection()
        process = await conn.create_process(remote.launcher(token), encoding=None,
                                            stderr=-2)  # asyncssh.STDOUT
        process.stdin.write(stdin)
        process.stdin.write_eof()
        async for line in process.stdout:
            if output is not None:
                output(line.decode(errors="replace"))
        completed = await process.wait()
        return completed.exit_status if completed.exit_status is not None else 255

    def run(self, command: str, *, env: dict[str, str] | None = None,
            cwd: str | None = None, output: Callable[[str], None] | None = None) -> int:
        token = f"run-{time.time_ns()}"
        future = asyncio.run_coroutine_threadsafe(
            self._fresh_on_failure(lambda: self._run(command, remote.script(command, env, cwd),
                                                     output, token)),
            _background_loop())
        try:
            return future.result()
        except Unreachable:
            raise
        except BaseException:
            future.cancel()
            with contextlib.suppress(Unreachable):
                self.output_of(remote.kill_command(token, "KILL"))
            raise

    async def _fresh_on_failure(self, start: Callable[[], Any]) -> Any:
        """Run `start()`; when the cached connection turns out dead (the host went away or
        rebooted), drop it and try once on a new one; still failing means unreachable."""
        import asyncssh

        for attempt in (1, 2):
            try:
                return await start()
            except (OSError, asyncssh.Error) as exc:
                if isinstance(exc, asyncssh.ProcessError):
                    raise
                conn = _connections.pop(self._key, None)
                if conn is not None:
                    conn.close()
                if attempt == 2:
                    raise Unreachable(f"lost the connection to {self.label}: "
                                      f"{exc or type(exc).__name__}",
                                      hint="is the machine still up?") from None
        raise AssertionError("unreachable")

    def output_of(self, command: str, stdin: bytes = b"") -> tuple[int, str]:
        """(exit code, output) of a short command run as is."""
        code, out, err = self.capture(command, stdin)
        return code, out.decode(errors="replace") + err.decode(errors="replace")

    def capture(self, command: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr) of a short command run as is, as bytes."""
        async def go() -> tuple[int, bytes, bytes]:
            conn = await self._connection()
            result = await conn.run(command, input=stdin, encoding=None, check=False)
            return (result.exit_status if result.exit_status is not None else 255,
                    result.stdout or b"", result.stderr or b"")

        return _wait(self._fresh_on_failure(go))

    @property
    def home(self) -> str:
        if self._home is None:
            code, out = self.output_of('printf %s "$HOME"')
            if code != 0 or not out.startswith("/"):
                raise Unreachable(f"{self.label}: cannot find the home directory ({out})")
            self._home = out
        return self._home

    def resolve(self, path: str) -> str:
        if path == "~":
            return self.home
        if path.startswith("~/"):
            return f"{self.home}/{path[2:]}"
        return path if path.startswith("/") else f"{self.home}/{path}"

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        target = shlex.quote(self.resolve(path))
        code, out = self.output_of(f"umask 077; mkdir -p $(dirname {target}) && cat > {target}"
                                   f" && chmod {mode:o} {target}", data)
        if code != 0:
            raise UserError(f"{self.label}: cannot write {path}: {out.strip()}")

    # -- files --------------------------------------------------------------------------
    # File names may hold any byte but NUL and `/`: listings are NUL-separated and names go
    # through argv, NUL-separated stdin or tar headers, never a newline-split text.
    def list_files(self, dst: str) -> dict[str, tuple[int, int]]:
        root = shlex.quote(self.resolve(dst))
        _, out, _ = self.capture(f"[ -d {root} ] && find {root} -type f -printf "
                                 "'%P\\0%s\\0%T@\\0' || true")
        return _parse_listing(out)

    def file_meta(self, path: str) -> tuple[int, int] | None:
        target = shlex.quote(self.resolve(path))
        _, out, _ = self.capture(f"[ -f {target} ] && find {target} -maxdepth 0 -type f "
                                 "-printf '\\0%s\\0%T@\\0' || true")
        return _parse_listing(out).get("")

    def copy_files(self, src_root: Path, relative_paths: Iterable[str], dst: str) -> None:
        paths = list(relative_paths)
        if not paths:
            return
        for rel in paths:
            check_relative(rel)
        if self._has_rsync():
            self._rsync(src_root, paths, dst)
            return
        self._untar(self.resolve(dst), [(src_root / rel, rel) for rel in paths])

    def put_file(self, local: Path, path: str) -> None:
        target = self.resolve(path)
        parent, _, name = target.rstrip("/").rpartition("/")
        if not name or name in (".", ".."):
            raise UserError(f"{self.label}: {path!r} does not name a file")
        parent = parent or "/"
        if self._has_rsync():  # one file, renamed by rsync on the node
            self._mkdir(parent)
            self._rsync_run(["--", str(local), f"{self.user}@{self.host}:{target}"], b"")
            return
        self._untar(parent, [(local, name)])

    def _untar(self, dst: str, members: list[tuple[Path, str]]) -> None:
        """Send files as a tar stream (written as it is read, never whole in memory),
        unpacked under `dst` on the node with the names given. Each member carries its
        modification time to the nanosecond, so an unchanged file is seen as unchanged."""
        stream = self.open_process("tar -x -f - --no-same-owner", cwd=dst)
        failure = None
        try:
            sink = io.BufferedWriter(_DrainedSink(stream), buffer_size=1 << 20)
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for local, name in members:
                    info = tar.gettarinfo(local, arcname=name)
                    mtime_ns = local.stat().st_mtime_ns
                    info.pax_headers = {**info.pax_headers, "mtime": _decimal(mtime_ns)}
                    if info.isreg():
                        with local.open("rb") as fh:
                            tar.addfile(info, fh)
                    else:
                        tar.addfile(info)
            sink.flush()
        except (OSError, UserError) as exc:  # e.g. the remote tar ended early: say why
            failure = exc
        stream.close()
        out, code = stream.read_all().decode(errors="replace"), stream.wait()
        if code != 0 or failure is not None:
            raise UserError(f"{self.label}: copying files failed: "
                            f"{out.strip() or failure or f'exit code {code}'}")

    def remove_files(self, dst: str, relative_paths: Iterable[str]) -> None:
        root = os.fsencode(self.resolve(dst))
        listing = b""
        for rel in relative_paths:
            check_relative(rel)
            listing += root + b"/" + os.fsencode(rel) + b"\0"
        if listing:
            self.capture("xargs -0 rm -f --", listing)

    def _mkdir(self, path: str) -> None:
        code, out = self.output_of(f"mkdir -p -- {shlex.quote(path)}")
        if code != 0:
            raise UserError(f"{self.label}: cannot make {path}: {out.strip()}")

    def _has_rsync(self) -> bool:
        if shutil.which("rsync") is None:
            return False
        return self.output_of("command -v rsync >/dev/null")[0] == 0

    def ssh_argv(self) -> list[str]:
        """OpenSSH's `ssh` to this node with the same key and trusted host keys (append
        the destination, `self.user@self.host`, after any options)."""
        return remote.openssh_argv(self.key_path, self.port, str(self._openssh_known_hosts()))

    def _rsync(self, src_root: Path, paths: list[str], dst: str) -> None:
        self._mkdir(self.resolve(dst))
        self._rsync_run(["--files-from=-", "--from0", "--", f"{src_root}/",
                         f"{self.user}@{self.host}:{self.resolve(dst)}/"],
                        b"".join(os.fsencode(p) + b"\0" for p in paths))

    def _rsync_run(self, args: list[str], stdin: bytes) -> None:
        import subprocess

        ssh = shlex.join([*self.ssh_argv(), "-o", "BatchMode=yes"])
        # -s (--secluded-args, formerly --protect-args): the remote path reaches the remote
        # rsync as is, not through the remote shell (any character in a name stays literal).
        result = subprocess.run(["rsync", "-a", "-s", "-e", ssh, *args],
                                input=stdin, capture_output=True)
        if result.returncode != 0:
            raise UserError(f"{self.label}: rsync failed: "
                            f"{result.stderr.decode(errors='replace').strip()}")

    def _openssh_known_hosts(self) -> Path:
        """For OpenSSH (rsync, `skyhop ssh`): the host keys this runner already trusts."""
        if self.known_hosts is not None:
            return self.known_hosts
        from skyhop import paths

        return paths.home() / "known_hosts"

    # -- the cluster agent --------------------------------------------------------------
    def python(self) -> str:
        """How to run skyhop's node-side code there (the agent): the runtime zip on the
        node's python3."""
        from skyhop.execute import runtime

        return runtime.ensure(self)

    def connect_agent(self, address: str, timeout: float | None = 10.0) -> AgentChannel:
        return _wait(self._fresh_on_failure(lambda: _open_agent_channel(self, address)),
                     timeout)


    def open_process(self, command: str, *, env: dict[str, str] | None = None,
                     cwd: str | None = None) -> ChannelStream:
        """Start a long-lived process (a function worker) on an SSH channel whose stdin and
        stdout are one duplex byte stream (stderr joins stdout). The environment travels
        on the channel, never on a command line; the process group is recorded so node
        cleanup stops it."""
        token = f"fn-{time.time_ns()}"
        lines = remote.exports(env)
        target = cwd or f"~/{remote.WORKDIR}"
        quoted = ("~/" + shlex.quote(target[2:])) if target.startswith("~/") else (
            shlex.quote(target))
        lines += [f"mkdir -p {quoted} && cd {quoted} || exit 1",
                  f"mkdir -p ~/{remote.PID_DIR} && echo $$ > ~/{remote.PID_DIR}/{token}",
                  # (not exec: the record goes when the process ends, see remote.launcher)
                  f"{command}; rc=$?; rm -f ~/{remote.PID_DIR}/{token}; exit $rc"]
        import base64

        prologue = base64.b64encode("\n".join(lines).encode()) + b"\n"
        process = _wait(_open_process(self, prologue), CONNECT_TIMEOUT_S + 10)
        return ChannelStream(process, self, token)


# Reads one line (bash's `read` takes exactly one line from a pipe, leaving the rest for the
# worker), decodes the script in it and runs it; the script ends by exec'ing the worker.
_OPEN_LAUNCHER = "bash -c " + shlex.quote(
    'umask 077; IFS= read -r s && eval "$(printf %s "$s" | base64 -d)"')


async def _open_process(runner: SSHRunner, prologue: bytes) -> Any:
    import asyncssh

    conn = await runner._connection()
    try:
        process = await conn.create_process(_OPEN_LAUNCHER, encoding=None,
                                            stderr=asyncssh.STDOUT)
    except (OSError, asyncssh.Error) as exc:
        _connections.pop(runner._key, None)  # a dead connection: the next call reconnects
        raise Unreachable(f"{runner.label}: cannot start a process there: "
                          f"{exc or type(exc).__name__}",
                          hint="is the machine still up and reachable?") from None
    process.stdin.write(prologue)
    return process


class ChannelStream:
    """An SSH channel as a blocking byte stream for threads outside the event loop. Small
    writes are handed to the loop without waiting; large ones wait for the channel to drain
    slice by slice, so a big value is never buffered whole."""

    SMALL = 256 * 1024
    SLICE = 1024 * 1024

    def __init__(self, process: Any, runner: SSHRunner, token: str):
        self._process = process
        self._runner = runner
        self._token = token
        self.label = runner.label

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if view.nbytes <= self.SMALL:
            _background_loop().call_soon_threadsafe(self._write_now, bytes(view))
            return
        for start in range(0, view.nbytes, self.SLICE):
            _wait(self._write_and_drain(bytes(view[start:start + self.SLICE])))

    def _write_now(self, data: bytes) -> None:
        try:
            self._process.stdin.write(data)
        except Exception:  # a closed channel: the reader sees its end
            self._process.close()

    async def _write_and_drain(self, data: bytes) -> None:
        self._process.stdin.write(data)
        await self._process.stdin.drain()

    def write_drained(self, data: bytes) -> None:
        """Write and wait until the channel takes it (back-pressure for long streams)."""
        try:
            _wait(self._write_and_drain(data))
        except Exception as exc:  # asyncssh's errors too: the channel is closed
            raise BrokenPipeError(f"{self.label}: the remote end closed ({exc})") from None

    def read_all(self) -> bytes:
        """Everything the process writes until it exits (stderr joins stdout)."""
        chunks = []
        buffer = memoryview(bytearray(65536))
        while n := self.readinto(buffer):
            chunks.append(bytes(buffer[:n]))
        return b"".join(chunks)

    def wait(self) -> int:
        """The process's exit status (255 when the channel gave none)."""
        completed = _wait(self._process.wait())
        return completed.exit_status if completed.exit_status is not None else 255

    def readinto(self, buffer: memoryview) -> int:
        try:
            data = _wait(self._process.stdout.read(len(buffer)))
        except Exception:
            return 0
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        """End-of-file to the worker: it exits, and so does the channel."""
        def eof() -> None:
            try:
                self._process.stdin.write_eof()
            except Exception:
                self._process.close()

        _background_loop().call_soon_threadsafe(eof)

    def kill(self, grace: float = 2.0) -> None:
        _background_loop().call_soon_threadsafe(self._process.close)
        with contextlib.suppress(UserError):  # a node that is gone took its processes along
            self._runner.output_of(remote.kill_command(self._token, "KILL"))


def _decimal(ns: int) -> str:
    """Nanoseconds since the epoch as the decimal seconds a pax header holds."""
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _parse_listing(out: bytes) -> dict[str, tuple[int, int]]:
    """{name: (size, mtime_ns)} from find's `%P\\0%s\\0%T@\\0` records."""
    fields = out.split(b"\0")
    files: dict[str, tuple[int, int]] = {}
    for i in range(0, len(fields) - 2, 3):
        name, size, mtime = fields[i:i + 3]
        seconds, _, fraction = mtime.decode("ascii", "replace").partition(".")
        if not size.isdigit() or not seconds.lstrip("-").isdigit():
            continue
        files[os.fsdecode(name)] = (int(size), int(seconds) * 10**9
                                    + int((fraction + "0" * 9)[:9] or 0))
    return files


class _DrainedSink(io.RawIOBase):
    """A ChannelStream as a raw binary file for io.BufferedWriter."""

    def __init__(self, stream: ChannelStream):
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._stream.write_drained(bytes(data))
        return len(data)


class AgentChannel:
    """A socket-like stream to the agent's Unix socket on the node, over an SSH channel
    running a tiny bridge there (it copies bytes both ways; the token travels inside the
    request, never on a command line)."""

    def __init__(self, process: Any):
        self._process = process
        self._timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def sendall(self, data: bytes) -> None:
        # asyncssh objects belong to the loop's thread: hand the write over to it
        _background_loop().call_soon_threadsafe(self._process.stdin.write, data)

    def recv(self, size: int) -> bytes:
        """Like a socket's: a lost SSH connection is a ConnectionResetError (an OSError),
        no answer in time a TimeoutError."""
        import asyncssh

        try:
            return _wait(self._process.stdout.read(size), self._timeout)
        except asyncssh.Error as exc:
            raise ConnectionResetError(str(exc) or type(exc).__name__) from None

    def close(self) -> None:
        _background_loop().call_soon_threadsafe(self._process.close)

    def __enter__(self) -> AgentChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BRIDGE = """
import os, socket, sys, threading
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    if len(path.encode()) < 100:
        s.connect(path)
    else:  # too long for a socket address: through a descriptor of its folder
        d = os.open(os.path.dirname(path), os.O_RDONLY)
        s.connect("/proc/self/fd/%d/%s" % (d, os.path.basename(path)))
except OSError:
    sys.exit(3)
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


async def _open_agent_channel(runner: SSHRunner, address: str) -> AgentChannel:
    """A stream to the agent; when it does not listen the stream just ends (the client
    reports the agent as unreachable)."""
    conn = await runner._connection()
    process = await conn.create_process(
        f"python3 -c {shlex.quote(_BRIDGE)} {shlex.quote(address)}", encoding=None)
    return AgentChannel(process)
