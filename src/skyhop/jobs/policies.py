"""Spot policies for a job with a deadline: spot, on-demand or nothing, decided again and again.

The setting is that of "Can't Be Late: Optimizing Spot Instance Savings under Deadlines" (Wu et
al., NSDI'24, section 3): a job needs C hours of compute and must finish D hours after it was
submitted; it checkpoints, so a preemption loses no progress, but every (re)start, on spot or
on-demand, costs a changeover delay d of no progress at the new instance's price. On-demand is
always available; spot costs k times less but comes and goes.

The simulator (skyhop.sim.spot_sim) and the managed-jobs controller both call
`policy.decide(state)` whenever they must decide; a policy only sees the present state (and, if
it keeps any, what it saw before): never the future.

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


POLICIES: dict[str, type] = {
    "greedy": GreedyPolicy,
    "uniform_progress": UniformProgressPolicy,
}


def get_policy(name: str) -> Policy:
    """A fresh policy (policies may learn from what they see, so one per job)."""
    key = name.strip().lower().replace("-", "_")
    if key in POLICIES:
        return POLICIES[key]()
    close = difflib.get_close_matches(key, list(POLICIES), n=1)
    hint = f"did you mean {close[0]!r}?" if close else None
    raise UserError(f"unknown spot policy {name!r}; valid: {', '.join(POLICIES)}", hint=hint)


__all__ = ["ON_DEMAND", "POLICIES", "SPOT", "WAIT", "Decision", "GreedyPolicy", "Instance",
           "JobState", "Policy", "UniformProgressPolicy", "get_policy", "math", "safe"]
