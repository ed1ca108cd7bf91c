"""The managed-jobs controller: one asyncio process serving every job of a skyhop home.

    python -m skyhop.jobs.controller

Started on demand in the background by `skyhop jobs launch` (and by `jobs queue` when active
jobs have no live controller); at most one runs per home (an exclusive lock on
`jobs/controller.lock`). It adopts every active job (the `controller` column is taken over
by compare-and-set from a controller that is gone), drives each with a `JobDriver` in
worker threads, and exits after a minute with nothing to do. State is only in the
database, so SIGKILL at any moment loses nothing: the next controller continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
import time
from typing import Any

from skyhop import paths
from skyhop.errors import UserError
from skyhop.jobs import store as js
from skyhop.jobs.driver import JobDriver
from skyhop.jobs.store import JobStore, ManagedJob

POLL_S = float(os.environ.get("SKYHOP_JOBS_POLL_S") or 2.0)
IDLE_EXIT_S = 60.0
MAX_THREADS = 64  # blocking steps (provisioning, SSH) run in these
MAX_STEP_ERRORS = 5  # consecutive errors of one job's steps before it is failed


def lock_path() -> str:
    path = paths.home() / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return str(path / "controller.lock")


def running() -> bool:
    """Whether a controller holds the lock for this home."""
    with open(lock_path(), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def ensure_running() -> None:
    """Start a controller in the background unless one runs."""
    if running():
        return
    log = paths.home() / "jobs" / "controller.log"
    with open(log, "ab") as out:
        subprocess.Popen([sys.executable, "-m", "skyhop.jobs.controller"], stdin=subprocess.DEVNULL,
                         stdout=out, stderr=out, start_new_session=True,
                         env={**os.environ})


def controller_id() -> str:
    from skyhop.execute.reconcile import owner_tag

    return owner_tag()


class Controller:
    def __init__(self, driver: JobDriver | None = None, idle_exit_s: float = IDLE_EXIT_S,
                 lock_inode: int | None = None) -> None:
        self.store = driver.jobs if driver is not None else JobStore()
        self.driver = driver or JobDriver(self.store)
        self.idle_exit_s = idle_exit_s
        self.lock_inode = lock_inode  # of the lock file held (main); None: no lock
        self.me = controller_id()
        self.tasks: dict[int, asyncio.Task] = {}
        self._last_count: dict[int, float] = {}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=MAX_THREADS))
        idle_since = time.monotonic()
        while self._still_serves_home():
            active = await asyncio.to_thread(self.store.list, True)
            new = [j for j in active if j.id not in self.tasks]
            for job_id in await asyncio.to_thread(self._adopt, new):
                self.tasks[job_id] = asyncio.create_task(self._drive(job_id))
            for job_id in [j for j, t in self.tasks.items() if t.done()]:
                self.tasks.pop(job_id)
            if self.tasks:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.idle_exit_s:
                return
            await asyncio.sleep(min(POLL_S, 1.0))

    def _still_serves_home(self) -> bool:
        """False once the home's lock file is gone or replaced (the home was deleted or
        recreated): this process serves nothing any more, and a new controller may start."""
        if self.lock_inode is None:
            return True
        try:
            return os.stat(paths.home() / "jobs" / "controller.lock").st_ino == self.lock_inode
        except OSError:
            return False

    def _adopt(self, jobs: list[ManagedJob]) -> list[int]:
        """Jobs this controller now drives: its own, and those of controllers that are
        gone (never those of another live controller, e.g. on another machine)."""
        from skyhop.execute.reconcile import owner_alive

        mine = [j.id for j in jobs if j.controller == self.me]
        alive: dict[str, bool] = {}
        orphans = {}
        for job in jobs:
            owner = job.controller
            if owner == self.me:
                continue
            if owner is not None:
                if owner not in alive:
                    alive[owner] = owner_alive(owner)
                if alive[owner]:
                    continue
            orphans[job.id] = owner
        return mine + (self.store.claim_many(self.me, orphans) if orphans else [])

    async def _drive(self, job_id: int) -> None:
        """Step the job until it is final; errors of one job never stop the others."""
        blocked: Any = None
        errors = 0
        while True:
            job = await asyncio.to_thread(self.store.get, job_id)
            if job is None or job.status in js.TERMINAL or job.controller != self.me:
                return
            try:
                blocked = await asyncio.to_thread(self._step, job, blocked)
                errors = 0
            except Exception as exc:  # one job's trouble never stops the others
                errors += 1
                text = (exc.message if isinstance(exc, UserError)
                        else f"unexpected {type(exc).__name__}: {exc}")
                if errors >= MAX_STEP_ERRORS:
                    await asyncio.to_thread(self._give_up, job, text)
                    return
                await asyncio.to_thread(self.store.note, job_id, f"retrying: {text}")
                await asyncio.sleep(min(POLL_S * 2 ** errors, 60.0))
                continue
            await asyncio.sleep(POLL_S if (job.status == js.RUNNING) else 0.05)

    def _give_up(self, job: ManagedJob, reason: str) -> None:
        self.driver._teardown(job.cluster)
        self.store.transition(job.id, js.FAILED, f"gave up: {reason}", failure=reason)

    def _step(self, job: ManagedJob, blocked: Any) -> Any:
        """One decision; returns the blocklist the next launch must respect."""
        d = self.driver
        if job.cancel_requested:
            d.cancel(job)
            return None
        if job.status in (js.PENDING, js.STARTING, js.RECOVERING):
            if job.status == js.PENDING:
                self.store.transition(job.id, js.STARTING, "starting")
                job = self.store.get(job.id) or job
            self._choose_market(job)
            d.launch(job, blocked or d.blocked_for(job))
            return None
        if job.status == js.RUNNING and job.spec.get("concluding") is not None:
            d.conclude(job, "", "")  # decided before a crash: finish the teardown, apply it
            return blocked
        if job.status == js.RUNNING:
            outcome = d.watch(job)
            self._count_progress(job)
            if outcome.kind == "succeeded":
                d.finish_task(job)
            elif outcome.kind == "lost":
                return d.recover(job, outcome)
            elif outcome.kind == "failed" and not d.restart_after_failure(job,
                                                                          outcome.exit_code):
                d.fail(job, outcome.exit_code)
            return blocked
        if job.status == js.CANCELLING:
            d.cancel(job)
        return blocked

    def _count_progress(self, job: ManagedJob) -> None:
        """Run time so far (the spot policy's progress): time since the last count."""
        now = time.time()
        last = self._last_count.get(job.id)
        self._last_count[job.id] = now
        if last is not None:
            self.store.update(job.id, run_seconds=job.run_seconds + (now - last))

    def _choose_market(self, job: ManagedJob) -> None:
        """With a spot policy and a deadline, decide spot or on-demand for this launch."""
        name = job.spec.get("spot_policy")
        if not name or job.deadline_at is None:
            return
        from skyhop.jobs.market import decide

        market = decide(job, name)
        if market != job.spec.get("market"):
            job.spec["market"] = market
            self.store.update(job.id, spec=job.spec)
            self.store.note(job.id, f"spot policy {name}: {market}")


def main() -> None:
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: stacks to the log
    with open(lock_path(), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another controller serves this home
        fh.seek(0)
        with contextlib.suppress(OSError):
            os.ftruncate(fh.fileno(), 0)
            os.write(fh.fileno(), f"{os.getpid()}\n".encode())
        asyncio.run(Controller(lock_inode=os.fstat(fh.fileno()).st_ino).serve())


if __name__ == "__main__":
    main()
