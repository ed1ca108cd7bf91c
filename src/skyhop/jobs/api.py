"""Managed jobs from the client's side: submit, list, cancel, follow logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skyhop.errors import UserError
from skyhop.jobs import store as js
from skyhop.jobs.driver import EAGER_NEXT_REGION, FAILOVER, RECOVERY_STRATEGIES, log_dir
from skyhop.jobs.store import JobStore, ManagedJob
from skyhop.names import check_env_name, check_name


def _recovery_options(dag: Any, recovery: str | None) -> dict[str, Any]:
    """Strategy and restart limits: the flag, else the first task's `job_recovery`
    (SkyPilot's field: a strategy name or {strategy, max_restarts_on_errors,
    recover_on_exit_codes})."""
    options: dict[str, Any] = {"recovery": FAILOVER, "max_restarts_on_errors": 0,
                               "recover_on_exit_codes": []}
    spec = dag.tasks[dag.order[0]].resources.job_recovery
    if isinstance(spec, str):
        options["recovery"] = spec
    elif isinstance(spec, dict):
        where = dag.tasks[dag.order[0]].where("resources")
        unknown = set(spec) - {"strategy", "max_restarts_on_errors", "recover_on_exit_codes"}
        if unknown:
            raise UserError(f"job_recovery: unknown field(s) {', '.join(sorted(unknown))}",
                            where=where, hint="fields: strategy, max_restarts_on_errors, "
                                              "recover_on_exit_codes")
        options["recovery"] = spec.get("strategy") or FAILOVER
        options["max_restarts_on_errors"] = int(spec.get("max_restarts_on_errors") or 0)
        codes = spec.get("recover_on_exit_codes") or []
        options["recover_on_exit_codes"] = [int(c) for c in
                                            (codes if isinstance(codes, list) else [codes])]
    if recovery:
        options["recovery"] = recovery
    options["recovery"] = str(options["recovery"]).upper()
    if options["recovery"] not in RECOVERY_STRATEGIES:
        raise UserError(f"unknown recovery strategy {options['recovery']!r}",
                        hint=f"use {FAILOVER} or {EAGER_NEXT_REGION}")
    return options


def launch(file: str | Path, *, deadline_hours: float | None = None,
           recovery: str | None = None, spot_policy: str | None = None,
           env: dict[str, str] | None = None, name: str | None = None,
           retry_until_up: bool = False, secrets: dict[str, str] | None = None) -> int:
    """Validate, plan once (an impossible request fails here, not later), store, and make
    sure a controller runs. Returns the job id. `secrets` are stored sealed and passed as
    secrets at every launch, whether or not the task lists them."""
    from skyhop.execute import sync
    from skyhop.execute.launcher import plan
    from skyhop.jobs import controller
    from skyhop.jobs.secrets import seal
    from skyhop.provision import registry
    from skyhop.spec import load_dag

    if name is not None:
        check_name(name, "managed job", where="--name")
    for key in env or {}:
        check_env_name(key, where="env")
    path = Path(file).expanduser()
    if not path.is_file():
        raise UserError(f"no task file {str(file)!r}", hint="give a task YAML")
    text = path.read_text()
    dag = load_dag(path)
    for key in secrets or {}:
        check_env_name(key, where="--secret")
    options = _recovery_options(dag, recovery)
    if spot_policy:
        from skyhop.jobs.policies import get_policy

        get_policy(spot_policy)  # unknown names fail now
        if deadline_hours is None:
            raise UserError("--spot-policy needs --deadline", hint="e.g. --deadline 36h")
    planned = plan(dag)
    for task, placement in zip(dag.tasks, planned.tasks, strict=True):
        sync.check_task_files(task, [registry.get(placement.provider)])  # before it is stored
    env = {**(env or {}), **(secrets or {})}
    task_secrets = {k for t in dag.tasks for k in t.secrets} | set(secrets or {})
    inline = {k: v.get_secret_value() for t in dag.tasks for k, v in t.secrets.items()
              if v is not None}
    secret_values = {**inline, **{k: v for k, v in env.items() if k in task_secrets}}
    envs = {k: v for k, v in env.items() if k not in task_secrets}
    spec = {"yaml": _without_secret_values(text) if inline else text, "filename": str(path),
            "envs": envs, "retry": retry_until_up, "spot_policy": spot_policy,
            "order": list(dag.order), "secret_names": sorted(secrets or {}), **options}
    deadline_at = time.time() + deadline_hours * 3600 if deadline_hours else None
    job_id = JobStore().add(name or dag.name or dag.tasks[dag.order[0]].name, spec,
                            seal(secret_values), deadline_at)
    controller.ensure_running()
    return job_id


def _without_secret_values(text: str) -> str:
    """The task file as stored in the database: each `secrets:` value replaced by null (the
    values are stored sealed and given back at every launch, as --env values are)."""
    import yaml

    documents = list(yaml.safe_load_all(text))
    for document in documents:
        if isinstance(document, dict) and isinstance(document.get("secrets"), dict):
            document["secrets"] = dict.fromkeys(document["secrets"])
    return yaml.safe_dump_all(documents, sort_keys=False)


def queue() -> list[ManagedJob]:
    from skyhop.jobs import controller

    jobs = JobStore().list()
    if any(j.status in js.ACTIVE for j in jobs):
        controller.ensure_running()  # e.g. after a reboot or a killed controller
    return jobs


def cancel(job_ids: list[int] | None) -> list[int]:
    from skyhop.jobs import controller

    ids = JobStore().request_cancel(job_ids)
    if ids:
        controller.ensure_running()
    return ids


def wait(job_id: int, output: Callable[[str], None] | None = None,
         follow: bool = True, poll_s: float = 0.2) -> ManagedJob:
    """Stream the job's output (every run, in order) until it is final (or once)."""
    store = JobStore()
    job = store.get(job_id)
    if job is None:
        raise UserError(f"no managed job {job_id}", hint="see `skyhop jobs queue`")
    sent: dict[str, int] = {}
    while True:
        job = store.get(job_id)
        assert job is not None
        for path in sorted(log_dir(job_id).glob("*.log")):
            data = path.read_bytes()
            if len(data) > sent.get(path.name, 0) and output is not None:
                output(data[sent.get(path.name, 0):].decode(errors="replace"))
            sent[path.name] = len(data)
        if job.status in js.TERMINAL or not follow:
            return job
        time.sleep(poll_s)
