"""The managed-jobs controller's use of spot policies: spot while the deadline allows,
on-demand once it does not."""

import time

import pytest

from skyhop.jobs.market import decide
from skyhop.jobs.store import ManagedJob

TASK = "name: t\nestimated_hours: 10\nrun: echo\n"


def job(deadline_h: float, done_h: float, market: str | None = None) -> ManagedJob:
    now = time.time()
    return ManagedJob(id=1, name="t", status="PENDING",
                      spec={"yaml": TASK, "market": market}, secrets=None, task_index=0,
                      cluster=None, agent_job_id=None, restarts=0, recoveries=0,
                      run_seconds=done_h * 3600, submitted_at=now, started_at=None,
                      ended_at=None, deadline_at=now + deadline_h * 3600, failure=None,
                      controller=None, cancel_requested=False)


@pytest.mark.parametrize("policy", ["greedy", "uniform_progress", "skyhop"])
def test_spot_with_slack_on_demand_without(policy, tmp_path, monkeypatch):
    monkeypatch.setenv("SKYHOP_HOME", str(tmp_path))
    assert decide(job(30, 0), policy) == "spot"
    # 10 h of work, 10.3 h left: no room for a spot preemption and a changeover
    assert decide(job(10.3, 0), policy) == "on_demand"
