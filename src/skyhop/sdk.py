"""The Python SDK: the same operations as the CLI, synchronous and thin.

    import skyhop
    task = skyhop.Task(run="nvidia-smi", resources=skyhop.Resources(accelerators="A100:1"))
    result = skyhop.launch(task, cluster_name="dev")
    skyhop.exec("dev", skyhop.Task(run="python eval.py"))
    skyhop.down("dev")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyhop.errors import UserError
from skyhop.execute.launcher import (
    Launcher,
    LaunchResult,
    new_cluster_name,
    plan,
    why_not_fits,
)
from skyhop.execute.operations import Operations, cost_report
from skyhop.execute.report import PlainReporter, Reporter
from skyhop.names import check_name
from skyhop.spec import Dag, Task, load_dag
from skyhop.spec.dag import with_secret_names
from skyhop.spec.resources import Autostop
from skyhop.state.status import status

__all__ = ["cost_report", "down", "exec", "launch", "load", "plan", "status"]


def load(task: Task | Dag | str | Path) -> Dag:
    """A Dag from a Task, a Dag, a YAML file path, or a shell command."""
    if isinstance(task, Dag):
        return task
    if isinstance(task, Task):
        return Dag([task])
    text = str(task)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_dag(path)
    if not text.strip():
        raise UserError("nothing to run: give a task file or a command")
    return Dag([Task(run=text)])


def with_infra(dag: Dag, infra: str | None) -> Dag:
    """The DAG with every task (and each of its alternatives) restricted to `infra`."""
    if not infra:
        return dag
    from skyhop.spec.fields import parse_infra

    try:
        pattern = parse_infra(infra)
    except ValueError as exc:
        raise UserError(f"--infra: {exc}",
                        hint="e.g. --infra aws, aws/us-east-1, ssh/lab or local") from None

    def restrict(resources: Any) -> Any:
        update: dict[str, Any] = {"infra": pattern}
        for field in ("any_of", "ordered"):
            options = getattr(resources, field)
            if options:
                update[field] = tuple(o.model_copy(update={"infra": pattern}) for o in options)
        return resources.model_copy(update=update)

    tasks = [t.model_copy(update={"resources": restrict(t.resources)}) for t in dag.tasks]
    return Dag(tasks, dag.edges, dag.name)


def launch(task: Task | Dag | str | Path, cluster_name: str | None = None, *,
           detach: bool = False, env: dict[str, str] | None = None, down: bool = False,
           reporter: Reporter | None = None, retry_until_up: bool = False,
           infra: str | None = None, idle_minutes_to_autostop: int | None = None,
           secrets: dict[str, str] | None = None) -> LaunchResult:
    """Plan, provision (or reuse `cluster_name`), sync, set up and run. A DAG runs its tasks
    in dependency order, each on its own cluster `<name>-<task>`; the first failure stops it.
    With `down`, clusters are taken down once their task ends: by this process, or, with
    `idle_minutes_to_autostop`, by the cluster itself after that many idle minutes (which
    without `down` stops it instead; either overrides the task's `resources.autostop`).
    `secrets`: values passed as secrets (never logged or stored), whether or not the task
    lists them under `secrets:`."""
    if cluster_name is not None:
        check_name(cluster_name, "cluster")
    autostop = None
    if idle_minutes_to_autostop is not None:  # checked before anything is spent
        if idle_minutes_to_autostop < 0:
            raise UserError(f"idle minutes to autostop must be >= 0, not "
                            f"{idle_minutes_to_autostop}", hint="e.g. -i 30")
        autostop = Autostop(idle_minutes=idle_minutes_to_autostop, down=down)
    dag = with_secret_names(with_infra(load(task), infra), secrets)
    env = {**(env or {}), **(secrets or {})}
    base = cluster_name or new_cluster_name()
    names = {index: base if len(dag) == 1 else f"{base}-{dag.tasks[index].name or index + 1}"
             for index in dag.order}
    for index, name in names.items():  # a pipeline's cluster names must fit the rule too
        check_name(name, "cluster", where=dag.tasks[index].where("name") if len(dag) > 1
                   else None)
    launcher = Launcher(reporter=reporter or PlainReporter())
    existing = _reusable(launcher, dag, cluster_name)
    if existing is not None:  # nothing to plan: the task runs where it is told
        placements: list[Any] = [None]
        launcher.reporter.stage("plan", f"{dag.tasks[0].name or 'task-1'}: on {existing.name}"
                                f" ({existing.infra}, {existing.instance_type})")
    else:
        placements = plan(dag).tasks
        for placement in placements:
            launcher.reporter.stage("plan", f"{placement.name}: {placement.instance_type} on "
                                    f"{placement.infra}, ${placement.hourly_price:.2f}/h per "
                                    f"node x {placement.num_nodes}")
    if len(dag) > 1 and detach:
        raise UserError("a pipeline cannot be detached yet",
                        hint="launch it without -d, or use managed jobs when they land")
    for index, task_obj in enumerate(dag.tasks):  # every task's files, before any is launched
        launcher.check_files(task_obj, existing.provider if existing is not None
                             else placements[index].provider)
    result: LaunchResult | None = None
    for index in dag.order:
        task_obj = dag.tasks[index]
        name = names[index]
        try:
            result = launcher.launch_task(task_obj, placements[index], name, env or {},
                                          detach, retry_until_up, autostop)
        finally:
            if down and not detach and autostop is None:
                launcher.teardown(name)
        if result.exit_code not in (0, None):
            break
    assert result is not None
    return result


def _reusable(launcher: Launcher, dag: Dag, cluster_name: str | None) -> Any:
    """The existing cluster a single task names and fits (up or stopped), else None."""
    if cluster_name is None or len(dag) != 1:
        return None
    record = launcher.store.get(cluster_name)
    if record is None or record.status not in ("UP", "STOPPED"):
        return None
    return None if why_not_fits(record, dag.tasks[0]) else record


def exec(cluster_name: str, task: Task | str | Path, *, detach: bool = False,
         env: dict[str, str] | None = None, reporter: Reporter | None = None,
         secrets: dict[str, str] | None = None) -> LaunchResult:
    """Queue a task (or a command) on an existing cluster."""
    check_name(cluster_name, "cluster")
    dag = with_secret_names(load(task), secrets)
    env = {**(env or {}), **(secrets or {})}
    if len(dag) != 1:
        raise UserError("exec takes one task, not a pipeline")
    launcher = Launcher(reporter=reporter or PlainReporter())
    return launcher.exec(cluster_name, dag.tasks[0], env or {}, detach)


def down(*cluster_names: str, reporter: Reporter | None = None) -> None:
    ops = Operations(Launcher(reporter=reporter or PlainReporter()))
    for name in cluster_names:
        ops.down(name)

