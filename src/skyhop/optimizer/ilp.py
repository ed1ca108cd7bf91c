"""The placement ILP, solved exactly with HiGHS.

Variables: x[t,k] = 1 when task t takes candidate k. For each DAG edge (u, v) carrying D GB,
egress costs D x (src's internet price if the providers differ, its inter-region price if
only the regions differ, its intra price otherwise). With intra <= inter <= internet that is

    D * ( sum_k internet(p_k) x[u,k]  -  sum_p (internet(p) - inter(p)) a[p]
                                      -  sum_r (inter(p_r) - intra(p_r)) b[r] )

with a[p] <= both ends' share of provider p, b[r] <= both ends' share of region r. The
rewards make a and b as large as allowed, which at integer x is exactly "both in p" /
"both in r". This needs (providers + regions) variables per edge instead of the region-pair
product (which would be ~170^2 here).

For completion time, f[t] is task t's finish: f[t] >= f[u] + hours(t) for every parent u;
the makespan M >= f[t]. Time is minimised first, then cost at that time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skyhop.catalog.catalog import Catalog
from skyhop.catalog.egress import prices_for
from skyhop.optimizer.problem import Candidates

_INF = float("inf")


@dataclass
class Solution:
    choice: list[int]  # index into each task's candidates
    status: str


def _quiet_highs(highspy):
    """A Highs instance without its banner: HiGHS >= 1.12 prints it to fd 1 from the C++
    constructor, before any option can be set, which would corrupt `--json` output."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class _Model:
    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.rows: list[tuple[np.ndarray, np.ndarray, float, float]] = []

    def add_vars(self, cost: Sequence[float] | np.ndarray, lower: float, upper: float,
                 integer: bool = False) -> np.ndarray:
        start = len(self.cost)
        self.cost.extend(float(c) for c in cost)
        n = len(self.cost) - start
        self.lower.extend([lower] * n)
        self.upper.extend([upper] * n)
        self.integer.extend([integer] * n)
        return np.arange(start, start + n)

    def add_row(self, cols: np.ndarray, vals: np.ndarray, lower: float, upper: float) -> None:
        self.rows.append((np.asarray(cols, dtype=np.int64), np.asarray(vals, dtype=float),
                          lower, upper))

    def solve(self, objective: np.ndarray, time_limit: float) -> tuple[str, np.ndarray | None]:
        import highspy

        h = _quiet_highs(highspy)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(time_limit))
        h.setOptionValue("mip_rel_gap", 1e-9)
        inf = highspy.kHighsInf
        n, m = len(self.cost), len(self.rows)
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = np.asarray(objective, dtype=float)
        lp.col_lower_ = np.asarray(self.lower, dtype=float)
        lp.col_upper_ = np.where(np.isinf(self.upper), inf, self.upper)
        lower = np.array([r[2] for r in self.rows], dtype=float)
        upper = np.array([r[3] for r in self.rows], dtype=float)
        lp.row_lower_ = np.where(np.isinf(lower), -inf, lower)
        lp.row_upper_ = np.where(np.isinf(upper), inf, upper)
        if m:
            lengths = np.array([len(r[0]) for r in self.rows])
            row_index = np.repeat(np.arange(m), lengths)
            cols = np.concatenate([r[0] for r in self.rows])
            vals = np.concatenate([r[1] for r in self.rows])
            order = np.lexsort((row_index, cols))
            counts = np.bincount(cols, minlength=n)
            start = np.concatenate([[0], np.cumsum(counts)])
            lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
            lp.a_matrix_.start_ = start.astype(np.int32)
            lp.a_matrix_.index_ = row_index[order].astype(np.int32)
            lp.a_matrix_.value_ = vals[order]
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else
                           highspy.HighsVarType.kContinuous for i in self.integer]
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
        if status == highspy.HighsModelStatus.kOptimal:
            return "optimal", np.array(h.getSolution().col_value)
        if status == highspy.HighsModelStatus.kInfeasible:
            return "infeasible", None
        return h.modelStatusToString(status), None


def solve(cands: list[Candidates], edges: Sequence[tuple[int, int]], edge_gb: Sequence[float],
          catalog: Catalog, *, minimize: str, deadline: float | None = None,
          budget: float | None = None, time_limit: float = 60.0) -> Solution:
    model = _Model()
    x = []
    for c in cands:
        cols = model.add_vars(c.cost, 0.0, 1.0, integer=True)
        x.append(cols)
        model.add_row(cols, np.ones(len(cols)), 1.0, 1.0)
    cost_of = dict(zip(range(len(model.cost)), model.cost, strict=True))

    providers = catalog.providers
    for (u, v), gb in zip(edges, edge_gb, strict=True):
        if gb <= 0:
            continue
        cu, cv = cands[u], cands[v]
        internet = np.array([prices_for(providers[p]).internet for p in cu.provider])
        for j, col in enumerate(x[u]):
            cost_of[int(col)] += gb * internet[j]
        for kind, key_u, key_v in (("provider", cu.provider, cv.provider),
                                   ("region", cu.region, cv.region)):
            for key in np.intersect1d(key_u, key_v):
                p = providers[key] if kind == "provider" else providers[
                    catalog.region_provider[key]]
                prices = prices_for(p)
                saving = (prices.internet - prices.inter_region if kind == "provider"
                          else prices.inter_region - prices.intra_zone)
                if saving <= 0:
                    continue
                (col,) = model.add_vars([0.0], 0.0, 1.0)
                cost_of[int(col)] = -gb * saving
                for side_cols, side_keys in ((x[u], key_u), (x[v], key_v)):
                    members = side_cols[side_keys == key]
                    model.add_row(np.concatenate([[col], members]),
                                  np.concatenate([[1.0], -np.ones(len(members))]), -_INF, 0.0)

    makespan = None
    if minimize == "time" or deadline is not None:
        finish = model.add_vars(np.zeros(len(cands)), 0.0, _INF)
        (makespan,) = model.add_vars([0.0], 0.0, _INF if deadline is None else deadline)
        parents: list[list[int]] = [[] for _ in cands]
        for u, v in edges:
            parents[v].append(u)
        has_child = {u for u, _ in edges}
        for t, c in enumerate(cands):
            # f[t] - hours(t) - f[u] >= 0 for each parent u (or >= 0 for a source)
            for u in parents[t] or [None]:
                cols = np.concatenate([[finish[t]], x[t]] + ([[finish[u]]] if u is not None
                                                              else []))
                vals = np.concatenate([[1.0], -c.hours] + ([[-1.0]] if u is not None else []))
                model.add_row(cols, vals, 0.0, _INF)
            if t not in has_child:
                model.add_row(np.array([makespan, finish[t]]), np.array([1.0, -1.0]), 0.0, _INF)

    n = len(model.cost)
    cost_vector = np.array([cost_of.get(i, 0.0) for i in range(n)])
    if budget is not None:
        nz = np.nonzero(cost_vector)[0]
        model.add_row(nz, cost_vector[nz], -_INF, budget)

    if minimize == "time":
        time_vector = np.zeros(n)
        time_vector[makespan] = 1.0
        status, values = model.solve(time_vector, time_limit)
        if values is None:
            return Solution([], status)
        best = values[makespan]
        model.upper[makespan] = best * (1 + 1e-9) + 1e-9
    status, values = model.solve(cost_vector, time_limit)
    if values is None:
        return Solution([], status)
    choice = [int(np.argmax(values[cols])) for cols in x]
    return Solution(choice, status)
