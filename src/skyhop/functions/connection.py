"""The client's end of one node's worker: send calls, match responses by id, stream output.

Writes happen in the caller's thread under a lock (a frame is never interleaved with
another); one reader thread per worker reads responses, resolves the calls' futures and
prints the node's output, so many calls are in flight on one worker at once and throughput
is not bound by the round trip. The reader never writes: a worker blocked writing results
can always be drained.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from typing import Any, Protocol

from skyhop.errors import UserError
from skyhop.functions import protocol as p
from skyhop.functions.errors import RemoteError, RemoteTraceback, WorkerLostError

HANDSHAKE_TIMEOUT_S = 120.0


class Job:
    """One logical call: what to send (kept for retries) and the future the caller holds."""

    __slots__ = ("args_parts", "blob", "digest", "future", "rank", "retries", "timeout",
                 "where")

    def __init__(self, future: Any, digest: bytes, blob: bytes, args_parts: list[Any],
                 timeout: float | None, retries: int, rank: int | None):
        self.future = future
        self.digest, self.blob, self.args_parts = digest, blob, args_parts
        self.timeout, self.retries, self.rank = timeout, retries, rank
        self.where: tuple[WorkerConnection, int] | None = None  # the attempt in flight


class Events(Protocol):
    """What a connection tells its pool (from its reader thread: never blocking)."""

    def failed(self, job: Job, error: BaseException, lost: bool) -> None:
        """The call raised (or its worker was lost): retry it or fail its future."""

    def started(self, conn: WorkerConnection, ident: int, job: Job) -> None:
        """A call with a timeout started running on the node."""

    def lost(self, conn: WorkerConnection) -> None:
        """The worker went away while the pool is open."""


class Printer:
    """Node output, printed here line by line with a `(node-N) ` prefix."""

    def __init__(self, rank: int):
        self.prefix = f"(node-{rank}) "
        self._partial = {1: "", 2: ""}

    def write(self, stream: int, data: bytes) -> None:
        text = self._partial.get(stream, "") + bytes(data).decode(errors="replace")
        *lines, self._partial[stream] = text.split("\n")
        if lines:
            target = sys.stderr if stream == 2 else sys.stdout
            target.write("".join(f"{self.prefix}{line}\n" for line in lines))
            target.flush()

    def flush(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._partial[stream] = ""
                self.write(stream, (rest + "\n").encode())


class WorkerConnection:
    def __init__(self, rank: int, label: str, stream: Any, events: Events):
        self.rank, self.label, self.stream = rank, label, stream
        self._events = events
        self._reader = p.FrameReader(self._readinto)
        self._writer = p.FrameWriter(stream.write)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.pending: dict[int, Job] = {}
        self._known: set[bytes] = set()  # function digests this worker holds
        self.printer = Printer(rank)
        self.closed = False
        self.closing = False
        self.hello: dict[str, Any] = {}
        self.lost_reason = ""
        self.done = threading.Event()

    def _readinto(self, view: memoryview) -> int:
        try:
            return self.stream.readinto(view)
        except (OSError, ValueError):
            return 0

    # -- start -----------------------------------------------------------------------------
    def _deadline(self, what: str) -> threading.Timer:
        """Kill the worker if `what` takes longer than HANDSHAKE_TIMEOUT_S (a hung node)."""
        def expire() -> None:
            self.lost_reason = f"no answer to {what} within {HANDSHAKE_TIMEOUT_S:g} s"
            with contextlib.suppress(OSError, ValueError, UserError):
                self.stream.kill()

        timer = threading.Timer(HANDSHAKE_TIMEOUT_S, expire)
        timer.daemon = True
        timer.start()
        return timer

    def handshake(self) -> dict[str, Any]:
        """Read the worker's HELLO (what it runs on); start-up noise becomes the error."""
        timer = self._deadline("the start")
        try:
            noise = self._reader.skip_to_magic()
            frame = self._reader.read() if noise is not None else None
        finally:
            timer.cancel()
        if frame is None or frame[0] != p.HELLO:
            text = (noise or b"").decode(errors="replace").strip()
            why = text[-2000:] or self.lost_reason
            raise UserError(f"{self.label}: the function worker did not start"
                            + (f":\n{why}" if why else ""),
                            hint="check that python3 runs on the node")
        self.hello = p.read_json(frame[2])
        if self.hello.get("error"):
            raise UserError(f"{self.label}: {self.hello['error']}")
        return self.hello

    def initialize(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Send INIT, wait for READY, then serve responses from the reader thread."""
        with self._lock:
            self._writer.send_json(p.INIT, settings)
        timer = self._deadline("its settings")
        try:
            return self._await_ready()
        finally:
            timer.cancel()

    def _await_ready(self) -> dict[str, Any]:
        while True:
            frame = self._reader.read()
            if frame is None:
                raise UserError(f"{self.label}: the function worker exited while starting"
                                + (f" ({self.lost_reason})" if self.lost_reason else ""))
            kind, ident, parts = frame
            if kind == p.OUTPUT:
                self.printer.write(ident, parts[0])
            elif kind == p.READY:
                threading.Thread(target=self._read_loop, name=f"skyhop-fn-{self.rank}",
                                 daemon=True).start()
                return p.read_json(parts)

    # -- calls -----------------------------------------------------------------------------
    def send(self, job: Job) -> int:
        """Queue the job on this worker; raises WorkerLostError if it is gone."""
        meta = p.CALL_META.pack(job.digest, job.timeout or 0.0)
        with self._lock:
            if self.closed:
                raise WorkerLostError(f"{self.label}: its worker is gone ({self.lost_reason})")
            ident = next(self._ids)
            self.pending[ident] = job
            job.where = (self, ident)
            blob = b"" if job.digest in self._known else job.blob
            self._known.add(job.digest)
            try:
                self._writer.send(p.CALL, ident, [meta, blob, *job.args_parts])
            except (OSError, ValueError, RuntimeError):
                # the reader sees the end of the stream and fails what is pending
                self.lost_reason = self.lost_reason or "its channel broke"
        return ident

    def cancel(self, ident: int) -> None:
        """Skip a call not started yet (a running one finishes; its result is dropped)."""
        with self._lock:
            if self.pending.pop(ident, None) is not None and not self.closed:
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self._writer.send(p.CANCEL, ident)

    def take(self, ident: int) -> Job | None:
        with self._lock:
            return self.pending.pop(ident, None)

    @property
    def load(self) -> int:
        return len(self.pending)

    def _read_loop(self) -> None:
        try:
            while True:
                try:
                    frame = self._reader.read()
                except (OSError, ValueError) as exc:
                    self.lost_reason = self.lost_reason or f"unreadable stream: {exc}"
                    frame = None
                if frame is None:
                    break
                self._dispatch(*frame)
        finally:
            self._lost()

    def _dispatch(self, kind: int, ident: int, parts: list[Any]) -> None:
        if kind == p.OUTPUT:
            self.printer.write(ident, parts[0])
            return
        if kind == p.START:
            job = self.pending.get(ident)
            if job is not None:
                self._events.started(self, ident, job)
            return
        job = self.take(ident)
        if job is None:  # cancelled, or already failed by the timeout watchdog
            return
        self.printer.flush()
        if kind == p.RESULT:
            try:
                value = p.loads(parts)
            except Exception as exc:
                self._settle(job, exc=UserError(
                    f"the result from {self.label} cannot be unpickled here: {exc}",
                    hint="return plain values, or install the same libraries on both sides"))
                return
            self._settle(job, value=value)
        elif kind == p.ERROR:
            self._events.failed(job, self._remote_exception(parts), False)

    @staticmethod
    def _settle(job: Job, value: Any = None, exc: BaseException | None = None) -> None:
        if job.future.done():
            return
        with contextlib.suppress(Exception):  # InvalidStateError: cancelled meanwhile
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(value)

    def _remote_exception(self, parts: list[Any]) -> BaseException:
        try:
            exc, name, message, text = p.loads(parts)
        except Exception as error:  # its class does not exist here
            return RemoteError("exception", f"(could not be unpickled here: {error})",
                               self.label)
        if not isinstance(exc, BaseException):
            exc = RemoteError(name, message, self.label)
        exc.__cause__ = RemoteTraceback(text)
        with contextlib.suppress(AttributeError, TypeError):
            exc.add_note(f"(raised on {self.label}; its traceback is above)")
        return exc

    def _lost(self) -> None:
        with self._lock:
            self.closed = True
            jobs = list(self.pending.values())
            self.pending.clear()
        self.printer.flush()
        if not self.closing:
            reason = self.lost_reason or "its process exited or the node went away"
            error = WorkerLostError(f"{self.label}: the function worker was lost ({reason})")
            for job in jobs:
                self._events.failed(job, error, True)
            self._events.lost(self)
        else:
            for job in jobs:
                self._settle(job, exc=WorkerLostError(f"{self.label}: the pool was closed"))
        self.done.set()

    # -- stop ------------------------------------------------------------------------------
    def shutdown(self, wait: float = 2.0) -> None:
        """Ask the worker to exit after its current call; kill it if it does not."""
        self.closing = True
        with self._lock:
            if not self.closed:
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self._writer.send(p.SHUTDOWN)
        with contextlib.suppress(OSError, ValueError):
            self.stream.close()
        self.done.wait(wait)
        self.kill("the pool was closed")  # and release what the stream holds

    def kill(self, reason: str) -> None:
        with self._lock:  # no new call goes to it; the pool waits for its replacement
            self.closed = True
            self.lost_reason = self.lost_reason or reason
        with contextlib.suppress(OSError, ValueError, UserError):
            self.stream.kill()
