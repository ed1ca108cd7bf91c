"""CLI commands for clusters and jobs: launch, exec, status, queue, logs, cancel, stop,
start, down, autostop, ssh, cost-report. Thin: parse, call the library, print."""

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
    span,
)
from skyhop.errors import UserError

ClusterOption = Annotated[str | None, typer.Option(
    "--cluster", "-c", help="Cluster name: created, or reused when it fits.")]
DetachOption = Annotated[bool, typer.Option("--detach", "-d",
                                            help="Return once the job is queued.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ClustersArgument = Annotated[list[str] | None, typer.Argument(
    help="Cluster names or shell patterns ('dev-*').", show_default=False)]
AllOption = Annotated[bool, typer.Option("--all", "-a", help="Every cluster.")]


class RichReporter:
    """Stages on stderr, job output on stdout."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.t0 = time.perf_counter()

    def stage(self, name: str, detail: str = "") -> None:
        self.console.print(f"[dim]{time.perf_counter() - self.t0:6.2f}s[/dim] "
                           f"[bold cyan]{name:>9}[/bold cyan]  {detail}", markup=True)

    def output(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()


def _exit_with(code: int | None) -> None:
    if code:
        raise typer.Exit(code if 0 < code < 256 else 1)


def register(app: typer.Typer) -> None:
    @app.command()
    def launch(
        task: Annotated[str, typer.Argument(help="Task YAML (task, chain or DAG) or a "
                                                 "command in quotes.")],
        cluster: ClusterOption = None,
        detach: DetachOption = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")
                           ] = False,
        down: Annotated[bool, typer.Option("--down", help="Take the cluster down when the "
                                                          "job ends (with -i: when idle).")
                        ] = False,
        idle_minutes: Annotated[int | None, typer.Option(
            "--idle-minutes-to-autostop", "-i",
            help="Stop the cluster (with --down: tear it down) after this many idle "
                 "minutes; the cluster enforces it.")] = None,
        env: EnvOption = None,
        secret: SecretOption = None,
        env_file: EnvFileOption = None,
        infra: Annotated[str | None, typer.Option(
            "--infra", help="Run only here: aws, aws/us-east-1, ssh/lab, local...")] = None,
        retry_until_up: Annotated[bool, typer.Option(
            "--retry-until-up", help="When every place fails, wait and try again (with "
                                     "backoff) until the cluster is up.")] = False,
        yes: YesOption = False,
    ) -> None:
        """Plan, provision (or reuse), sync, set up and run; stream the output."""
        from skyhop import sdk

        env_values = {**read_env_file(env_file), **parse_env(env)}
        secrets = parse_secrets(secret)
        if dry_run:
            from skyhop.cli.render import print_plan

            dag = sdk.with_infra(sdk.load(task), infra)
            print_plan(sdk.plan(dag), dag)
            return
        result = sdk.launch(task, cluster, detach=detach, env=env_values, down=down,
                            reporter=RichReporter(), retry_until_up=retry_until_up,
                            infra=infra, idle_minutes_to_autostop=idle_minutes,
                            secrets=secrets)
        if detach:
            typer.echo(f"job {result.job_id} queued on {result.cluster}; "
                       f"`skyhop logs {result.cluster} {result.job_id} --follow`", err=True)
        _exit_with(result.exit_code)

    @app.command()
    def ssh(
        cluster: Annotated[str, typer.Argument(help="A cluster that is UP.")],
        command: Annotated[list[str] | None, typer.Argument(
            help="Run this instead of a login shell (put it after --).",
            show_default=False)] = None,
        node: Annotated[int, typer.Option("--node", "-n", help="Node rank (0: the head).")
                        ] = 0,
        tty: Annotated[bool, typer.Option("--tty", "-t", help="A terminal for COMMAND too.")
                       ] = False,
    ) -> None:
        """Log in to a node of a cluster (the head by default) with skyhop's key."""
        import os

        from skyhop.execute.operations import Operations

        argv, cwd = Operations().login(cluster, node, command or [], tty)
        if cwd:
            os.chdir(cwd)
        sys.stdout.flush()
        try:
            os.execvp(argv[0], argv)
        except FileNotFoundError:
            raise UserError(f"{argv[0]} is not installed here",
                            hint="install the OpenSSH client (e.g. apt-get install "
                                 "openssh-client)") from None

    @app.command("exec")
    def exec_(
        cluster: Annotated[str, typer.Argument(help="An existing cluster.")],
        task: Annotated[str, typer.Argument(help="Task YAML or a command in quotes.")],
        detach: DetachOption = False,
        env: EnvOption = None,
        secret: SecretOption = None,
        env_file: EnvFileOption = None,
    ) -> None:
        """Queue a task or command on an existing cluster (no setup)."""
        from skyhop import sdk

        result = sdk.exec(cluster, task, detach=detach,
                          env={**read_env_file(env_file), **parse_env(env)},
                          secrets=parse_secrets(secret), reporter=RichReporter())
        if detach:
            typer.echo(f"job {result.job_id} queued on {result.cluster}", err=True)
        _exit_with(result.exit_code)

    @app.command()
    def status(as_json: JsonOption = False, refresh: Annotated[bool, typer.Option(
            "--refresh", "-r", help="Ask the providers first: finish interrupted launches "
                                    "and forget clusters whose machines are gone.")] = False,
               ) -> None:
        """Clusters and their state."""
        from skyhop.state.status import status as list_clusters

        if refresh:
            from skyhop.execute.reconcile import refresh as reconcile

            report = reconcile()
            for line in [*report.changes, *report.errors]:
                typer.echo(line, err=True)
        records = list_clusters()
        if as_json:
            print_json([r.to_json() for r in records])
            return
        if not records:
            typer.echo("No clusters.")
            return
        rows = [{"name": r.name, "status": r.status, "infra": r.infra,
                 "resources": f"{r.num_nodes}x {r.instance_type}"
                              + (f" {r.accelerators}" if r.accelerators else ""),
                 "$/h": f"{r.hourly_price * r.num_nodes:.2f}",
                 "autostop": (f"{r.autostop_minutes}m{' (down)' if r.autostop_down else ''}"
                              if r.autostop_minutes is not None else "-"),
                 "age": age(r.launched_at)} for r in records]
        print_table(rows)
        # A cloud cluster's own agent stops it; state learns of that only from the provider.
        armed = [r.name for r in records if r.status == "UP" and r.provider != "local"
                 and r.autostop_minutes is not None]
        if armed and not refresh:
            typer.echo(f"{', '.join(armed)}: may have stopped itself (autostop); "
                       "`skyhop status --refresh` asks the provider", err=True)

    @app.command()
    def queue(cluster: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
        """Jobs on a cluster, oldest first."""
        from skyhop.execute.operations import Operations

        jobs = Operations().queue(cluster)
        if as_json:
            print_json(jobs)
            return
        rows = [{"id": j["id"], "name": j["name"] or "-", "status": j["status"],
                 "submitted": age(j["submitted_at"]), "duration": _duration(j),
                 "exit": "-" if j["exit_code"] is None else j["exit_code"]} for j in jobs]
        print_table(rows or [{"jobs": "none"}])

    @app.command()
    def logs(
        cluster: Annotated[str, typer.Argument()],
        job: Annotated[int | None, typer.Argument(help="Job id (default: the latest).")
                       ] = None,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the job "
                                                                    "ends.")] = False,
    ) -> None:
        """Print a job's output."""
        from skyhop.execute.operations import Operations

        record = Operations().logs(cluster, job, follow, RichReporter().output)
        if follow:
            _exit_with(record.get("exit_code"))

    @app.command()
    def cancel(
        cluster: Annotated[str, typer.Argument()],
        jobs: Annotated[list[int] | None, typer.Argument(help="Job ids.")] = None,
        all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Every pending or "
                                                                   "running job.")] = False,
    ) -> None:
        """Cancel jobs: pending ones never start, running ones are stopped on every node."""
        from skyhop.execute.operations import Operations

        if not jobs and not all_jobs:
            raise UserError("name the jobs to cancel, or pass --all")
        cancelled = Operations().cancel(cluster, None if all_jobs else jobs)
        typer.echo(f"cancelled: {', '.join(map(str, cancelled)) or 'nothing to cancel'}")

    @app.command()
    def down(clusters: ClustersArgument = None, all_: AllOption = False,
             yes: YesOption = False) -> None:
        """Terminate clusters and everything on them."""
        from skyhop.execute.launcher import Launcher
        from skyhop.execute.operations import Operations

        ops = Operations(Launcher(reporter=RichReporter()))
        clusters = ops.select(clusters or [], all_, invalid_ok=True)
        if not clusters:
            typer.echo("no clusters", err=True)
            return
        if not yes and sys.stdin.isatty() and not typer.confirm(
                f"Terminate {', '.join(clusters)}?", default=True):
            raise typer.Abort()
        failed = 0
        for name in clusters:  # one cluster that cannot go down does not keep the others up
            try:
                ops.down(name)
            except UserError as exc:
                if len(clusters) == 1:
                    raise
                failed += 1
                typer.echo(f"error: {exc}", err=True)
        if failed:
            raise typer.Exit(UserError.exit_code)

    @app.command()
    def stop(clusters: ClustersArgument = None, all_: AllOption = False,
             yes: YesOption = False) -> None:
        """Stop clusters (kept, not billed for compute; `start` resumes them)."""
        from skyhop.execute.launcher import Launcher
        from skyhop.execute.operations import Operations

        ops = Operations(Launcher(reporter=RichReporter()))
        for name in ops.select(clusters or [], all_, status="UP"):
            ops.stop(name)

    @app.command()
    def start(clusters: ClustersArgument = None, all_: AllOption = False) -> None:
        """Start stopped clusters."""
        from skyhop.execute.launcher import Launcher
        from skyhop.execute.operations import Operations

        ops = Operations(Launcher(reporter=RichReporter()))
        for name in ops.select(clusters or [], all_, status="STOPPED"):
            ops.start(name)

    @app.command()
    def autostop(
        cluster: Annotated[str, typer.Argument()],
        idle_minutes: Annotated[int | None, typer.Option(
            "--idle-minutes", "-i", help="Stop after this many idle minutes.")] = None,
        down: Annotated[bool, typer.Option("--down", help="Take down instead of stop.")
                        ] = False,
        cancel: Annotated[bool, typer.Option("--cancel", help="Turn autostop off.")
                          ] = False,
        wait_for: Annotated[str, typer.Option(
            "--wait-for", help="What keeps it busy: jobs_and_ssh (jobs and interactive SSH "
            "sessions), jobs, or none (stop that long from now).")] = "jobs_and_ssh",
    ) -> None:
        """Stop (or take down) a cluster once it has been idle, enforced on the cluster."""
        from skyhop.execute.operations import Operations

        if idle_minutes is None and not cancel:
            raise UserError("give -i/--idle-minutes MIN, or --cancel")
        Operations().autostop(cluster, None if cancel else idle_minutes, down, wait_for)
        typer.echo("autostop off" if cancel else
                   f"{cluster} will {'go down' if down else 'stop'} after {idle_minutes} "
                   "idle minute(s)")

    @app.command("cost-report")
    def cost_report(as_json: JsonOption = False) -> None:
        """What each cluster has cost, from the prices recorded at launch."""
        from skyhop.execute.operations import cost_report as report

        rows = report()
        if as_json:
            print_json(rows)
            return
        table = [{"cluster": r["cluster"], "status": r["status"], "provider": r["provider"],
                  "resources": f"{r['num_nodes']}x {r['instance_type']}",
                  "$/h": f"{r['hourly_price'] * r['num_nodes']:.2f}",
                  "hours": f"{r['hours']:.3f}", "cost": f"${r['cost']:.2f}"} for r in rows]
        print_table(table or [{"clusters": "none"}])


def _duration(job: dict) -> str:
    if not job.get("started_at"):
        return "-"
    return span((job.get("ended_at") or time.time()) - job["started_at"])
