"""Spot or on-demand for a managed job's next launch, decided by its spot policy."""

from __future__ import annotations

import time

from skyhop.jobs.store import ManagedJob


def decide(job: ManagedJob, policy_name: str) -> str:
    """"spot" or "on_demand" now. Progress is the job's run time so far; the job's length is
    the task's `estimated_hours` (1 h when not given)."""
    from skyhop.jobs.policies import JobState, get_policy
    from skyhop.spec import parse_dag

    dag = parse_dag(job.spec["yaml"])
    task = dag.tasks[dag.order[job.task_index]]
    total = task.estimated_hours if isinstance(task.estimated_hours, float) else 1.0
    now = time.time()
    state = JobState(now_h=(now - job.submitted_at) / 3600,
                     elapsed_compute_h=job.run_seconds / 3600, total_compute_h=total,
                     deadline_h=((job.deadline_at or now) - job.submitted_at) / 3600,
                     changeover_h=float(job.spec.get("changeover_h", 0.2)),
                     current=job.spec.get("market"), spot_available=True)
    choice = get_policy(policy_name).decide(state)
    return "on_demand" if choice == "on_demand" else "spot"
