"""Spot policies under a deadline (skyhop.jobs.policies) and the trace replay with preemptions
and the omniscient optimum (skyhop.sim.spot_sim): hand-made traces where the right answer is
obvious, adversarial traces, a brute-force check of the optimum, and random traces."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA
from skyhop.errors import UserError
from skyhop.jobs import policies
from skyhop.jobs.policies import (
    ON_DEMAND,
    POLICIES,
    SPOT,
    WAIT,
    GreedyPolicy,
    JobState,
    SkyhopPolicy,
    SpotModel,
    UniformProgressPolicy,
    get_policy,
    safe,
)
from skyhop.sim.spot_sim import (
    Grid,
    Job,
    Prices,
    omniscient,
    omniscient_costs,
    on_demand_cost,
    periods,
    simulate,
    window_starts,
)
from skyhop.sim.traces import Trace, load_trace

PRICES = Prices(on_demand=3.0, spot=1.0)
HOUR = 3600.0


def trace(bits: list[int] | str, gap_s: float = HOUR) -> Trace:
    data = [int(b) for b in bits] if isinstance(bits, str) else bits
    return Trace("us-east-1a", gap_s, np.array(data, dtype=np.int32))


def state(**kw) -> JobState:
    base = dict(now_h=0.0, elapsed_compute_h=0.0, total_compute_h=10.0, deadline_h=20.0,
                changeover_h=0.5, current=None, spot_available=True, step_h=0.25)
    return JobState(**{**base, **kw})


ALL = sorted(POLICIES)


# --- the interface ------------------------------------------------------------------------------

def test_job_state_derives_remaining_time_left_and_slack():
    s = state(now_h=4, elapsed_compute_h=3)
    assert (s.remaining_h, s.time_left_h, s.slack_h) == (7, 16, 9)


def test_get_policy_returns_fresh_instances_and_accepts_dashes():
    assert isinstance(get_policy("uniform-progress"), UniformProgressPolicy)
    assert get_policy("skyhop") is not get_policy("skyhop")
    assert {get_policy(n).name for n in ALL} == set(ALL) == {"greedy", "uniform_progress",
                                                             "skyhop"}


def test_unknown_policy_is_a_user_error_naming_the_valid_ones():
    with pytest.raises(UserError) as err:
        get_policy("greedie")
    text = str(err.value)
    assert "did you mean 'greedy'" in text and "uniform_progress" in text and "skyhop" in text


def test_safe_overrides_only_what_could_miss_the_deadline():
    d = 0.5
    assert safe(state(elapsed_compute_h=10), ON_DEMAND) == WAIT  # done
    assert safe(state(now_h=20 - 10 - 2 * d), SPOT) == SPOT  # exactly 2d of slack
    assert safe(state(now_h=20 - 10 - 2 * d + 0.01), SPOT) == ON_DEMAND
    assert safe(state(now_h=20 - 10 - 2 * d + 0.01, current=SPOT), SPOT) == SPOT  # keep running
    assert safe(state(now_h=20 - 10 - d - 0.25), WAIT) == WAIT  # one step, then on-demand
    assert safe(state(now_h=20 - 10 - d - 0.2), WAIT) == ON_DEMAND
    assert safe(state(spot_available=False), SPOT) == WAIT  # no spot: nothing runs


# --- the paper's rules on hand-made states ------------------------------------------------------

def test_greedy_takes_spot_waits_then_commits_to_on_demand():
    g = GreedyPolicy()
    assert g.decide(state()) == SPOT
    assert g.decide(state(spot_available=False)) == WAIT
    # waiting one more step would leave less than 2d: no spot could be started any more
    assert g.decide(state(now_h=20 - 10 - 1.0 - 0.2, spot_available=False)) == ON_DEMAND
    assert g.decide(state(current=ON_DEMAND, spot_available=True)) == ON_DEMAND  # to the end


def test_uniform_progress_catches_up_on_demand_and_leaves_with_hysteresis():
    up = UniformProgressPolicy()
    behind = state(now_h=10, elapsed_compute_h=4, spot_available=False)  # line: 5 h
    assert up.decide(behind) == ON_DEMAND
    ahead = state(now_h=10, elapsed_compute_h=6, spot_available=False)
    assert up.decide(ahead) == WAIT
    assert up.decide(state(now_h=10, elapsed_compute_h=4)) == SPOT  # Taking Risks
    # on on-demand: stay until progress reaches ep(t + 2d) = 10 * 11 / 20 = 5.5
    assert up.decide(state(now_h=10, elapsed_compute_h=5.2, current=ON_DEMAND)) == ON_DEMAND
    assert up.decide(state(now_h=10, elapsed_compute_h=5.6, current=ON_DEMAND)) == SPOT
    assert up.decide(state(now_h=10, elapsed_compute_h=5.6, current=ON_DEMAND,
                           spot_available=False)) == WAIT


# --- the replay -----------------------------------------------------------------------------------

def test_spot_all_along_costs_the_compute_and_one_changeover_at_spot_price():
    job = Job(compute_h=4, deadline_h=6, changeover_h=0.5)
    for name in ALL:
        r = simulate(trace("1" * 8), get_policy(name), job, PRICES)
        assert r.deadline_met and r.preemptions == 0 and r.changeovers == 1
        assert r.spot_hours == pytest.approx(4.5) and r.on_demand_hours == 0
        assert r.cost == pytest.approx(4.5) and r.finish_h == pytest.approx(4.5)


def test_no_spot_at_all_means_on_demand_and_greedy_waits_as_long_as_it_can():
    job = Job(compute_h=4, deadline_h=8, changeover_h=0.5)
    runs = {name: simulate(trace("0" * 8), get_policy(name), job, PRICES) for name in ALL}
    assert all(r.deadline_met and r.spot_hours == 0 for r in runs.values())
    on_demand = on_demand_cost(job, PRICES, HOUR)
    assert runs["greedy"].cost == runs["skyhop"].cost == pytest.approx(on_demand)
    # slack 4 h: greedy waits while one more hour still leaves 2d for a spot start
    assert runs["greedy"].finish_h == pytest.approx(3 + 4.5)
    # UP catches up with the line, stops once ahead of it (hysteresis), then pays to restart
    assert runs["uniform_progress"].changeovers == 2
    assert runs["uniform_progress"].cost == pytest.approx(on_demand + 0.5 * PRICES.on_demand)


def test_a_preempted_spot_keeps_its_progress_and_the_restart_pays_again():
    job = Job(compute_h=3, deadline_h=10, changeover_h=0.5)
    r = simulate(trace("1101111111"), GreedyPolicy(), job, PRICES)
    # 2 h of spot (0.5 changeover + 1.5 progress), preempted, 1 h idle, then 0.5 + 1.5
    assert (r.preemptions, r.changeovers) == (1, 2)
    assert r.finish_h == pytest.approx(5.0) and r.spot_hours == pytest.approx(4.0)


def test_grid_splits_ticks_so_the_changeover_is_whole_units():
    g = Grid.of(Job(48, 64, 0.2), 195)  # 195 s ticks: 3 units of 65 s, 11 units = 715 s
    assert (g.units_per_tick, g.changeover_units, g.deadline_ticks) == (3, 11, 1182)
    assert g.deadline_units == 3544 and g.deadline_h == pytest.approx(63.99, abs=0.01)
    assert Grid.of(Job(48, 64, 0.2), 600).units_per_tick == 5  # 120 s units: exactly 6


def test_periods_are_run_lengths_in_hours():
    assert periods(np.array([1, 1, 0, 1]) > 0, 1800) == [(True, 1.0), (False, 0.5),
                                                          (True, 0.5)]


# --- the omniscient optimum -----------------------------------------------------------------------

class Script:
    """Plays a fixed sequence of decisions (no safety): for the brute force."""

    name = "script"

    def __init__(self, decisions):
        self.decisions = iter(decisions)

    def decide(self, _state):
        return next(self.decisions, WAIT)


def test_omniscient_is_the_exact_minimum_over_every_decision_sequence():
    rng = random.Random(7)
    for _ in range(40):
        gap = rng.choice([HOUR, 1800.0, 2400.0])
        ticks = rng.randint(2, 6)
        tr = trace([rng.randint(0, 1) for _ in range(ticks + 1)], gap)
        job = Job(rng.uniform(0.3, ticks * gap / HOUR), ticks * gap / HOUR,
                  rng.choice([0.0, 0.2, 0.5, 1.3]))
        prices = Prices(3.0, rng.choice([0.4, 2.9]))
        best = min((r.cost for seq in itertools.product((SPOT, ON_DEMAND, WAIT), repeat=ticks)
                    if (r := simulate(tr, Script(seq), job, prices)).deadline_met),
                   default=math.inf)
        assert omniscient(tr, job, prices) == pytest.approx(best, abs=1e-9)


def test_omniscient_for_many_starts_matches_one_by_one_and_is_inf_when_impossible():
    rng = np.random.default_rng(3)
    tr = Trace("z", 600, (rng.random(400) < 0.6).astype(np.int32))
    job = Job(10, 14, 0.2)
    starts = window_starts(tr, job, 12)
    assert starts == list(range(0, 400 - 84 + 1, 72))
    many = omniscient_costs(tr, job, PRICES, starts)
    assert many.tolist() == pytest.approx([omniscient(tr, job, PRICES, start_tick=s)
                                           for s in starts])
    assert all(m <= on_demand_cost(job, PRICES, 600) + 1e-9 for m in many)
    assert omniscient(tr, Job(10, 10.1, 0.2), PRICES) == math.inf
    assert not Grid.of(Job(10, 10.1, 0.2), 600).feasible


# --- every policy meets the deadline, on adversarial and random traces ---------------------------

ADVERSARIAL = {
    "flapping every tick": "10" * 40,
    "spot vanishes when the slack runs out": "1" * 3 + "0" * 77,
    "spot returns just after greedy commits": "0" * 9 + "1" * 71,
    "blips shorter than a changeover": "1000" * 20,
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bits", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_every_policy_meets_the_deadline_on_adversarial_traces(name, bits):
    job = Job(compute_h=10, deadline_h=14, changeover_h=0.5)
    tr = trace(bits, gap_s=HOUR / 4)  # 15-minute ticks
    r = simulate(tr, get_policy(name), job, PRICES)
    assert r.deadline_met and r.finish_h <= 14 + 1e-9
    assert r.cost >= omniscient(tr, job, PRICES) - 1e-9


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.lists(st.integers(0, 1), min_size=64, max_size=64),  # up to 10.5 h
       compute=st.floats(0.5, 6.0), extra=st.floats(0.0, 4.0),
       changeover=st.sampled_from([0.1, 0.2, 0.5]), spot_price=st.sampled_from([0.3, 1.0]))
def test_random_traces_deadline_met_whenever_on_demand_alone_could(bits, compute, extra,
                                                                    changeover, spot_price):
    job = Job(compute, compute + changeover + extra, changeover)
    tr = trace(bits, gap_s=600)
    grid = Grid.of(job, 600)  # compute rounded up, deadline down, to 2-minute units
    if not grid.feasible:
        # only by rounding: compute up and the deadline down, by less than a unit each
        assert extra < 2 * grid.unit_h + 1e-9
        return
    prices = Prices(3.0, spot_price)
    best = omniscient(tr, job, prices)
    assert best <= on_demand_cost(job, prices, 600) + 1e-9
    for name in ALL:
        r = simulate(tr, get_policy(name), job, prices)
        assert r.deadline_met, name
        assert r.cost >= best - 1e-9, name


# --- skyhop's policy ------------------------------------------------------------------------------

def test_spot_model_learns_that_long_spot_periods_last():
    model = SpotModel()
    prior = model.rates(True)
    for _ in range(20):
        model.add(True, 30.0)  # day-long spot periods: no end seen before 30 h
    learned = model.rates(True)
    assert all(a < b for a, b in zip(learned, prior, strict=True))
    assert learned[0] < prior[0] / 2  # 20 periods seen through the first 10 minutes
    assert model.rates(False) == pytest.approx(policies.PRIOR_DOWN_RATES, abs=1e-3)


def test_skyhop_waits_for_spot_with_slack_and_goes_on_demand_without():
    roomy = state(total_compute_h=4, deadline_h=12, spot_available=False, price_ratio=8.0)
    assert SkyhopPolicy().decide(roomy) == WAIT
    tight = state(total_compute_h=4, deadline_h=4.6, spot_available=False, price_ratio=8.0)
    assert SkyhopPolicy().decide(tight) == ON_DEMAND
    assert SkyhopPolicy().decide(state(total_compute_h=4, deadline_h=12)) == SPOT


def test_skyhop_uses_what_it_saw_before_the_job():
    fresh, told = SkyhopPolicy(), SkyhopPolicy()
    told.observe_history([(False, 2.0), (True, 20.0)] * 5)
    assert told.model.rates(True)[-1] < fresh.model.rates(True)[-1]


@pytest.mark.skipif(not (SHARED_DATA / "spot-traces").is_dir(),
                    reason=f"spot traces not present under {SHARED_DATA}")
def test_real_trace_every_policy_meets_the_deadline_and_stays_above_the_optimum():
    path = (SHARED_DATA / "spot-traces" / "skypilot-org_spot-traces" / "availability"
            / "1-node" / "aws-10-26-2022" / "us-west-2b_v100_1.json")
    tr = load_trace(path)
    job = Job(48, 60, 0.2)
    prices = Prices(3.06, 0.5415)
    starts = window_starts(tr, job, 96)
    best = omniscient_costs(tr, job, prices, starts)
    for start, b in zip(starts, best, strict=True):
        for name in ALL:
            r = simulate(tr, get_policy(name), job, prices, start_tick=start, history_h=168)
            assert r.deadline_met and r.cost >= b - 1e-9
