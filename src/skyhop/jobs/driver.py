"""One managed job, driven step by step: launch, watch, recover, finish.

The driver keeps nothing that matters in memory: every decision is made from the job's row
and the providers' truth, and every effect is recorded before the next step. So a new
controller that adopts the job after a crash picks up where the old one stopped:
- a cluster whose launch was interrupted is torn down and launched again;
- a cluster that is up is reused; a run already submitted to its agent (found by its name,
  `managed-<job>-<task>-<try>`) is watched, never submitted twice.

All calls here block (provisioning, SSH, agent sockets): the controller runs each step in
a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyhop import paths
from skyhop.errors import InfeasibleError, Unreachable, UserError
from skyhop.jobs import store as js
from skyhop.jobs.store import JobStore, ManagedJob
from skyhop.names import path_under

FAILOVER, EAGER_NEXT_REGION = "FAILOVER", "EAGER_NEXT_REGION"
RECOVERY_STRATEGIES = (FAILOVER, EAGER_NEXT_REGION)
UNREACHABLE_LIMIT = 3  # consecutive failed agent polls before nodes count as lost


def log_dir(job_id: int) -> Path:
    """One file per run (`<try>.log`), so a restarted controller resumes each at its size."""
    path = path_under(paths.home() / "jobs" / "logs", str(int(job_id)))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Outcome:
    """What one watch step found."""

    kind: str  # "running" | "succeeded" | "failed" | "lost"
    exit_code: int | None = None
    detail: str = ""


class JobDriver:
    def __init__(self, job_store: JobStore | None = None, launcher: Any = None):
        from skyhop.execute.launcher import Launcher
        from skyhop.execute.report import SilentReporter

        self.jobs = job_store or JobStore()
        self.launcher = launcher or Launcher(reporter=SilentReporter())
        self.unreachable: dict[int, int] = {}
        self.log_offsets: dict[int, tuple[Path, int]] = {}  # job -> (its run's copy, bytes)

    # -- the DAG ------------------------------------------------------------------------
    def _dag(self, job: ManagedJob) -> Any:
        from skyhop.sdk import with_secret_names
        from skyhop.spec import parse_dag

        dag = parse_dag(job.spec["yaml"], job.spec.get("filename", "<job>"))
        return with_secret_names(dag, dict.fromkeys(job.spec.get("secret_names") or [], ""))

    def _task(self, job: ManagedJob) -> tuple[Any, int]:
        dag = self._dag(job)
        index = dag.order[job.task_index]
        return dag.tasks[index], index

    def cluster_name(self, job: ManagedJob) -> str:
        return f"skyhop-job-{job.id}-{job.task_index}"

    def run_name(self, job: ManagedJob) -> str:
        return f"managed-{job.id}-{job.task_index}-{job.restarts + job.recoveries}"

    def _log(self, job: ManagedJob, line: str) -> None:
        """A note in the job's event history (shown by `jobs queue` and `jobs logs`)."""
        self.jobs.note(job.id, line)

    # -- steps --------------------------------------------------------------------------
    def launch(self, job: ManagedJob, blocked: Any = None) -> None:
        """Bring the current task's cluster up and submit its run (idempotent)."""
        from skyhop.execute.launcher import plan, resolve_env
        from skyhop.jobs.secrets import unseal
        from skyhop.provision.provisioner import ProvisionFailed
        from skyhop.spec.dag import Dag

        task, _ = self._task(job)
        task = self._with_market(job, task)
        name = self.cluster_name(job)
        record = self.launcher.store.get(name)
        if record is None or record.status != "UP":
            try:
                placement = plan(Dag([task]), blocklist=blocked).tasks[0]
                self._log(job, f"launching {name}: {task.num_nodes} x "
                               f"{placement.instance_type} on {placement.infra}")
                record = self.launcher.ensure_up(name, task, placement,
                                                 retry_until_up=bool(job.spec.get("retry")),
                                                 blocklist=blocked)
            except (InfeasibleError, ProvisionFailed) as exc:  # nowhere left to run it
                self.jobs.transition(job.id, js.FAILED_NO_RESOURCE, exc.message,
                                     failure=exc.message)
                return
        envs = dict(job.spec.get("envs") or {})
        envs_all, secret_values = resolve_env(task, {**envs, **unseal(job.secrets)})
        agent = self.launcher.agent(record)
        run = self.run_name(job)
        existing = next((j for j in agent.queue() if j["name"] == run), None)
        if existing is None:  # not submitted yet (or the controller died just before)
            # (skipped by the launcher when it already ran unchanged on this cluster)
            code = self.launcher.setup(record, task, {**envs_all, **secret_values})
            if code != 0:
                self._log(job, f"setup failed with exit code {code}")
                self.jobs.transition(job.id, js.FAILED_SETUP, f"setup exited with {code}",
                                     failure=f"setup exited with {code}")
                self._teardown(name)
                return
            self.launcher.sync(record, task)
            result = self.launcher.submit(record, task, envs_all, secret_values, True,
                                          job_name=run, task_id=job.task_id)
            agent_job = result.job_id
        else:
            agent_job = existing["id"]
        now = time.time()
        self.jobs.transition(job.id, js.RUNNING, f"running on {record.infra} "
                             f"({record.instance_type}{', spot' if record.use_spot else ''})",
                             cluster=name, agent_job_id=agent_job,
                             started_at=job.started_at or now)
        self.unreachable.pop(job.id, None)

    def _with_market(self, job: ManagedJob, task: Any) -> Any:
        """Spot or on-demand for this (re)launch, as the job's spot policy decides."""
        market = job.spec.get("market")  # set by the controller's policy step
        if market not in ("spot", "on_demand"):
            return task
        use_spot = market == "spot"
        resources = task.resources
        update: dict[str, Any] = {"use_spot": use_spot}
        for field in ("any_of", "ordered"):
            options = getattr(resources, field)
            if options:
                update[field] = tuple(o.model_copy(update={"use_spot": use_spot})
                                      for o in options)
        return task.model_copy(update={"resources": resources.model_copy(update=update)})

    def watch(self, job: ManagedJob) -> Outcome:
        """Where the current run stands, from its agent and the provider's truth."""
        from skyhop.provision import registry

        record = self.launcher.store.get(job.cluster or "")
        if record is None:
            return Outcome("lost", detail="its cluster is gone")
        try:
            agent = self.launcher.agent(record)
            runs = {j["id"]: j for j in agent.queue()}
            self._copy_logs(job, agent)
        except Unreachable as exc:  # any other error is the controller's to retry
            count = self.unreachable.get(job.id, 0) + 1
            self.unreachable[job.id] = count
            truth = registry.get(record.provider).instances(record.name)
            if len(truth) < record.num_nodes:
                return Outcome("lost", detail=f"{record.num_nodes - len(truth)} node(s) "
                                              "gone (preempted)")
            if count >= UNREACHABLE_LIMIT:
                return Outcome("lost", detail=f"nodes unreachable ({exc.message})")
            return Outcome("running")
        self.unreachable.pop(job.id, None)
        run = runs.get(job.agent_job_id or -1)
        if run is None:
            return Outcome("lost", detail="its run vanished from the cluster")
        if run["status"] == "SUCCEEDED":
            return Outcome("succeeded", 0)
        if run["status"] in ("FAILED", "CANCELLED"):
            # A run killed with its node (preemption) looks like a failure: ask the truth.
            truth = registry.get(record.provider).instances(record.name)
            if len(truth) < record.num_nodes:
                return Outcome("lost", detail="node(s) gone (preempted)")
            return Outcome("failed", run.get("exit_code"))
        return Outcome("running")

    def _copy_logs(self, job: ManagedJob, agent: Any) -> None:
        """Keep a copy of the run's output beside the state (it outlives the cluster)."""
        path = log_dir(job.id) / f"{job.task_index:03d}-{job.restarts + job.recoveries:03d}.log"
        known_path, offset = self.log_offsets.get(job.id, (None, 0))
        if known_path != path:  # a new run, or a new controller: what the copy has
            offset = path.stat().st_size if path.exists() else 0
        chunks: list[str] = []
        record = agent.logs(job.agent_job_id, False, chunks.append, offset=offset)
        if chunks:
            with path.open("ab") as fh:
                fh.write("".join(chunks).encode())
        self.log_offsets[job.id] = (path, record["log_offset"])

    def finish_task(self, job: ManagedJob) -> None:
        """The current task succeeded: tear its cluster down, go on to the next task."""
        with contextlib.suppress(Exception):
            record = self.launcher.store.get(job.cluster or "")
            if record is not None:
                self._copy_logs(job, self.launcher.agent(record))
        count = len(self._dag(job).tasks)
        if job.task_index + 1 >= count:
            self.conclude(job, js.SUCCEEDED, "all tasks succeeded")
        else:
            self.conclude(job, js.STARTING, f"task {job.task_index + 2} of {count}",
                          task_index=job.task_index + 1, cluster=None, agent_job_id=None)

    def conclude(self, job: ManagedJob, status: str, message: str, **fields: Any) -> None:
        """Record what the finished run decided, then tear its cluster down, then apply it.
        A controller that dies in between leaves the decision in the job's row, and the one
        that adopts the job only finishes the teardown: a finished run never runs again."""
        if job.spec.get("concluding") is None:
            job.spec["concluding"] = {"status": status, "message": message, "fields": fields}
            self.jobs.update(job.id, spec=job.spec)
        self._teardown(job.cluster)
        _test_crash_point("after-teardown")
        decided = job.spec.pop("concluding")
        self.jobs.transition(job.id, decided["status"], decided["message"], spec=job.spec,
                             **decided["fields"])

    def recover(self, job: ManagedJob, outcome: Outcome) -> Any:
        """The run's nodes are lost: tear down, and return the blocklist for the relaunch
        (EAGER_NEXT_REGION really blocks the preempted region)."""
        from skyhop.catalog.blocklist import Blocklist, BlockRule

        record = self.launcher.store.get(job.cluster or "")
        self._log(job, f"recovering: {outcome.detail}")
        blocked = None
        if record is not None and job.spec.get("recovery") == EAGER_NEXT_REGION:
            blocked = Blocklist((BlockRule(record.provider, record.region or "*"),))
            job.spec.setdefault("blocked_regions", []).append(
                [record.provider, record.region or "*"])
        self._teardown(job.cluster)
        self.jobs.transition(job.id, js.RECOVERING, outcome.detail,
                             recoveries=job.recoveries + 1, cluster=None, agent_job_id=None,
                             spec=job.spec)
        return blocked

    def blocked_for(self, job: ManagedJob) -> Any:
        from skyhop.catalog.blocklist import Blocklist, BlockRule

        rules = [BlockRule(p, r) for p, r in job.spec.get("blocked_regions", [])[-1:]]
        return Blocklist(tuple(rules)) if rules else None

    def restart_after_failure(self, job: ManagedJob, code: int | None) -> bool:
        """User code failed: rerun it if the job allows; False when it is final."""
        codes = set(job.spec.get("recover_on_exit_codes") or [])
        limit = int(job.spec.get("max_restarts_on_errors") or 0)
        if code in codes:
            reason = f"exit code {code} is in recover_on_exit_codes"
        elif job.restarts < limit:
            reason = f"restart {job.restarts + 1} of {limit} after exit code {code}"
        else:
            return False
        self._log(job, reason)
        self.jobs.transition(job.id, js.RECOVERING, reason, restarts=job.restarts + 1,
                             agent_job_id=None)
        return True

    def cancel(self, job: ManagedJob) -> None:
        from skyhop.execute.agent_client import AgentClient

        self.jobs.transition(job.id, js.CANCELLING, "cancel requested")
        record = self.launcher.store.get(job.cluster or "")
        if record is not None and job.agent_job_id:
            with contextlib.suppress(UserError):
                agent: AgentClient = self.launcher.agent(record)
                agent.cancel([job.agent_job_id])
        self._teardown(job.cluster)
        self.jobs.transition(job.id, js.CANCELLED, "cancelled")

    def fail(self, job: ManagedJob, code: int | None) -> None:
        self.conclude(job, js.FAILED, f"exit code {code}", failure=f"the run exited with {code}")

    def _teardown(self, cluster: str | None) -> None:
        if cluster:
            with contextlib.suppress(UserError):
                self.launcher.teardown(cluster)


def _test_crash_point(point: str) -> None:
    """For the tests only: `SKYHOP_TEST_CRASH=<point>:<marker file>` makes the controller die
    here (like a SIGKILL) once, the first time, leaving the marker file behind."""
    setting = os.environ.get("SKYHOP_TEST_CRASH", "")
    name, _, marker = setting.partition(":")
    if name != point or not marker:
        return
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    os._exit(137)
