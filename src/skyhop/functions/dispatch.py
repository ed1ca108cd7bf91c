"""Sending calls to a pool's workers: choosing a node, retries, timeouts, lost workers.

A call goes to the least-loaded live worker (`>>`, `>`, groups, map) or to a given rank
(`@`). A call that raised or whose worker was lost is sent again while it has retries left.
A call with a timeout is interrupted on its node when its time is up; if it does not stop,
a watchdog here kills its worker a little later, and the pool starts a fresh one.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

from skyhop.errors import UserError
from skyhop.functions import protocol
from skyhop.functions.connection import Job, WorkerConnection
from skyhop.functions.errors import WorkerLostError

if TYPE_CHECKING:
    from skyhop.functions.function import Call, Group

RESTART_WAIT_S = 120.0
DEFAULT_WINDOW_PER_NODE = 64


def timeout_grace(timeout: float) -> float:
    """How long past its timeout a call may take to stop before its worker is killed."""
    return 2.0 + 0.1 * timeout


class Slot:
    """One node's worker, replaced when it is lost."""

    def __init__(self, rank: int, conn: WorkerConnection):
        self.rank = rank
        self.conn = conn
        self.ready = threading.Event()
        self.ready.set()
        self.dead: str | None = None  # why it could not be restarted


class Watchdog:
    """Kills a worker whose call ran past its timeout without stopping."""

    def __init__(self, expire: Callable[[WorkerConnection, int], None]):
        self._expire = expire
        self._heap: list[tuple[float, int, WorkerConnection, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.stopped = False

    def arm(self, deadline: float, conn: WorkerConnection, ident: int) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), conn, ident))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="skyhop-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self.stopped and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    delay = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(delay)
                if self.stopped:
                    return
                _, _, conn, ident = heapq.heappop(self._heap)
            self._expire(conn, ident)

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify()


class Dispatcher:
    def __init__(self, restart: Callable[[int], WorkerConnection]):
        self._restart = restart  # starts a fresh worker for a rank (blocking)
        self.slots: list[Slot] = []
        self._rotate = itertools.count()
        self.closing = False
        self.watchdog = Watchdog(self._expire)

    def add(self, conn: WorkerConnection) -> None:
        self.slots.append(Slot(conn.rank, conn))

    # -- events from the connections' reader threads ----------------------------------------
    def failed(self, job: Job, error: BaseException, lost: bool) -> None:
        if job.future.done():
            return
        if job.retries > 0 and not self.closing:
            job.retries -= 1
            # never block a reader thread: it must keep draining its worker
            threading.Thread(target=self._resend, args=(job,), daemon=True).start()
            return
        with contextlib.suppress(Exception):  # cancelled meanwhile
            job.future.set_exception(error)

    def started(self, conn: WorkerConnection, ident: int, job: Job) -> None:
        assert job.timeout is not None
        self.watchdog.arm(time.monotonic() + job.timeout + timeout_grace(job.timeout),
                          conn, ident)

    def lost(self, conn: WorkerConnection) -> None:
        slot = self.slots[conn.rank]
        if self.closing or slot.conn is not conn:
            return
        slot.ready.clear()
        threading.Thread(target=self._replace, args=(slot, conn), daemon=True).start()

    def _replace(self, slot: Slot, old: WorkerConnection) -> None:
        try:
            old.kill("replaced")
            slot.conn = self._restart(slot.rank)
            slot.dead = None
        except BaseException as exc:  # the node itself is gone: calls bound to it fail
            slot.dead = str(exc)
        finally:
            slot.ready.set()

    def _expire(self, conn: WorkerConnection, ident: int) -> None:
        job = conn.take(ident)
        if job is None:  # it finished, or was cancelled, in time
            return
        limit = job.timeout or 0.0
        self.failed(job, TimeoutError(
            f"{conn.label}: the call did not finish within its timeout of {limit:g} s and "
            "did not stop when interrupted; its worker was restarted"), False)
        conn.kill("a call overran its timeout")

    # -- sending -------------------------------------------------------------------------
    def _connection(self, rank: int | None) -> WorkerConnection:
        deadline = time.monotonic() + RESTART_WAIT_S
        while True:
            if self.closing:
                raise UserError("the pool is closed (its `with` block ended)",
                                hint="send calls inside `with skyhop.Compute(...) as pool:`")
            if rank is not None:
                slot = self.slots[rank]
                slot.ready.wait(max(0.0, deadline - time.monotonic()))
                if slot.dead:
                    raise WorkerLostError(f"node-{rank}: its worker could not be restarted: "
                                          f"{slot.dead}")
                if slot.ready.is_set() and not slot.conn.closed:
                    return slot.conn
            else:
                start = next(self._rotate)
                ordered = self.slots[start % len(self.slots):] + self.slots[
                    :start % len(self.slots)]
                live = [s.conn for s in ordered if s.ready.is_set() and not s.conn.closed]
                if live:
                    return min(live, key=lambda c: c.load)
                if all(s.dead for s in self.slots):
                    raise WorkerLostError("every worker of the pool is gone: "
                                          + "; ".join(str(s.dead) for s in self.slots))
            if time.monotonic() > deadline:
                raise WorkerLostError("no worker of the pool came back in "
                                      f"{RESTART_WAIT_S:g} s")
            time.sleep(0.01)

    def send(self, job: Job) -> Future:
        """Queue the job on a worker; its future resolves with the value or the error."""
        try:
            while True:
                conn = self._connection(job.rank)
                try:
                    conn.send(job)
                    return job.future
                except WorkerLostError:
                    continue  # it just died: the next look finds its replacement
        except (UserError, WorkerLostError) as exc:
            with contextlib.suppress(Exception):
                job.future.set_exception(exc)
            return job.future

    def _resend(self, job: Job) -> None:
        self.send(job)

    def job(self, call: Call, pickled: dict | None = None, rank: int | None = None,
            args_parts: list | None = None) -> Job:
        """A job for a call; `pickled` memoizes function pickles within one dispatch."""
        fn = call.fn
        key = id(fn)
        if pickled is None or key not in pickled:
            digest_blob = fn.pickled()
            if pickled is not None:
                pickled[key] = digest_blob
        else:
            digest_blob = pickled[key]
        if args_parts is None:
            args_parts = self.pickle_args(call)
        future: Future = Future()
        job = Job(future, digest_blob[0], digest_blob[1], args_parts, fn.timeout,
                  fn.retries, rank)
        future.add_done_callback(lambda f: f.cancelled() and _cancel(job))
        return job

    @staticmethod
    def pickle_args(call: Call) -> list:
        try:
            return protocol.dumps((call.args, call.kwargs))
        except Exception as exc:
            raise UserError(f"the arguments of {call.fn.__qualname__} cannot be pickled: "
                            f"{exc}", hint="pass plain values; create live resources "
                                          "(locks, sockets, files) inside the function") from exc

    # -- the operators ---------------------------------------------------------------------
    def submit(self, call: Call) -> Future:
        return self.send(self.job(call))

    def run(self, call: Call) -> Any:
        return self.submit(call).result()

    def broadcast_futures(self, call: Call, pickled: dict | None = None) -> list[Future]:
        args = self.pickle_args(call)
        pickled = {} if pickled is None else pickled
        return [self.send(self.job(call, pickled, rank, args))
                for rank in range(len(self.slots))]

    def broadcast(self, call: Call) -> list[Any]:
        return collect(self.broadcast_futures(call))

    def group_futures(self, group: Group) -> list[Future]:
        pickled: dict = {}
        return [self.send(self.job(call, pickled)) for call in group.calls]

    def run_group(self, group: Group) -> tuple | Iterator[Any]:
        futures = self.group_futures(group)
        if not group.stream:
            return tuple(collect(futures))
        return _in_order(futures) if group.ordered else _as_completed(futures)

    def submit_group(self, group: Group) -> Future:
        futures = self.group_futures(group)
        combined: Future = Future()
        remaining = [len(futures)]
        lock = threading.Lock()

        def one_done(_: Future) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception()]
            with contextlib.suppress(Exception):
                if errors:
                    combined.set_exception(errors[0])
                else:
                    combined.set_result(tuple(f.result() for f in futures))

        for future in futures:
            future.add_done_callback(one_done)
        if not futures:
            combined.set_result(())
        return combined

    def broadcast_group(self, group: Group) -> tuple[list, ...]:
        pickled: dict = {}
        per_call = [self.broadcast_futures(call, pickled) for call in group.calls]
        return tuple(collect(futures) for futures in per_call)

    def map(self, fn: Any, items: Iterable[Any], max_in_flight: int | None) -> Iterator[Any]:
        from skyhop.functions.function import Call, RemoteFunction

        remote = fn if isinstance(fn, RemoteFunction) else RemoteFunction(fn, None, 0)
        window = max_in_flight or DEFAULT_WINDOW_PER_NODE * len(self.slots)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise UserError(f"max_in_flight must be a whole number >= 1, not {window!r}")
        pickled: dict = {}
        in_flight: deque[Future] = deque()
        try:
            for item in items:
                in_flight.append(self.send(self.job(Call(remote, (item,), {}), pickled)))
                while len(in_flight) >= window:  # back-pressure: wait for the oldest
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            for future in in_flight:  # the caller stopped early or a call failed
                future.cancel()

    def close(self) -> None:
        self.closing = True
        self.watchdog.stop()


def _cancel(job: Job) -> None:
    if job.where is not None:
        conn, ident = job.where
        conn.cancel(ident)


def collect(futures: list[Future]) -> list[Any]:
    """Values in order; on the first error the calls not yet done are cancelled."""
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _in_order(futures: list[Future]) -> Iterator[Any]:
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def _as_completed(futures: list[Future]) -> Iterator[Any]:
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        for future in pending:
            future.cancel()
