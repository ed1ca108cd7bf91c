"""Spot or on-demand for a managed job's next launch, decided by its spot policy."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from skyhop.errors import UserError
from skyhop.jobs.store import ManagedJob


def price_ratio(task: Any) -> float | None:
    """On-demand price / spot price of the best place for the task (what spot saves),
    from the same plan a launch would make; None when either market has no offer."""
    from skyhop.execute.launcher import plan
    from skyhop.spec.dag import Dag

    prices = []
    for use_spot in (False, True):
        resources = task.resources.model_copy(update={"use_spot": use_spot})
        try:
            placement = plan(Dag([task.model_copy(update={"resources": resources})])).tasks[0]
        except UserError:
            return None
        prices.append(placement.hourly_price)
    return prices[0] / prices[1] if prices[1] > 0 else None


def decide(job: ManagedJob, policy_name: str) -> str:
    """"spot" or "on_demand" now. Progress is the job's run time so far; the job's length is
    the task's `estimated_hours` (1 h when not given). "wait" becomes "spot": asking for spot
    is how a real controller waits for it (a refusal is retried)."""
    from skyhop.jobs.controller import POLL_S
    from skyhop.jobs.policies import JobState, get_policy
    from skyhop.spec import parse_dag

    dag = parse_dag(job.spec["yaml"])
    task = dag.tasks[dag.order[job.task_index]]
    total = task.estimated_hours if isinstance(task.estimated_hours, float) else 1.0
    ratio = None
    with contextlib.suppress(Exception):  # the ratio only refines the decision
        ratio = price_ratio(task)
    now = time.time()
    state = JobState(now_h=(now - job.submitted_at) / 3600,
                     elapsed_compute_h=job.run_seconds / 3600, total_compute_h=total,
                     deadline_h=((job.deadline_at or now) - job.submitted_at) / 3600,
                     changeover_h=float(job.spec.get("changeover_h", 0.2)),
                     current=job.spec.get("market"), spot_available=True,
                     step_h=POLL_S / 3600, price_ratio=ratio)
    choice = get_policy(policy_name).decide(state)
    return "on_demand" if choice == "on_demand" else "spot"
