"""`optimize(dag)`: the cheapest (or fastest) placement of every task. A pure function of the
DAG, the catalog and the constraints handed to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skyhop.catalog.blocklist import Blocklist
from skyhop.catalog.catalog import Catalog, load_catalog
from skyhop.catalog.egress import egress_price_per_gb
from skyhop.errors import InfeasibleError, UserError
from skyhop.optimizer import ilp
from skyhop.optimizer.plan import Considered, Placement, Plan, Transfer
from skyhop.optimizer.problem import Candidates, build_candidates, task_name
from skyhop.spec.dag import Dag
from skyhop.spec.fields import InfraPattern
from skyhop.spec.task import Task

OBJECTIVES = ("cost", "time")


def optimize(dag: Dag | Task, catalog: Catalog | None = None, *, minimize: str = "cost",
             deadline: float | None = None, budget: float | None = None,
             allowed_infra: Sequence[InfraPattern] = (),
             blocklist: Blocklist | None = None,
             availability: Mapping[Any, float] | None = None,
             min_availability: float = 0.0) -> Plan:
    """Place every task of `dag`. `deadline` (hours) bounds completion time when minimising
    cost; `budget` (USD) bounds total cost when minimising time. `availability` (the
    tracker's estimates, Key -> 0..1) skips places below `min_availability` while others
    remain."""
    if isinstance(dag, Task):
        dag = Dag([dag])
    if minimize not in OBJECTIVES:
        raise UserError(f"unknown objective {minimize!r}", hint="use 'cost' or 'time'")
    if deadline is not None and minimize != "cost":
        raise UserError("a deadline applies when minimising cost",
                        hint="with --minimize time, bound the cost with --budget instead")
    if budget is not None and minimize != "time":
        raise UserError("a budget applies when minimising time",
                        hint="with --minimize cost, bound the time with --deadline instead")
    if not dag.tasks:
        raise UserError("there is no task to plan")
    catalog = catalog or load_catalog()
    time_matters = minimize == "time" or deadline is not None
    full, cands, edge_gb = build_candidates(dag, catalog, time_matters=time_matters,
                                            allowed_infra=allowed_infra, blocklist=blocklist,
                                            availability=availability,
                                            min_availability=min_availability)

    if all(len(c) == 1 for c in cands):
        choice, solver = [0] * len(cands), "direct"
    else:
        solution = ilp.solve(cands, dag.edges, edge_gb, catalog, minimize=minimize,
                             deadline=deadline, budget=budget)
        if solution.status == "infeasible":
            raise _explain_infeasible(dag, cands, edge_gb, catalog, minimize, deadline, budget)
        if not solution.choice:
            raise UserError(f"the solver stopped without a plan ({solution.status})")
        choice, solver = solution.choice, "ilp"

    plan = _make_plan(dag, catalog, cands, choice, edge_gb, minimize, solver)
    if deadline is not None and plan.total_hours > deadline + 1e-9:
        raise _explain_infeasible(dag, cands, edge_gb, catalog, minimize, deadline, budget)
    if budget is not None and plan.total_cost > budget + 1e-6:
        raise _explain_infeasible(dag, cands, edge_gb, catalog, minimize, deadline, budget)
    plan.considered = _considered(dag, catalog, full, plan)
    return plan


def _explain_infeasible(dag: Dag, cands: list[Candidates], edge_gb: list[float],
                        catalog: Catalog, minimize: str, deadline: float | None,
                        budget: float | None) -> InfeasibleError:
    if deadline is not None:
        fastest = ilp.solve(cands, dag.edges, edge_gb, catalog, minimize="time")
        hours = _makespan(dag, [c.hours[k] for c, k in zip(cands, fastest.choice,
                                                             strict=True)])
        return InfeasibleError(
            f"no plan meets the deadline of {deadline:g} h: the fastest plan takes {hours:.2f} h",
            hint="extend the deadline, give faster accelerators as alternatives, or lower "
                 "estimated_hours if the estimate is pessimistic")
    cheapest = ilp.solve(cands, dag.edges, edge_gb, catalog, minimize="cost")
    plan = _make_plan(dag, catalog, cands, cheapest.choice, edge_gb, "cost", "ilp")
    return InfeasibleError(
        f"no plan fits the budget of ${budget:,.2f}: the cheapest plan costs "
        f"${plan.total_cost:,.2f}", hint="raise the budget or relax the task's resources")


def _makespan(dag: Dag, hours: Sequence[float]) -> float:
    finish = [0.0] * len(dag.tasks)
    parents: list[list[int]] = [[] for _ in dag.tasks]
    for u, v in dag.edges:
        parents[v].append(u)
    for t in dag.order:
        finish[t] = max((finish[u] for u in parents[t]), default=0.0) + float(hours[t])
    return max(finish, default=0.0)


def _location(catalog: Catalog, row: int) -> tuple[str, str]:
    region = int(catalog.region[row])
    return catalog.providers[catalog.region_provider[region]], catalog.region_names[region]


def _make_plan(dag: Dag, catalog: Catalog, cands: list[Candidates], choice: list[int],
               edge_gb: list[float], minimize: str, solver: str) -> Plan:
    placements = []
    transfers = []
    for t, (task, c, k) in enumerate(zip(dag.tasks, cands, choice, strict=True)):
        row = int(c.rows[k])
        offer = catalog.offer(row)
        name = task_name(task, t)
        placements.append(Placement(
            name=name, provider=offer.provider, region=offer.region, zone=offer.zone,
            instance_type=offer.instance_type, accelerators=offer.accelerators,
            use_spot=bool(c.spot[k]), num_nodes=task.num_nodes,
            hourly_price=float(c.hourly[k]), est_hours=float(c.hours[k]),
            est_cost=float(c.compute_cost[k]), vcpus=offer.vcpus, memory_gib=offer.memory_gib))
        for ref in task.inputs:
            if ref.gigabytes <= 0 or ref.provider in (None, "local"):
                continue
            price = egress_price_per_gb(ref.provider, ref.region, offer.provider, offer.region)
            transfers.append(Transfer(
                src=ref.uri or "input", dst=name, gigabytes=ref.gigabytes,
                cost=ref.gigabytes * price,
                src_location="/".join(p for p in (ref.provider, ref.region) if p),
                dst_location=f"{offer.provider}/{offer.region}"))
    for (u, v), gb in zip(dag.edges, edge_gb, strict=True):
        if gb <= 0:
            continue
        src, dst = placements[u], placements[v]
        price = egress_price_per_gb(src.provider, src.region, dst.provider, dst.region)
        transfers.append(Transfer(src=src.name, dst=dst.name, gigabytes=gb, cost=gb * price,
                                  src_location=f"{src.provider}/{src.region}",
                                  dst_location=f"{dst.provider}/{dst.region}"))
    hours = _makespan(dag, [p.est_hours for p in placements])
    return Plan(objective=minimize, tasks=placements, egress=transfers, total_hours=hours,
                solver=solver)


def _considered(dag: Dag, catalog: Catalog, full: list[Candidates], plan: Plan
                ) -> list[Considered]:
    """Per task and provider, the best offer that provider gives; for the chosen provider,
    the chosen offer (it may not be that provider's cheapest when egress counts)."""
    out = []
    for task_index, c in enumerate(full):
        chosen = plan.tasks[task_index]
        cost = c.cost
        rows = []
        for p in np.unique(c.provider):
            provider = catalog.providers[p]
            if provider == chosen.provider:
                rows.append(Considered(
                    task=chosen.name, provider=provider, region=chosen.region,
                    zone=chosen.zone, instance_type=chosen.instance_type,
                    accelerators=chosen.accelerators, use_spot=chosen.use_spot,
                    vcpus=chosen.vcpus, memory_gib=chosen.memory_gib,
                    hourly_price=chosen.hourly_price, est_cost=chosen.est_cost, chosen=True))
                continue
            idx = np.nonzero(c.provider == p)[0]
            k = int(idx[np.argmin(cost[idx])])
            offer = catalog.offer(int(c.rows[k]))
            rows.append(Considered(
                task=chosen.name, provider=provider, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, accelerators=offer.accelerators,
                use_spot=bool(c.spot[k]), vcpus=offer.vcpus, memory_gib=offer.memory_gib,
                hourly_price=float(c.hourly[k]), est_cost=float(c.compute_cost[k]),
                chosen=False))
        out.extend(sorted(rows, key=lambda r: r.est_cost))
    return out
