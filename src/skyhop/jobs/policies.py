"""Spot policies for a job with a deadline: spot, on-demand or nothing, decided again and again.

The setting is that of "Can't Be Late: Optimizing Spot Instance Savings under Deadlines" (Wu et
al., NSDI'24, section 3): a job needs C hours of compute and must finish D hours after it was
submitted; it checkpoints, so a preemption loses no progress, but every (re)start, on spot or
on-demand, costs a changeover delay d of no progress at the new instance's price. On-demand is
always available; spot costs k times less but comes and goes.

The simulator (skyhop.sim.spot_sim) and the managed-jobs controller both call
`policy.decide(state)` whenever they must decide; a policy only sees the present state (and, if
it keeps any, what it saw before): never the future. A policy that learns may also offer
`observe_history(periods)`, to be shown the availability seen before the job started.
Policies: "greedy" and "uniform_progress" (the paper's, sections 3.4 and 5.2) and "skyhop"
(`SkyhopPolicy`: plans against a learned model of spot availability; see there).

Every policy here keeps the job feasible by construction (`safe`): it only leaves the current
instance, waits, or starts spot while on-demand could still finish the job by the deadline
after one more changeover. So a job whose deadline leaves room for on-demand alone (D >= C + d)
always meets it.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Literal, Protocol

from skyhop.errors import UserError

Instance = Literal["spot", "on_demand"]
Decision = Literal["spot", "on_demand", "wait"]
SPOT: Instance = "spot"
ON_DEMAND: Instance = "on_demand"
WAIT: Decision = "wait"
EPS_H = 1e-9  # float slack for comparisons of hours (the simulator's hours are exact multiples)


@dataclass(frozen=True, slots=True)
class JobState:
    """What a policy knows when it decides. Times are hours since the job was submitted."""

    now_h: float
    elapsed_compute_h: float  # progress: compute done and checkpointed
    total_compute_h: float  # C: compute the job needs in all
    deadline_h: float  # D: the job must be done by then
    changeover_h: float  # d: time without progress after each (re)start
    current: Instance | None  # what runs now; None when nothing does (or spot was preempted)
    spot_available: bool  # whether a spot instance could be had now
    step_h: float = 0.0  # time until the next decision (the caller's polling interval)
    changeover_left_h: float = 0.0  # of the current instance's start, still to go
    price_ratio: float | None = None  # k: on-demand price / spot price, when known

    @property
    def remaining_h(self) -> float:
        return max(0.0, self.total_compute_h - self.elapsed_compute_h)

    @property
    def time_left_h(self) -> float:
        return self.deadline_h - self.now_h

    @property
    def slack_h(self) -> float:
        """Time to spare: time left minus compute left (changeovers still to pay come out of
        it)."""
        return self.time_left_h - self.remaining_h


class Policy(Protocol):
    name: str

    def decide(self, state: JobState) -> Decision:
        """Run spot, run on-demand, or run nothing until the next decision."""
        ...


# --- the hard floor every policy respects ------------------------------------------------------

def spot_start_is_safe(state: JobState) -> bool:
    """Starting spot now is safe when a preemption right after its changeover still leaves one
    changeover for on-demand (the paper's Safety Net Rule: R(t) >= C(t) + 2d, section 3.3)."""
    return state.slack_h >= 2 * state.changeover_h - EPS_H


def waiting_is_safe(state: JobState) -> bool:
    """Running nothing until the next decision is safe when on-demand started then still
    finishes in time."""
    return state.slack_h - state.step_h >= state.changeover_h - EPS_H


def safe(state: JobState, decision: Decision) -> Decision:
    """`decision`, unless it could miss the deadline; then on-demand (which cannot)."""
    if state.remaining_h <= EPS_H:
        return WAIT  # done: the Thrifty Rule (section 3.3)
    if decision == SPOT and state.spot_available:
        if state.current == SPOT:  # keep running: its slack does not shrink while it runs
            ok = state.slack_h - state.changeover_left_h >= state.changeover_h - EPS_H
        else:
            ok = spot_start_is_safe(state)
        return SPOT if ok else ON_DEMAND
    if decision in (SPOT, WAIT):  # spot asked for but not there: nothing runs this step
        return WAIT if waiting_is_safe(state) else ON_DEMAND
    return ON_DEMAND


def _can_keep_options(state: JobState) -> bool:
    """Whether, after waiting one step, spot could still be started safely."""
    return state.slack_h - state.step_h >= 2 * state.changeover_h - EPS_H


# --- the paper's baselines ---------------------------------------------------------------------

class GreedyPolicy:
    """Greedy (section 3.4): spot whenever it is there and until it is preempted; otherwise
    wait, until waiting any longer would rule out spot (Safety Net Rule); then on-demand to the
    end."""

    name = "greedy"

    def decide(self, state: JobState) -> Decision:
        if state.current == ON_DEMAND:  # greedy only gets there by committing
            return safe(state, ON_DEMAND)
        if state.spot_available and (state.current == SPOT or spot_start_is_safe(state)):
            return safe(state, SPOT)
        if not state.spot_available and _can_keep_options(state):
            return safe(state, WAIT)
        return ON_DEMAND


class UniformProgressPolicy:
    """Uniform Progress (section 5.2): keep progress at or above the line C*t/D.

    1. Uniform Progress: idle and behind the line: on-demand to catch up.
    2. Taking Risks: spot whenever it is there (even when behind); stay until preempted.
    3. Hysteresis: on on-demand, stay until progress reaches the line 2d ahead, ep(t + 2d).
    4. Safety Net: idle and R(t) < C(t) + 2d: on-demand to the end.
    """

    name = "uniform_progress"

    def decide(self, state: JobState) -> Decision:
        d = state.changeover_h
        if state.current == SPOT and state.spot_available:
            return safe(state, SPOT)
        if state.current == ON_DEMAND:
            if not _can_keep_options(state):
                return ON_DEMAND  # Safety Net: to the end
            if state.elapsed_compute_h < self._expected(state, state.now_h + 2 * d) - EPS_H:
                return ON_DEMAND  # Hysteresis
            return safe(state, SPOT if state.spot_available else WAIT)
        if state.spot_available and spot_start_is_safe(state):
            return safe(state, SPOT)
        if not _can_keep_options(state):
            return ON_DEMAND  # Safety Net
        if state.elapsed_compute_h < self._expected(state, state.now_h) - EPS_H:
            return ON_DEMAND  # behind the line
        return safe(state, WAIT)

    @staticmethod
    def _expected(state: JobState, t_h: float) -> float:
        """ep(t): the progress a job on the uniform line C*t/D has made by `t_h`."""
        if state.deadline_h <= 0:
            return state.total_compute_h
        return state.total_compute_h * min(max(t_h, 0.0), state.deadline_h) / state.deadline_h


# --- skyhop's policy: plan against a learned model of spot availability -------------------------
#
# Why: the paper shows what makes the omniscient optimum better is skipping short spot lifetimes
# and switching from on-demand to spot with the opportunity cost in mind (sections 5.4, 6.4).
# Nobody knows a spot's lifetime in advance, but its distribution is learnable: spot periods
# have a decreasing hazard (one that has lasted an hour is likely to last several more), and so
# do outages. skyhop models availability as a semi-Markov process (hazard rate by age, for up
# and down periods), and solves the resulting Markov decision process exactly, by backward
# induction over (time step, slack left, instance, spot up/down and its age): a plan of the
# expected-cost-minimising decision for every state the job can reach. No future knowledge:
# the model comes from held-out traces (the prior below) and the availability seen before the
# job; the plan is made at the first decision (re-planning every 12 h with what the job saw
# since did not change the benchmark's result, so it is not done).

# Age buckets (hours since the spot state last changed), and hazard rates (per hour) in each,
# fitted (ends / hours at risk) on 16 probe logs held out from the benchmark:
# shared/data/spot-traces/michaelvll_skypilot-spot-strategy/raw_availability_10min/
# {2022-11-28T22-23,2022-12-13T19-23} (us-west-2a/b, K80/V100 x1/x8, 10-min probes; the
# benchmark's aws-10-26-2022 traces come from that repository's first period, left out).
# `python bench/spot_policy.py --fit-prior` re-derives them.
AGE_EDGES_H = (0.0, 1 / 6, 2 / 6, 3 / 6, 1.0, 2.0, 4.0, 8.0)
PRIOR_UP_RATES = (1.992, 1.274, 0.954, 0.802, 0.566, 0.332, 0.188, 0.088)
PRIOR_DOWN_RATES = (4.070, 1.916, 1.688, 1.147, 0.517, 0.271, 0.187, 0.027)
PRIOR_WEIGHT_H = 2.0  # the prior counts as this many hours at risk in each bucket
DEFAULT_PRICE_RATIO = 3.0  # k when the caller does not say: spot at a third of on-demand
MAX_PLAN_STEPS = 600  # the plan's time step grows for very long jobs to keep it small
PLAN_CACHE_SIZE = 4  # solved plans kept (at most ~17 MB each)


class SpotModel:
    """Hazard rates of spot availability by age, learned from observed up and down periods."""

    def __init__(self) -> None:
        n = len(AGE_EDGES_H)
        self.ends = {True: [0.0] * n, False: [0.0] * n}
        self.at_risk_h = {True: [0.0] * n, False: [0.0] * n}

    def add(self, available: bool, hours: float, ended: bool = True) -> None:
        """One period of availability (or of none) that lasted `hours`."""
        for b, lo in enumerate(AGE_EDGES_H):
            hi = AGE_EDGES_H[b + 1] if b + 1 < len(AGE_EDGES_H) else math.inf
            self.at_risk_h[available][b] += max(0.0, min(hours, hi) - lo)
        if ended and hours > 0:
            self.ends[available][_bucket(hours - 1e-9)] += 1

    def rates(self, available: bool) -> tuple[float, ...]:
        """Per-hour hazard by age bucket: observations shrunk towards the prior."""
        prior = PRIOR_UP_RATES if available else PRIOR_DOWN_RATES
        return tuple(round((e + PRIOR_WEIGHT_H * p) / (h + PRIOR_WEIGHT_H), 3) for e, h, p
                     in zip(self.ends[available], self.at_risk_h[available], prior, strict=True))


def _bucket(age_h: float) -> int:
    b = 0
    while b + 1 < len(AGE_EDGES_H) and age_h >= AGE_EDGES_H[b + 1]:
        b += 1
    return b


class SkyhopPolicy:
    """skyhop's policy: the expected-cost-optimal decision under a learned availability model,
    made safe (`safe`). Give it the availability seen before the job with `observe_history`
    when known (e.g. from the tracker); without it, the held-out prior alone is used."""

    name = "skyhop"

    def __init__(self) -> None:
        self.model = SpotModel()
        self._available: bool | None = None  # the spot state now, and since when (job clock)
        self._since_h = 0.0
        self._carried: tuple[bool, float] | None = None  # the period going on at the start
        self._plan: _Plan | None = None  # made at the first decision, from what was seen

    def observe_history(self, periods: list[tuple[bool, float]]) -> None:
        """Availability before the job, oldest first, as (available, hours) periods; the last
        one is taken to be still going when the job starts."""
        for available, hours in periods[:-1]:
            self.model.add(available, hours)
        if periods:
            self._carried = periods[-1]

    def decide(self, state: JobState) -> Decision:
        self._see(state)
        if state.remaining_h <= EPS_H:
            return WAIT
        if state.current is not None and state.changeover_left_h > EPS_H:
            return safe(state, state.current)  # let the restart finish unless preempted
        if self._plan is None or not self._plan.covers(state):
            self._plan = _plan_for(self.model, state)
        return safe(state, self._plan.decide(state, state.now_h - self._since_h))

    def _see(self, state: JobState) -> None:
        if self._available is None:  # the first decision: carry on the history's last period
            carried = self._carried
            same = carried is not None and carried[0] == state.spot_available
            if carried is not None and not same:
                self.model.add(*carried)  # it ended just as the job started
            self._available = state.spot_available
            self._since_h = state.now_h - (carried[1] if same and carried else 0.0)
        elif state.spot_available != self._available:
            self.model.add(self._available, state.now_h - self._since_h)
            self._available, self._since_h = state.spot_available, state.now_h


_plans: dict[tuple, _Plan] = {}  # solved plans by model, price ratio and changeover


def _plan_for(model: SpotModel, state: JobState) -> _Plan:
    """A plan for this model that covers the job's state, solved unless one is cached (a plan
    for more work or more slack covers less: e.g. one job under several deadlines)."""
    ratio = state.price_ratio if state.price_ratio and state.price_ratio > 0 else \
        DEFAULT_PRICE_RATIO
    key = (model.rates(True), model.rates(False), round(ratio, 2), round(state.changeover_h, 4))
    plan = _plans.get(key)
    if plan is not None and plan.covers(state):
        return plan
    work_h, slack_h = _ceil_to(state.remaining_h, 8.0), _ceil_to(max(state.slack_h, 0.0), 4.0)
    if plan is not None:
        work_h = max(work_h, plan.work_steps * plan.step_h)
        slack_h = max(slack_h, plan.slack_steps * plan.step_h)
    while len(_plans) >= PLAN_CACHE_SIZE:
        del _plans[next(iter(_plans))]
    plan = _plans[key] = _solve(*key, work_h, slack_h)
    return plan


def _ceil_to(x: float, unit: float) -> float:
    return max(unit, math.ceil(x / unit - 1e-9) * unit)


class _Plan:
    """The decision for every (step, slack, instance, spot state and age) of a solved MDP."""

    def __init__(self, actions, step_h: float, work_steps: int, slack_steps: int):
        self.actions = actions  # int8 [t, mode (idle/spot/on-demand), spot state, lag]
        self.step_h, self.work_steps, self.slack_steps = step_h, work_steps, slack_steps

    def covers(self, state: JobState) -> bool:
        return (state.remaining_h <= self.work_steps * self.step_h + EPS_H
                and state.slack_h <= self.slack_steps * self.step_h + self.step_h)

    def decide(self, state: JobState, age_h: float) -> Decision:
        work = max(1, math.ceil(state.remaining_h / self.step_h - 1e-6))
        slack = min(max(math.floor(state.slack_h / self.step_h + 1e-6), 0), self.slack_steps)
        t = self.work_steps + self.slack_steps - work - slack
        if t < 0:
            return ON_DEMAND
        spot_state = _bucket(age_h) + (0 if state.spot_available else len(AGE_EDGES_H))
        mode = {None: 0, SPOT: 1, ON_DEMAND: 2}[state.current]
        return (WAIT, SPOT, ON_DEMAND)[int(self.actions[t, mode, spot_state,
                                                         self.slack_steps - slack])]


def _solve(up_rates: tuple[float, ...], down_rates: tuple[float, ...], ratio: float,
           changeover_h: float, work_h: float, slack_h: float) -> _Plan:
    """Backward induction over time steps of one changeover (two steps per changeover gave the
    same benchmark result at four times the cost; coarser for very long jobs). Costs are in
    spot steps (an on-demand step costs `ratio`). The state at a step boundary: the lag z
    (steps elapsed minus steps of progress: running keeps it, idling or a changeover step adds
    one; the job can still finish iff z <= Z, the slack), the instance (idle; spot or on-demand
    in changeover with k steps left; spot or on-demand running) and the spot state (up or
    down, and its age bucket), which moves by the model's hazards each step."""
    import numpy as np

    step_h = max(changeover_h, (work_h + slack_h) / MAX_PLAN_STEPS, 1 / 60)
    restart = round(changeover_h / step_h)
    work, lag_max = math.ceil(work_h / step_h - 1e-9), math.floor(slack_h / step_h + 1e-9)
    n = len(AGE_EDGES_H)
    widths = [AGE_EDGES_H[b + 1] - AGE_EDGES_H[b] for b in range(n - 1)] + [math.inf]
    move = np.zeros((2 * n, 2 * n))  # spot state transition over one step
    for offset, rates, other in ((0, up_rates, n), (n, down_rates, 0)):
        for b in range(n):
            end = 1 - math.exp(-rates[b] * step_h)
            older = (1 - end) * min(1.0, step_h / widths[b]) if b + 1 < n else 0.0
            move[offset + b, other] += end  # the state flips: age 0 on the other side
            move[offset + b, offset + min(b + 1, n - 1)] += older
            move[offset + b, offset + b] += 1 - end - older
    up = np.zeros((2 * n, 1), dtype=bool)
    up[:n] = True
    big = 1e18
    # value arrays by mode: 0 idle, 1 spot running, 2 on-demand running,
    # 3..2+restart spot with k+1 changeover steps left, then on-demand likewise
    modes = 3 + 2 * restart
    spot_co = [3 + k for k in range(restart)]
    od_co = [3 + restart + k for k in range(restart)]
    values = np.full((modes, 2 * n, lag_max + 1), big)
    lag = np.arange(lag_max + 1)
    actions = np.zeros((work + lag_max, 3, 2 * n, lag_max + 1), dtype=np.int8)

    def later(v):  # the value one more lag step on (inf past the last feasible lag)
        out = np.full_like(v, big)
        out[:, :-1] = v[:, 1:]
        return out

    for t in range(work + lag_max - 1, -1, -1):
        expected = np.matmul(move, values)  # over next step's spot state
        finishing = (work - t + lag) <= 1
        run_spot = np.where(finishing, 1.0, 1.0 + expected[1])
        run_od = np.where(finishing, ratio, ratio + expected[2])
        co_spot = [1.0 + later(expected[spot_co[k - 1]] if k else expected[1])
                   for k in range(restart)]
        co_od = [ratio + later(expected[od_co[k - 1]] if k else expected[2])
                 for k in range(restart)]
        wait = later(expected[0])
        start_spot = np.where(up, co_spot[-1] if restart else run_spot, big)
        start_od = co_od[-1] if restart else run_od
        choice = np.stack([wait, start_spot, start_od])
        act_idle = choice.argmin(0)
        idle = choice.min(0)
        new = np.empty_like(values)
        new[0] = idle
        keep_spot = up & (run_spot <= idle)
        new[1] = np.where(keep_spot, run_spot, idle)
        new[2] = np.minimum(run_od, idle)
        for k in range(restart):
            new[spot_co[k]] = np.where(up, np.minimum(co_spot[k], idle), idle)
            new[od_co[k]] = np.minimum(co_od[k], idle)
        actions[t, 0] = act_idle
        actions[t, 1] = np.where(keep_spot, 1, act_idle)
        actions[t, 2] = np.where(run_od <= idle, 2, act_idle)
        values = new
    return _Plan(actions, step_h, work, lag_max)


POLICIES: dict[str, type] = {
    "greedy": GreedyPolicy,
    "uniform_progress": UniformProgressPolicy,
    "skyhop": SkyhopPolicy,
}


def get_policy(name: str) -> Policy:
    """A fresh policy (policies may learn from what they see, so one per job)."""
    key = name.strip().lower().replace("-", "_")
    if key in POLICIES:
        return POLICIES[key]()
    close = difflib.get_close_matches(key, list(POLICIES), n=1)
    hint = f"did you mean {close[0]!r}?" if close else None
    raise UserError(f"unknown spot policy {name!r}; valid: {', '.join(POLICIES)}", hint=hint)
