"""The function worker: one persistent process per node, serving calls from one client.

    python3 -m skyhop.functions.worker      (stdin/stdout: the framed channel to the client)

Standard library plus cloudpickle (shipped in the runtime zip), Python 3.8+. Calls run one
after another in the main thread, in the order they arrive; a reader thread keeps taking
requests meanwhile, so the client can pipeline many calls without waiting for each. Output
written to file descriptors 1 and 2 (print, C extensions, child processes) is captured and
streamed back to the client, always before the result of the call that printed it.

The worker lives exactly as long as its channel: when the client closes it or dies (its end
of the pipe or SSH channel goes away), the worker and its process group exit at once.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from skyhop.functions import protocol as p

FUNCTION_CACHE = 256  # unpickled functions kept, by the digest of their pickle


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        written = os.write(fd, view)
        view = view[written:]


def _die() -> None:
    """The client is gone: stop this worker and whatever its calls started, now."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(0)


class Output:
    """Captures fds 1 and 2 through pipes and sends what they carry as OUTPUT frames."""

    def __init__(self, send: Any):
        self._send = send
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}
        for stream in (1, 2):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.dup2(write_end, stream)
            os.close(write_end)
            self._fds[read_end] = stream
        # Line-buffered text streams on the captured fds: prints show up as they happen.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        threading.Thread(target=self._pump, name="skyhop-output", daemon=True).start()

    def _pump(self) -> None:
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        while True:
            poller.poll()
            self.drain()

    def drain(self) -> None:
        """Send whatever is buffered in the pipes (before a result goes out)."""
        with self._lock:
            for fd, stream in self._fds.items():
                while True:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not data:
                        break
                    self._send(p.OUTPUT, stream, [data])

    def flush(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        self.drain()


class _Timeout(BaseException):
    """Raised in the call by the alarm; a BaseException so `except Exception` in user code
    does not swallow it."""


class Worker:
    def __init__(self) -> None:
        # The protocol keeps the original stdin/stdout; user code gets /dev/null as stdin.
        self._in = os.dup(0)
        self._out = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self._write_lock = threading.Lock()
        self._writer = p.FrameWriter(lambda data: _write_all(self._out, data))
        self._queue: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._cancelled: set = set()
        self._functions: collections.OrderedDict = collections.OrderedDict()
        self._alarm = False

    def send(self, kind: int, ident: int, parts: Any) -> None:
        with self._write_lock:
            self._writer.send(kind, ident, parts)

    def hello(self) -> None:
        info: dict[str, Any] = {"python": list(sys.version_info[:3]), "pid": os.getpid(),
                                "executable": sys.executable, "host": socket.gethostname()}
        try:
            import cloudpickle

            info["cloudpickle"] = cloudpickle.__version__
        except Exception as exc:  # reported by the client with the node's name
            info["error"] = f"cannot import cloudpickle: {exc}"
        with socket.socket() as probe:  # a free port for rendezvous, if this is the head
            probe.bind(("", 0))
            info["port"] = probe.getsockname()[1]
        with self._write_lock:
            _write_all(self._out, p.MAGIC)
            self._writer.send_json(p.HELLO, info)

    # -- requests ------------------------------------------------------------------------
    def read_loop(self) -> None:
        reader = p.FrameReader(lambda view: os.readv(self._in, [view]))
        while True:
            try:
                frame = reader.read()
            except (OSError, ValueError):
                frame = None
            if frame is None:
                _die()
            kind, ident, parts = frame  # type: ignore[misc]
            if kind == p.CANCEL:
                self._cancelled.add(ident)
                continue
            with self._ready:
                self._queue.append((kind, ident, parts))
                self._ready.notify()

    def next_request(self) -> Any:
        with self._ready:
            while not self._queue:
                self._ready.wait()
            return self._queue.popleft()

    def serve(self) -> None:
        self.hello()
        threading.Thread(target=self.read_loop, name="skyhop-reader", daemon=True).start()
        self.output = Output(self.send)
        while True:
            kind, ident, parts = self.next_request()
            if kind == p.SHUTDOWN:
                self.output.flush()
                return
            if kind == p.INIT:
                self.init(p.read_json(parts))
            elif kind == p.CALL:
                if ident in self._cancelled:
                    self._cancelled.discard(ident)
                    continue
                self.call(ident, parts)
                self._cancelled.discard(ident)  # a cancel that came too late to skip it

    def init(self, settings: dict[str, Any]) -> None:
        """Environment, import paths and the node's place in the pool, before any call."""
        os.environ.update(settings.get("env") or {})
        paths = [path for path in settings.get("sys_path") or [] if path not in sys.path]
        sys.path[1:1] = paths
        if paths:
            old = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
        info = settings.get("info") or {}
        os.environ["SKYHOP_FUNCTION_INFO"] = json.dumps(info)
        if info:
            os.environ["SKYHOP_NODE_RANK"] = str(info.get("rank", 0))
            os.environ["SKYHOP_NUM_NODES"] = str(info.get("node_count", 1))
            os.environ["SKYHOP_NODE_IPS"] = "\n".join(info.get("addresses") or [])
        versions: dict[str, str | None] = {}
        try:
            from importlib import metadata

            for name in settings.get("check") or []:
                try:
                    versions[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    versions[name] = None
        except ImportError:  # pragma: no cover - Python < 3.8
            pass
        self.send(p.READY, 0, [json.dumps({"versions": versions}).encode()])

    # -- calls ---------------------------------------------------------------------------
    def _function(self, digest: bytes, blob: Any) -> Any:
        if len(blob):
            fn = p.loads([blob])
            self._functions[digest] = fn
            if len(self._functions) > FUNCTION_CACHE:
                self._functions.popitem(last=False)
            return fn
        self._functions.move_to_end(digest)
        return self._functions[digest]

    def _on_alarm(self, signum: int, frame: Any) -> None:
        self._alarm = True
        raise _Timeout

    def call(self, ident: int, parts: Any) -> None:
        digest, timeout = p.CALL_META.unpack(bytes(parts[0]))
        self._alarm = False
        previous = None
        try:
            fn = self._function(digest, parts[1])
            args, kwargs = p.loads(parts[2:])
            if timeout > 0:  # the client arms its own watchdog when this arrives
                self.send(p.START, ident, [])
                previous = signal.signal(signal.SIGALRM, self._on_alarm)
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                value = fn(*args, **kwargs)
            finally:
                if timeout > 0:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
            if self._alarm:  # the call swallowed the alarm and returned anyway
                raise _Timeout
            result = p.dumps(value)
        except BaseException as exc:  # everything goes back to the caller, even SystemExit
            self.output.flush()
            self.send(p.ERROR, ident, self._error(exc, timeout))
            return
        self.output.flush()
        self.send(p.RESULT, ident, result)

    def _error(self, exc: BaseException, timeout: float) -> Any:
        tb = exc.__traceback__
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next  # the worker's own frame says nothing to the user
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        if isinstance(exc, _Timeout) or self._alarm:
            # where the call was when its time ran out, as a TimeoutError
            exc = TimeoutError(f"the call did not finish within its timeout of {timeout:g} s")
            text = text.rstrip("\n").rsplit("\n", 1)[0] + f"\nTimeoutError: {exc}\n"
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        try:
            return p.dumps((exc, name, str(exc), text))
        except Exception:  # an exception that cannot be pickled: its text still goes back
            return p.dumps((None, name, str(exc), text))


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    worker = Worker()
    try:
        worker.serve()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
    _die()  # a clean SHUTDOWN: leave nothing behind that the calls started


if __name__ == "__main__":
    main()
