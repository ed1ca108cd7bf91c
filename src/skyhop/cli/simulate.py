"""`skyhop simulate`: replay a job with a deadline on real spot availability traces, under a
spot policy, on a virtual clock; print its cost next to on-demand only and the omniscient
optimum (which knows the whole trace). Thin: parse, call skyhop.sim.spot_sim, print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from skyhop.cli.common import print_json
from skyhop.errors import UserError

DEFAULT_JOB_FRACTION = 0.8  # deadline = hours / 0.8 when not given (the paper's Table 3 case)
DEFAULT_CHANGEOVER = "0.2h"  # the paper's default changeover delay (section 6.1)
DEFAULT_HISTORY = "7d"  # trace shown to a learning policy before the start (a tracker's view)


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        file: Annotated[str, typer.Argument(help="Task YAML (one task).")],
        trace: Annotated[str, typer.Option(
            "--trace", help="Availability trace JSON, or a folder: every single-node trace "
                            "in it (recursively).")],
        policy: Annotated[str, typer.Option(
            "--policy", help="Spot policy: greedy, uniform_progress or skyhop.")] = "skyhop",
        deadline: Annotated[str | None, typer.Option(
            help="Finish within this time of the start (e.g. 60h, 2.5d); default: the job's "
                 "length / 0.8.")] = None,
        hours: Annotated[str | None, typer.Option(
            help="Compute the job needs (e.g. 48h); default: the task's estimated_hours.")
        ] = None,
        changeover: Annotated[str, typer.Option(
            help="Time lost at every (re)start, spot or on-demand.")] = DEFAULT_CHANGEOVER,
        start_hour: Annotated[float, typer.Option(
            "--start-hour", help="Where in the trace the job starts (hours).")] = 0.0,
        history: Annotated[str, typer.Option(
            help="Trace before the start that a learning policy may see.")] = DEFAULT_HISTORY,
        instance_type: Annotated[str | None, typer.Option(
            "--instance-type", help="Price this AWS instance type (default: the task's "
                                    "cheapest matching AWS offer).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Replay FILE's job on spot traces under a policy: cost, deadline met, spot and
        on-demand hours, against on-demand only and the omniscient optimum."""
        from skyhop.jobs.policies import get_policy
        from skyhop.spec import load_dag
        from skyhop.spec.fields import parse_hours

        get_policy(policy)  # unknown names fail before any work
        changeover_h = _duration(parse_hours, changeover, "--changeover")
        history_h = _duration(parse_hours, history, "--history")
        if start_hour < 0:
            raise UserError("--start-hour must be 0 or more")
        dag = load_dag(file)
        if len(dag.tasks) != 1:
            raise UserError(f"{file} has {len(dag.tasks)} tasks; simulate replays one task",
                            hint="put the task to simulate in a file of its own")
        task = dag.tasks[0]
        compute_h = (_duration(parse_hours, hours, "--hours") if hours is not None
                     else _estimated_hours(task, file))
        deadline_h = (_duration(parse_hours, deadline, "--deadline") if deadline is not None
                      else compute_h / DEFAULT_JOB_FRACTION)
        if deadline_h < compute_h + changeover_h:
            raise UserError(f"the deadline ({deadline_h:g} h) is shorter than the job "
                            f"({compute_h:g} h) plus one changeover ({changeover_h:g} h)",
                            hint="no policy can meet it; give a later --deadline")
        rows = _run(file, task, Path(trace), policy, compute_h, deadline_h, changeover_h,
                    start_hour, history_h, instance_type)
        if as_json:
            print_json(rows)
            return
        from skyhop.cli.render import print_rows

        print_rows([{"trace": r["trace_file"], "region": r["region"], "cost": f"{r['cost']:.2f}",
                     "on_demand_only": f"{r['on_demand_only_cost']:.2f}",
                     "omniscient": f"{r['omniscient_cost']:.2f}",
                     "met": r["deadline_met"], "finish_h": f"{r['finish_h']:.1f}",
                     "spot_h": f"{r['spot_hours']:.1f}", "on_demand_h":
                     f"{r['on_demand_hours']:.1f}", "preemptions": r["preemptions"]}
                    for r in rows],
                   title=f"{policy}: {compute_h:g} h job, deadline {deadline_h:g} h, "
                         f"changeover {changeover_h:g} h, {rows[0]['instance_type']}, "
                         f"start at {start_hour:g} h (USD)")


def _duration(parse: Any, value: str, flag: str) -> float:
    try:
        return parse(value)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


def _estimated_hours(task: Any, file: str) -> float:
    estimate = task.estimated_hours
    if isinstance(estimate, float):
        return estimate
    if isinstance(estimate, dict) and len(estimate) == 1:
        return next(iter(estimate.values()))
    raise UserError(f"{file}: the job's length is unknown", hint="give --hours (e.g. --hours "
                    "48h), or a single `estimated_hours` in the task")


def _trace_files(path: Path) -> tuple[list[Path], bool]:
    """The trace files to replay, and whether they came from a folder."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise UserError(f"no trace (*.json) under {path}")
        return files, True
    if not path.is_file():
        raise UserError(f"trace {str(path)!r} does not exist",
                        hint="give a trace JSON file or a folder of them")
    return [path], False


def _load(path: Path):
    from skyhop.sim.traces import load_trace

    try:
        trace = load_trace(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"trace {path} is not a spot trace ({type(exc).__name__}: {exc})",
                        hint='expected {"metadata": {"gap_seconds": N}, "data": [0, 1, ...]}'
                        ) from None
    if trace.available.ndim != 1 or len(trace.available) == 0 or trace.gap_s <= 0:
        raise UserError(f"trace {path} has no data")
    return trace


def _run(file: str, task: Any, trace_path: Path, policy: str, compute_h: float,
         deadline_h: float, changeover_h: float, start_hour: float, history_h: float,
         instance_type: str | None) -> list[dict]:
    from skyhop.catalog.catalog import load_catalog
    from skyhop.jobs.policies import get_policy
    from skyhop.sim import spot_sim

    catalog = load_catalog()
    itype = instance_type or _cheapest_aws_type(task, catalog, file)
    job = spot_sim.Job(compute_h, deadline_h, changeover_h)
    files, from_folder = _trace_files(trace_path)
    prices: dict[str, tuple] = {}
    rows, skipped = [], []
    for path in files:
        trace = _load(path)
        if from_folder and int(trace.available.max()) > 1:
            continue  # multi-node traces: a folder replays the single-node ones
        grid = spot_sim.Grid.of(job, trace.gap_s)
        start = round(start_hour * 3600 / trace.gap_s)
        if start + grid.deadline_ticks > len(trace.available):
            span = len(trace.available) * trace.gap_s / 3600
            if not from_folder:
                raise UserError(f"trace {path} spans {span:g} h: too short for a job starting "
                                f"at {start_hour:g} h with a {deadline_h:g} h deadline")
            skipped.append(f"{path.relative_to(trace_path)} ({span:.0f} h)")
            continue
        region = spot_sim.trace_region(trace.name)
        if region not in prices:
            try:
                prices[region] = spot_sim.catalog_prices(itype, region, catalog)
            except ValueError as exc:
                raise UserError(str(exc), hint="choose another --instance-type") from None
        price, priced_in = prices[region]
        nodes = 1 if from_folder else task.num_nodes
        result = spot_sim.simulate(trace, get_policy(policy), job, price, start_tick=start,
                                   nodes=nodes, history_h=history_h)
        rows.append({
            **result.to_json(),
            "trace_file": str(path.relative_to(trace_path) if from_folder else path),
            "region": priced_in, "instance_type": itype,
            "on_demand_price": price.on_demand, "spot_price": price.spot,
            "compute_h": compute_h, "deadline_h": deadline_h, "changeover_h": changeover_h,
            "on_demand_only_cost": spot_sim.on_demand_cost(job, price, trace.gap_s),
            "omniscient_cost": spot_sim.omniscient(trace, job, price, start_tick=start,
                                                   nodes=nodes)})
    if skipped:
        sys.stderr.write(f"skipped traces too short for the deadline: {', '.join(skipped)}\n")
    if not rows:
        raise UserError(f"no single-node trace under {trace_path} is long enough for a job "
                        f"starting at {start_hour:g} h with a {deadline_h:g} h deadline")
    return rows


def _cheapest_aws_type(task: Any, catalog: Any, file: str) -> str:
    """The AWS instance type with the lowest on-demand price that fits the task (spot offered),
    wherever the task's own `infra` points: the trace decides where it runs."""
    import numpy as np

    from skyhop.catalog.query import select
    from skyhop.spec.fields import InfraPattern

    best: tuple[float, str] | None = None
    for alt in task.resources.alternatives():
        if alt.instance_type:
            candidates = [(0.0, alt.instance_type)]
        else:
            resources = alt.model_copy(update={"infra": None, "use_spot": True})
            rows = select(catalog, resources, num_nodes=task.num_nodes,
                          allowed_infra=[InfraPattern("aws")], where=file).rows
            rows = rows[~np.isnan(catalog.price[rows])]
            names = catalog.instance_types
            candidates = [(float(catalog.price[r]), names[catalog.instance_type[r]])
                          for r in rows]
        for candidate in candidates:
            if best is None or candidate < best:
                best = candidate
    if best is None:
        raise UserError(f"{file}: no AWS instance type with spot matches the task",
                        hint="give --instance-type (e.g. p3.2xlarge)")
    return best[1]
