"""10,000 concurrent managed jobs in one controller, on simulated machines.

The controller, its event loop, adoption and every state transition are real (SQLite state
in a temporary SKYHOP_HOME); launches are instant and runs last 5-20 s of real time, 10% of
them preempted once. Prints resident memory per job, state transitions per second, and the
wait from submission to running (a starved job would show as a huge maximum).
Targets (issue): < 2 GB resident, >= 100 transitions/s, no job starved.

    python bench/jobs_scale.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between watches")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="skyhop-jobs-scale-")
    os.environ["SKYHOP_HOME"] = home
    os.environ["SKYHOP_JOBS_POLL_S"] = str(args.poll)
    os.environ.pop("SKYHOP_DB_URL", None)

    import sqlalchemy as sa

    from skyhop.jobs import controller
    from skyhop.jobs.store import JobStore
    from skyhop.sim.jobs import SimJobDriver
    from skyhop.state.schema import managed_jobs

    store = JobStore()
    now = time.time()
    spec = {"yaml": "run: 'true'\n", "order": [0], "recovery": "FAILOVER"}
    with store.engine.begin() as conn:  # submit all at once, as a burst of users would
        conn.execute(sa.insert(managed_jobs), [
            {"name": f"job-{i}", "status": "PENDING", "spec": spec, "task_index": 0,
             "restarts": 0, "recoveries": 0, "run_seconds": 0.0, "submitted_at": now,
             "cancel_requested": 0} for i in range(args.jobs)])
    baseline = rss_mib()
    driver = SimJobDriver(store, duration_s=(5, 20), preempt_probability=0.1, seed=1)
    peak = [baseline]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mib())
            await asyncio.sleep(0.5)

    async def run() -> None:
        sampler = asyncio.create_task(sample())
        await controller.Controller(driver, idle_exit_s=0.5).serve()
        sampler.cancel()

    started = time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - started

    from skyhop.state.schema import managed_job_events

    with store.engine.connect() as conn:
        events = conn.execute(sa.select(managed_job_events.c.job_id, managed_job_events.c.at,
                                        managed_job_events.c.status)
                              .where(managed_job_events.c.status != "NOTE")).all()
        statuses = [r.status for r in conn.execute(sa.select(managed_jobs.c.status))]
    first_running: dict[int, float] = {}
    for job_id, at, status in events:
        if status == "RUNNING" and job_id not in first_running:
            first_running[job_id] = at
    waits = sorted(at - now for at in first_running.values())
    transitions = sum(1 for e in events if e.status != "PENDING")
    succeeded = statuses.count("SUCCEEDED")
    print(f"{args.jobs} jobs, one controller, simulated machines (runs 5-20 s, 10% preempted)")
    print(f"  finished: {succeeded}/{args.jobs} succeeded in {wall:.1f} s")
    print(f"  transitions: {transitions} ({transitions / wall:.0f}/s)   target >= 100/s")
    per_job_kib = (peak[0] - baseline) * 1024 / args.jobs
    print(f"  resident memory: peak {peak[0]:.0f} MiB, {per_job_kib:.1f} KiB per job over the "
          f"{baseline:.0f} MiB baseline   target < 2048 MiB")
    print(f"  submit -> running: median {statistics.median(waits):.1f} s, max {waits[-1]:.1f} s"
          f" ({len(waits)} of {args.jobs} jobs ran)")
    print(f"  max RSS (getrusage): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MiB")


if __name__ == "__main__":
    main()
