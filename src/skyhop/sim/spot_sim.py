"""Replay one job with a deadline on a real spot availability trace, with preemptions.

Model (Can't Be Late, Wu et al., NSDI'24, section 3): the job needs `compute_h` hours of compute
and must finish `deadline_h` hours after it starts. Spot runs only in ticks where the trace
shows an instance available (`data[i] >= nodes`); a spot instance running when availability
drops is preempted at that tick boundary (progress is kept: the job checkpoints). On-demand is
always available. Every start, on spot or on-demand, pays `changeover_h` of no progress at
full price. Billing is per second while an instance runs (the paper's assumption, section 3.1).

Discretisation (the same for the policies' replay and for the omniscient optimum, so the two are
exactly comparable): decisions are taken at tick boundaries (the trace's `gap_seconds`); time
inside a tick is counted in `units_per_tick` equal units, the fewest (up to 12) that make the
changeover a whole number of units within 2.5% (e.g. 195 s ticks: 3 units of 65 s, changeover
0.2 h = 11 units = 715 s). The job's compute is rounded up, and its deadline down, to units.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from skyhop.clock import VirtualClock
from skyhop.jobs.policies import ON_DEMAND, SPOT, Instance, JobState, Policy
from skyhop.sim.traces import Trace

MAX_UNITS_PER_TICK = 12
CHANGEOVER_TOLERANCE = 0.025  # the changeover may be off by this share, for coarser units


@dataclass(frozen=True, slots=True)
class Prices:
    on_demand: float  # USD per hour
    spot: float


@dataclass(frozen=True, slots=True)
class Job:
    compute_h: float  # C
    deadline_h: float  # D, from the job's start
    changeover_h: float = 0.2  # d; the paper's default (section 6.1)


@dataclass(frozen=True, slots=True)
class Grid:
    """One job discretised on one trace's ticks."""

    gap_s: float
    units_per_tick: int  # q
    work_units: int  # P: the job's compute
    deadline_units: int  # the deadline
    changeover_units: int  # c

    @classmethod
    def of(cls, job: Job, gap_s: float) -> Grid:
        d_s = job.changeover_h * 3600
        q = MAX_UNITS_PER_TICK
        for n in range(1, MAX_UNITS_PER_TICK + 1):
            units = d_s / (gap_s / n)
            if abs(units - round(units)) * (gap_s / n) <= CHANGEOVER_TOLERANCE * d_s:
                q = n
                break
        unit_s = gap_s / q
        return cls(gap_s, q, max(1, math.ceil(job.compute_h * 3600 / unit_s - 1e-9)),
                   math.floor(job.deadline_h * 3600 / unit_s + 1e-9), round(d_s / unit_s))

    @property
    def deadline_ticks(self) -> int:
        """T: the ticks the job may use (the last one possibly in part)."""
        return -(-self.deadline_units // self.units_per_tick)

    @property
    def feasible(self) -> bool:
        """Whether on-demand from the start meets the deadline."""
        return self.work_units + self.changeover_units <= self.deadline_units

    @property
    def unit_h(self) -> float:
        return self.gap_s / self.units_per_tick / 3600

    @property
    def tick_h(self) -> float:
        return self.gap_s / 3600

    @property
    def deadline_h(self) -> float:
        return self.deadline_units * self.unit_h


@dataclass(frozen=True, slots=True)
class SimResult:
    policy: str
    trace: str
    start_h: float  # where in the trace the job started
    cost: float  # USD
    deadline_met: bool
    finish_h: float  # since the job's start
    spot_hours: float  # billed, changeovers included
    on_demand_hours: float
    preemptions: int
    changeovers: int

    def to_json(self) -> dict:
        return asdict(self)


def spot_mask(trace: Trace, start_tick: int, ticks: int, nodes: int = 1) -> np.ndarray:
    """Whether `nodes` spot instances are available, per tick of the job's window."""
    if start_tick < 0 or start_tick + ticks > len(trace.available):
        raise ValueError(f"trace {trace.name} has {len(trace.available)} ticks; the job needs "
                         f"ticks {start_tick}..{start_tick + ticks - 1}")
    return trace.available[start_tick:start_tick + ticks] >= nodes


def on_demand_cost(job: Job, prices: Prices, gap_s: float) -> float:
    """On-demand from the start: one changeover, then the compute."""
    g = Grid.of(job, gap_s)
    return (g.work_units + g.changeover_units) * g.unit_h * prices.on_demand


def periods(available: np.ndarray, gap_s: float) -> list[tuple[bool, float]]:
    """Run lengths of a per-tick availability mask: (available, hours), oldest first."""
    out: list[tuple[bool, float]] = []
    if len(available) == 0:
        return out
    change = np.flatnonzero(available[1:] != available[:-1]) + 1
    bounds = [0, *change.tolist(), len(available)]
    for lo, hi in itertools.pairwise(bounds):
        out.append((bool(available[lo]), (hi - lo) * gap_s / 3600))
    return out


def simulate(trace: Trace, policy: Policy, job: Job, prices: Prices, *, start_tick: int = 0,
             nodes: int = 1, history_h: float = 0.0) -> SimResult:
    """Replay `policy` on the trace from `start_tick`, deciding at every tick boundary. A
    policy that learns (`observe_history`) is first shown up to `history_h` hours of the trace
    before the start: what a tracker would have seen, never the future."""
    g = Grid.of(job, trace.gap_s)
    observe = getattr(policy, "observe_history", None)
    if history_h > 0 and observe is not None and start_tick > 0:
        first = max(0, start_tick - round(history_h * 3600 / trace.gap_s))
        observe(periods(trace.available[first:start_tick] >= nodes, trace.gap_s))
    q, work, c, ticks = g.units_per_tick, g.work_units, g.changeover_units, g.deadline_ticks
    spot = spot_mask(trace, start_tick, ticks, nodes).tolist()
    uh, tick_h = g.unit_h, g.tick_h
    ratio = prices.on_demand / prices.spot if prices.spot > 0 else None
    clock = VirtualClock()
    done = co_left = spot_units = od_units = preemptions = changeovers = 0
    current: Instance | None = None
    finish: int | None = None  # in units since the start
    for i in range(ticks):
        available = spot[i]
        if current == SPOT and not available:
            current, co_left = None, 0
            preemptions += 1
        decision = policy.decide(JobState(
            now_h=clock.now() / 3600, elapsed_compute_h=done * uh, total_compute_h=work * uh,
            deadline_h=g.deadline_h, changeover_h=c * uh, current=current,
            spot_available=available, step_h=tick_h, changeover_left_h=co_left * uh,
            price_ratio=ratio))
        if (decision == SPOT and available) or decision == ON_DEMAND:
            if current != decision:
                current, co_left = (SPOT if decision == SPOT else ON_DEMAND), c
                changeovers += 1
        else:  # wait, or spot asked for while there is none
            current, co_left = None, 0
        if current is not None:
            used = min(co_left, q)
            co_left -= used
            gain = min(q - used, work - done)
            done += gain
            billed = used + gain if done == work else q
            if current == SPOT:
                spot_units += billed
            else:
                od_units += billed
            if done == work:
                finish = i * q + used + gain
                break
        clock.advance(g.gap_s)
    met = finish is not None and finish <= g.deadline_units
    if finish is None:  # late: finish on on-demand after the deadline, and say so
        if current == ON_DEMAND:
            extra = co_left + work - done
        else:
            extra = c + work - done
            changeovers += 1
        od_units += extra
        finish = ticks * q + extra
    return SimResult(policy.name, trace.name, start_tick * tick_h,
                     spot_units * uh * prices.spot + od_units * uh * prices.on_demand, met,
                     finish * uh, spot_units * uh, od_units * uh, preemptions, changeovers)


# --- the omniscient optimum ---------------------------------------------------------------------

def omniscient(trace: Trace, job: Job, prices: Prices, *, start_tick: int = 0,
               nodes: int = 1) -> float:
    """The least cost that meets the deadline, knowing the whole trace (inf if none does)."""
    return float(omniscient_costs(trace, job, prices, [start_tick], nodes=nodes)[0])


def omniscient_costs(trace: Trace, job: Job, prices: Prices, start_ticks: list[int], *,
                     nodes: int = 1) -> np.ndarray:
    """`omniscient` for many start ticks at once (one vectorised pass).

    Exact dynamic programme over the grid above, backwards in time. The state at a tick
    boundary is (lag z, mode). The lag is time elapsed minus progress, in units: running keeps
    it, a tick idle adds a tick, a changeover adds the changeover; the job can still make the
    deadline iff z <= Z = deadline - P (in units). Modes: idle, spot running, on-demand
    running (changeover done). A start jumps over its changeover (stopping during one only
    wastes money, and starting spot that will not outlive its changeover is never optimal),
    so the programme has three value arrays per tick over (window, z). Checked against brute
    force over every decision sequence in tests/test_spot_policies.py.
    """
    g = Grid.of(job, trace.gap_s)
    q, work, c, ticks = g.units_per_tick, g.work_units, g.changeover_units, g.deadline_ticks
    max_lag = g.deadline_units - work
    windows = len(start_ticks)
    if max_lag < c or windows == 0:
        return np.full(windows, math.inf)
    spot = np.stack([spot_mask(trace, s, ticks, nodes) for s in start_ticks])
    run = np.zeros((windows, ticks + 1), dtype=np.int64)  # available ticks in a row from t
    for t in range(ticks - 1, -1, -1):
        run[:, t] = np.where(spot[:, t], run[:, t + 1] + 1, 0)
    us, uo = prices.spot * g.unit_h, prices.on_demand * g.unit_h
    a, b = divmod(c, q)
    need = a + (1 if b else 0)  # ticks a spot changeover spans
    lag = np.arange(max_lag + 1)
    inf_row = np.full((windows, max_lag + 1), math.inf)

    def shift(values: np.ndarray, k: int) -> np.ndarray:
        """values[:, z + k], inf past the last feasible lag."""
        if k == 0:
            return values
        out = np.full_like(values, math.inf)
        if k <= max_lag:
            out[:, :max_lag + 1 - k] = values[:, k:]
        return out

    # value arrays by tick, kept for the ticks a start may jump to
    idle_next = inf_row
    spot_at: dict[int, np.ndarray] = {ticks: inf_row}
    od_at: dict[int, np.ndarray] = {ticks: inf_row}
    for t in range(ticks - 1, -1, -1):
        left = work - t * q + lag  # compute left, in units (> 0 in every reachable state)
        finishing = left <= q
        this_tick = np.minimum(left, q)
        cont_spot = np.where(finishing, us * this_tick, us * q + spot_at[t + 1])
        cont_spot = np.where(spot[:, t, None], cont_spot, math.inf)
        cont_od = np.where(finishing, uo * this_tick, uo * q + od_at[t + 1])
        if c == 0:
            start_spot, start_od = cont_spot, cont_od
        elif b == 0:  # the changeover ends on the boundary t + a
            start_spot = us * c + shift(spot_at.get(t + a, inf_row), c)
            start_od = uo * c + shift(od_at.get(t + a, inf_row), c)
        elif t + a >= ticks:  # it would end after the deadline
            start_spot = start_od = inf_row
        else:  # it ends inside tick t + a, which then runs q - b units
            gain = np.minimum(q - b, left)
            done = left <= q - b
            start_spot = us * (c + gain) + np.where(done, 0.0,
                                                    shift(spot_at.get(t + a + 1, inf_row), c))
            start_od = uo * (c + gain) + np.where(done, 0.0,
                                                  shift(od_at.get(t + a + 1, inf_row), c))
            too_late = lag + c > max_lag
            start_spot = np.where(too_late, math.inf, start_spot)
            start_od = np.where(too_late, math.inf, start_od)
        if need:
            start_spot = np.where((run[:, t] >= need)[:, None], start_spot, math.inf)
        idle = np.minimum(np.minimum(shift(idle_next, q), start_spot), start_od)
        spot_at[t] = np.minimum(idle, cont_spot)
        od_at[t] = np.minimum(idle, cont_od)
        idle_next = idle
        spot_at.pop(t + a + 2, None)
        od_at.pop(t + a + 2, None)
    return idle_next[:, 0].copy()


def window_starts(trace: Trace, job: Job, every_h: float) -> list[int]:
    """Start ticks every `every_h` hours while the whole deadline fits in the trace."""
    g = Grid.of(job, trace.gap_s)
    last = len(trace.available) - g.deadline_ticks
    step = max(1, round(every_h * 3600 / trace.gap_s))
    return list(range(0, last + 1, step)) if last >= 0 else []


# --- prices from the catalog ----------------------------------------------------------------------

FALLBACK_REGION = "us-east-1"  # for traces from regions the catalog has no price for (e.g. GCP)


def catalog_prices(instance_type: str, region: str, catalog=None) -> tuple[Prices, str]:
    """`instance_type`'s AWS prices in `region` (else in us-east-1) and the region used: the
    on-demand price, and the median spot price across the region's zones (AWS prices spot
    per AZ ID, README section 1.3; the trace's AZ name maps to an account-specific ID, so the
    zone's own price is unknowable)."""
    import statistics

    if catalog is None:
        from skyhop.catalog.catalog import load_catalog

        catalog = load_catalog()
    if instance_type not in catalog.instance_types:
        raise ValueError(f"the catalog has no instance type {instance_type!r}")
    rows = (catalog.instance_type == catalog.instance_types.index(instance_type)).nonzero()[0]
    offers = [catalog.offer(int(r)) for r in rows]
    for where in (region, FALLBACK_REGION):
        here = [(o.price, o.spot_price) for o in offers if o.provider == "aws"
                and o.region == where and o.price is not None and o.spot_price is not None]
        if here:
            return Prices(statistics.median(p for p, _ in here),
                          statistics.median(s for _, s in here)), where
    raise ValueError(f"the catalog has no AWS on-demand and spot price for {instance_type} in "
                     f"{region} or {FALLBACK_REGION}")


def trace_region(trace_name: str) -> str:
    """The region of a trace's zone: `us-east-1a` -> `us-east-1`, `us-central1-a` ->
    `us-central1`."""
    if trace_name[-2:-1] == "-":  # GCP zones: region-letter
        return trace_name[:-2]
    return trace_name[:-1]  # AWS zone names: region + letter
