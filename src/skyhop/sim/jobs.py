"""A managed-jobs driver whose clusters are simulated: for controller scale tests.

Everything the controller does is real (the state database, transitions, adoption,
scheduling of thousands of jobs on one event loop); only the machines are simulated:
a launch "provisions" instantly, a run lasts its given duration, and a preemption arrives
at a chosen moment. Runs are keyed by job id, so the driver is as stateless as the real one
from the controller's point of view.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from skyhop.jobs import store as js
from skyhop.jobs.driver import JobDriver, Outcome
from skyhop.jobs.store import JobStore, ManagedJob


@dataclass
class SimRun:
    started: float
    duration_s: float
    preempt_at: float | None


class SimJobDriver(JobDriver):
    def __init__(self, job_store: JobStore, *, duration_s: tuple[float, float] = (5, 20),
                 preempt_probability: float = 0.1, seed: int = 0):
        self.jobs = job_store
        self.launcher = None
        self.unreachable = {}
        self.duration_s = duration_s
        self.preempt_probability = preempt_probability
        self.rng = random.Random(seed)
        self.runs: dict[int, SimRun] = {}

    def launch(self, job: ManagedJob, blocked: object = None) -> None:
        now = time.time()
        duration = self.rng.uniform(*self.duration_s)
        preempt = (now + self.rng.uniform(0, duration)
                   if job.recoveries == 0 and self.rng.random() < self.preempt_probability
                   else None)
        self.runs[job.id] = SimRun(now, duration, preempt)
        self.jobs.transition(job.id, js.RUNNING, "running (simulated)",
                             cluster=self.cluster_name(job), agent_job_id=1,
                             started_at=job.started_at or now)

    def watch(self, job: ManagedJob) -> Outcome:
        run = self.runs.get(job.id)
        if run is None:  # adopted from another controller: its run is lost with it
            return Outcome("lost", detail="simulated run not found")
        now = time.time()
        if run.preempt_at is not None and now >= run.preempt_at:
            return Outcome("lost", detail="preempted (simulated)")
        if now >= run.started + run.duration_s:
            return Outcome("succeeded", 0)
        return Outcome("running")

    def recover(self, job: ManagedJob, outcome: Outcome) -> object:
        self.runs.pop(job.id, None)
        self.jobs.transition(job.id, js.RECOVERING, outcome.detail,
                             recoveries=job.recoveries + 1, cluster=None, agent_job_id=None)
        return None

    def finish_task(self, job: ManagedJob) -> None:
        self.runs.pop(job.id, None)
        self.jobs.transition(job.id, js.SUCCEEDED, "succeeded (simulated)")

    def _teardown(self, cluster: str | None) -> None:
        pass
