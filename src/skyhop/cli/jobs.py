"""`skyhop jobs ...`: managed jobs, recovered from preemptions and failures by a controller
that runs without the client."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from skyhop.cli.common import (
    EnvFileOption,
    EnvOption,
    JsonOption,
    SecretOption,
    age,
    parse_env,
    parse_secrets,
    print_json,
    print_table,
    read_env_file,
)
from skyhop.errors import UserError

jobs_app = typer.Typer(help="Managed jobs: recovered from preemption and failure, with "
                            "deadline-aware spot policies.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


def _exit_for(status: str) -> None:
    if status != "SUCCEEDED":
        raise typer.Exit(1 if status != "CANCELLED" else 130)


@jobs_app.command("launch")
def launch(
    file: Annotated[str, typer.Argument(help="Task YAML: one task, a chain or a DAG (run as "
                                             "one job).")],
    deadline: Annotated[str | None, typer.Option(
        help="Finish within this long, e.g. 36h (used by --spot-policy).")] = None,
    recovery: Annotated[str | None, typer.Option(
        help="FAILOVER (default) or EAGER_NEXT_REGION (never the preempted region).")] = None,
    spot_policy: Annotated[str | None, typer.Option(
        "--spot-policy", help="greedy, uniform_progress or skyhop: spot vs on-demand "
                              "under --deadline.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A name to show.")] = None,
    env: EnvOption = None,
    secret: SecretOption = None,
    env_file: EnvFileOption = None,
    detach: Annotated[bool, typer.Option("--detach", "-d",
                                         help="Return once the job is submitted.")] = False,
    retry_until_up: Annotated[bool, typer.Option(
        "--retry-until-up", help="Wait for capacity instead of failing.")] = False,
) -> None:
    """Submit a managed job; follow its output unless -d."""
    from skyhop.jobs import api
    from skyhop.spec.fields import parse_hours

    hours = None
    if deadline is not None:
        try:
            hours = parse_hours(deadline)
        except ValueError as exc:
            raise UserError(f"--deadline: {exc}") from None
    job_id = api.launch(file, deadline_hours=hours, recovery=recovery, spot_policy=spot_policy,
                        env={**read_env_file(env_file), **parse_env(env)},
                        secrets=parse_secrets(secret), name=name,
                        retry_until_up=retry_until_up)
    typer.echo(f"managed job {job_id} submitted", err=True)
    if detach:
        typer.echo(f"follow it: skyhop jobs logs {job_id} --follow", err=True)
        return
    job = api.wait(job_id, output=_write)
    typer.echo(f"managed job {job_id}: {job.status}"
               + (f" ({job.failure})" if job.failure else ""), err=True)
    _exit_for(job.status)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@jobs_app.command("queue")
def queue(as_json: JsonOption = False) -> None:
    """Managed jobs, with every status transition in --json."""
    from skyhop.jobs import api
    from skyhop.jobs.store import JobStore

    jobs = api.queue()
    if as_json:
        store = JobStore()
        print_json([{**j.to_json(), "events": store.events(j.id)} for j in jobs])
        return
    if not jobs:
        typer.echo("No managed jobs.")
        return
    print_table([{"id": j.id, "name": j.name or "-", "status": j.status,
                  "task": f"{j.task_index + 1}/{len(j.spec.get('order', [0]))}",
                  "recoveries": j.recoveries, "restarts": j.restarts,
                  "submitted": age(j.submitted_at),
                  "duration": _duration(j), "cluster": j.cluster or "-"} for j in jobs])


def _duration(job) -> str:
    if job.started_at is None:
        return "-"
    seconds = (job.ended_at or time.time()) - job.started_at
    return f"{seconds / 60:.1f}m" if seconds >= 60 else f"{seconds:.0f}s"


@jobs_app.command("cancel")
def cancel(
    job_ids: Annotated[list[int] | None, typer.Argument(help="Job ids.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Every active job.")] = False,
) -> None:
    """Cancel managed jobs: their runs stop and their clusters go."""
    from skyhop.jobs import api

    if not job_ids and not all_jobs:
        raise UserError("give job ids or --all", hint="skyhop jobs queue")
    ids = api.cancel(None if all_jobs else list(job_ids or []))
    typer.echo(f"cancelling {', '.join(map(str, ids))}" if ids else "no active job to cancel")


@jobs_app.command("logs")
def logs(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")
                      ] = False,
) -> None:
    """A managed job's output, every run in order (kept after its clusters are gone)."""
    from skyhop.jobs import api

    job = api.wait(job_id, output=_write, follow=follow)
    if follow:
        _exit_for(job.status)
