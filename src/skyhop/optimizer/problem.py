"""From a DAG and the catalog to a small placement problem: candidates per task, pruned.

A candidate is one offer in one market for one task, with its compute cost (hourly price x
nodes x estimated hours) plus the egress for the task's inputs, which depends only on the
candidate's own location. Egress between tasks depends only on the regions of both ends
(`catalog.egress`), so for a task only the cheapest candidate per (region, duration) can be
part of an optimum, and one that costs more than a cheaper, no slower candidate elsewhere
plus the most egress the task's edges could save is never optimal either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skyhop.catalog.blocklist import Blocklist
from skyhop.catalog.catalog import Catalog
from skyhop.catalog.egress import DEFAULT_EGRESS, EGRESS, egress_price_per_gb
from skyhop.catalog.query import Selection, explain_empty, select
from skyhop.errors import InfeasibleError, SpecError, UnknownAcceleratorError
from skyhop.spec.dag import Dag
from skyhop.spec.fields import InfraPattern
from skyhop.spec.task import Task

DEFAULT_HOURS = 1.0


@dataclass
class Candidates:
    """Candidates of one task, as parallel arrays."""

    rows: np.ndarray  # catalog row
    spot: np.ndarray  # bool
    hourly: np.ndarray  # USD/h per node
    hours: np.ndarray
    compute_cost: np.ndarray  # hourly x nodes x hours
    input_cost: np.ndarray  # egress of the task's inputs to this location
    region: np.ndarray
    provider: np.ndarray

    @property
    def cost(self) -> np.ndarray:
        return self.compute_cost + self.input_cost

    def take(self, keep: np.ndarray) -> Candidates:
        return Candidates(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    def __len__(self) -> int:
        return len(self.rows)


def task_label(task: Task, index: int) -> str:
    return f"task {task.name!r}" if task.name else f"task #{index + 1}"


def task_name(task: Task, index: int) -> str:
    return task.name or f"task-{index + 1}"


def _hours_for(task: Task, catalog: Catalog, rows: np.ndarray) -> np.ndarray:
    estimate = task.estimated_hours
    if estimate is None:
        return np.full(len(rows), DEFAULT_HOURS)
    if isinstance(estimate, float):
        return np.full(len(rows), estimate)
    by_index = np.full(len(catalog.accelerators) + 1, np.nan)
    for name, hours in estimate.items():
        try:
            canonical = catalog.accelerator_names.resolve(name)
        except UnknownAcceleratorError as exc:
            exc.where = task.where("estimated_hours", name)
            raise
        by_index[catalog.accelerators.index(canonical)] = hours
    hours = by_index[catalog.accelerator[rows]]
    if np.isnan(hours).any():
        missing = sorted({catalog.accelerators[a] for a in catalog.accelerator[rows][
            np.isnan(hours)]})
        raise SpecError(f"estimated_hours has no entry for {', '.join(missing)}",
                        where=task.where("estimated_hours"),
                        hint="give hours for every accelerator the task may run on")
    return hours


def _input_cost(task: Task, catalog: Catalog, region: np.ndarray) -> np.ndarray:
    """Egress of the task's inputs to each candidate region (USD)."""
    cost = np.zeros(len(region))
    refs = [r for r in task.inputs if r.gigabytes > 0 and r.provider not in (None, "local")]
    if not refs:
        return cost
    unique, inverse = np.unique(region, return_inverse=True)
    for ref in refs:
        per_region = np.array([
            egress_price_per_gb(ref.provider, ref.region,
                                catalog.providers[catalog.region_provider[r]],
                                catalog.region_names[r]) for r in unique])
        cost += ref.gigabytes * per_region[inverse]
    return cost


def task_candidates(task: Task, index: int, catalog: Catalog, *,
                    allowed_infra: Sequence[InfraPattern] = (),
                    blocklist: Blocklist | None = None,
                    availability: Mapping[Any, float] | None = None,
                    min_availability: float = 0.0) -> Candidates:
    """Every offer that can run `task`, over all its resource alternatives."""
    selections: list[Selection] = []
    where = task.where("resources")
    for alternative in task.resources.alternatives():
        selection = select(catalog, alternative, num_nodes=task.num_nodes,
                           allowed_infra=allowed_infra, blocklist=blocklist,
                           where=task.where("resources", "accelerators"))
        selections.append(selection)
        if task.resources.is_ordered and len(selection):
            break  # `ordered`: the first alternative that can be met wins
    live = [s for s in selections if len(s)]
    if not live:
        if len(selections) == 1:
            raise explain_empty(catalog, selections[0], task_label(task, index), where)
        reasons = [str(explain_empty(catalog, s, f"option {i + 1}")) for i, s in
                   enumerate(selections)]
        raise InfeasibleError(f"{task_label(task, index)}: none of its "
                              f"{len(selections)} resource options can be met:\n  "
                              + "\n  ".join(reasons), where=where)
    rows = np.concatenate([s.rows for s in live])
    spot = np.concatenate([np.full(len(s), s.use_spot) for s in live])
    hourly = np.concatenate([s.hourly for s in live])
    if availability and min_availability > 0:
        likely = _likely_available(catalog, rows, spot, availability, min_availability)
        if likely.any():  # skip unlikely places, unless nothing else is left
            rows, spot, hourly = rows[likely], spot[likely], hourly[likely]
    hours = _hours_for(task, catalog, rows)
    region = catalog.region[rows].astype(np.int64)
    return Candidates(rows=rows, spot=spot, hourly=hourly, hours=hours,
                      compute_cost=hourly * task.num_nodes * hours,
                      input_cost=_input_cost(task, catalog, region), region=region,
                      provider=catalog.provider[rows].astype(np.int64))


def _likely_available(catalog: Catalog, rows: np.ndarray, spot: np.ndarray,
                      availability: Mapping[Any, float], threshold: float) -> np.ndarray:
    """Mask of rows whose observed availability (tracker Key -> p) is not below threshold;
    places never observed count as available."""
    keep = np.ones(len(rows), dtype=bool)
    zone_index = {z: i for i, z in enumerate(catalog.zones)}
    type_index = {t: i for i, t in enumerate(catalog.instance_types)}
    for key, p in availability.items():
        if p >= threshold or key.provider not in catalog.providers:
            continue
        mask = ((catalog.provider[rows] == catalog.providers.index(key.provider))
                & (catalog.instance_type[rows] == type_index.get(key.instance_type, -2))
                & (spot == key.spot))
        if key.zone is not None:
            mask &= catalog.zone[rows] == zone_index.get(key.zone, -2)
        elif key.region is not None:
            regions = catalog.region_names
            mask &= np.array([regions[r] == key.region for r in catalog.region[rows]])
        keep &= ~mask
    return keep


def max_egress_rate() -> float:
    """The highest USD/GB any move between two locations can cost."""
    return max([DEFAULT_EGRESS.internet, *(p.internet for p in EGRESS.values())])


def prune(cands: Candidates, *, time_matters: bool, slack: float) -> Candidates:
    """Drop candidates that cannot be in any optimal plan (exact; see module docstring)."""
    if len(cands) <= 1:
        return cands
    cost = cands.cost
    hours = cands.hours if time_matters else np.zeros(len(cands))
    # 1. One per (region, duration): the cheapest (ties: the first in catalog order).
    order = np.lexsort((cands.rows, cost, hours, cands.region))
    r, h = cands.region[order], hours[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (r[1:] != r[:-1]) | (h[1:] != h[:-1])
    cands = cands.take(order[first])
    cost, hours = cands.cost, (cands.hours if time_matters else np.zeros(len(cands)))
    # 2. Dominance: another candidate no slower and cheaper by more than the slack
    #    (the most this task's egress could differ between two locations).
    order = np.lexsort((cands.rows, cost, hours))
    cost_sorted, hours_sorted = cost[order], hours[order]
    best_so_far = np.minimum.accumulate(cost_sorted)
    # Candidates with equal duration share the best cost among them and faster ones.
    last_of_level = np.searchsorted(hours_sorted, hours_sorted, side="right") - 1
    bound = best_so_far[last_of_level]
    if slack <= 0:
        # Nothing to gain by moving: keep the one cheapest per duration level, and only
        # levels that improve on every faster one.
        first_of_level = np.ones(len(order), dtype=bool)
        first_of_level[1:] = hours_sorted[1:] != hours_sorted[:-1]
        faster_best = np.concatenate([[np.inf], best_so_far[:-1]])
        keep = first_of_level & (cost_sorted < faster_best - 1e-12)
        return cands.take(order[keep])
    keep = cost_sorted <= bound + slack + 1e-9
    return cands.take(order[keep])


def build_candidates(dag: Dag, catalog: Catalog, *, time_matters: bool,
                     allowed_infra: Sequence[InfraPattern] = (),
                     blocklist: Blocklist | None = None,
                     availability: Mapping[Any, float] | None = None,
                     min_availability: float = 0.0
                     ) -> tuple[list[Candidates], list[Candidates], list[float]]:
    """(all candidates, pruned candidates, edge data in GB) for every task of the DAG."""
    cache: dict[tuple, Candidates] = {}
    full: list[Candidates] = []
    for i, task in enumerate(dag.tasks):
        # Identical requirements share one catalog scan (long chains of similar tasks).
        # (job_recovery and labels may hold dicts; they and autostop do not change where a
        # task can run)
        placement_fields = task.resources.model_copy(update={"job_recovery": None,
                                                             "labels": None,
                                                             "autostop": None})
        key = (placement_fields, task.num_nodes, _freeze(task.estimated_hours),
               tuple((r.uri, r.gigabytes, r.region) for r in task.inputs))
        if key not in cache:
            cache[key] = task_candidates(task, i, catalog, allowed_infra=allowed_infra,
                                         blocklist=blocklist, availability=availability,
                                         min_availability=min_availability)
        full.append(cache[key])
    edge_gb = [dag.tasks[u].output_gigabytes for u, _ in dag.edges]
    slack = np.zeros(len(dag.tasks))
    rate = max_egress_rate()
    for (u, v), gb in zip(dag.edges, edge_gb, strict=True):
        slack[u] += gb * rate
        slack[v] += gb * rate
    pruned = [prune(c, time_matters=time_matters, slack=float(s)) for c, s in zip(full, slack,
                                                                                  strict=True)]
    return full, pruned, edge_gb


def _freeze(value: object) -> object:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value
