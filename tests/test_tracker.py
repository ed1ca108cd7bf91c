"""The tracker: availability estimates from attempts, their persistence, and how the optimizer
uses them (skip unlikely places while others remain)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import create_engine

from pg import PostgresServer, unavailable_reason
from skyhop.catalog.catalog import Catalog
from skyhop.catalog.offer import Offer
from skyhop.optimizer import optimize
from skyhop.provision.provisioner import MIN_AVAILABILITY
from skyhop.spec import Resources, Task
from skyhop.state import db
from skyhop.tracker.store import HORIZON_S, TrackerStore
from skyhop.tracker.tracker import (
    DEFAULT_HALF_LIFE_S,
    LONG_HALF_LIFE_S,
    OK,
    Attempt,
    Key,
    Tracker,
)

H = 3600.0
NOW = 1_700_000_000.0
A = Key("sim", "r1", "r1a", "g1.big", True)
B = Key("sim", "r1", "r1b", "g1.big", True)


def _history(key: Key, hours: int, fail_every: int, ok_otherwise: bool = True
             ) -> list[Attempt]:
    """One attempt an hour for `hours` hours before NOW; every `fail_every`-th outcome is the
    opposite of `ok_otherwise`."""
    out = []
    for i in range(hours):
        ok = ok_otherwise if i % fail_every else not ok_otherwise
        out.append(Attempt(NOW - (hours - i) * H, key, OK if ok else "capacity"))
    return out


def _long_run_mean(attempts: list[Attempt], now: float) -> float:
    """The documented long-run availability: Beta(1, 1) updated with 24 h-decayed attempts."""
    w = [0.5 ** ((now - a.at) / LONG_HALF_LIFE_S) for a in attempts]
    ok = sum(wi for wi, a in zip(w, attempts, strict=True) if a.ok)
    return (1 + ok) / (2 + sum(w))


# --- the estimator -------------------------------------------------------------------------

def test_no_information_means_no_estimate():
    tracker = Tracker()
    assert tracker.estimate(A, NOW) is None
    assert tracker.snapshot(NOW) == {} and tracker.estimates(NOW) == []


def test_one_outcome_moves_an_unknown_place_away_from_one_half():
    # From the 0.5 prior: a failure now gives 2/9, a success now 7/9 (module docstring).
    failed = Tracker([Attempt(NOW, A, "capacity")]).estimate(A, NOW)
    worked = Tracker([Attempt(NOW, A, OK)]).estimate(A, NOW)
    assert failed.availability == pytest.approx(2 / 9)
    assert worked.availability == pytest.approx(7 / 9)
    # One failure is enough to skip a place nobody has seen work.
    assert failed.availability < MIN_AVAILABILITY < worked.availability


def test_each_failure_lowers_the_estimate():
    tracker = Tracker(_history(A, 10, fail_every=1000))  # ten successes
    seen = [tracker.estimate(A, NOW).availability]
    for i in range(3):
        tracker.record(Attempt(NOW + i, A, "capacity"))
        seen.append(tracker.estimate(A, NOW + i).availability)
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 4


def test_after_a_failure_the_estimate_recovers_toward_the_long_run_mean():
    attempts = [*_history(A, 20, fail_every=10), Attempt(NOW, A, "capacity")]
    tracker = Tracker(attempts)
    over_time = [tracker.estimate(A, NOW + h * H).availability for h in (0, 1, 2, 4)]
    assert over_time == sorted(over_time)  # capacity tends to come back
    later = NOW + 12 * H  # twelve short half-lives: the recent failure has faded
    long_run = _long_run_mean(attempts, later)
    assert tracker.estimate(A, later).availability == pytest.approx(long_run, abs=0.002)
    assert over_time[0] < long_run - 0.1  # ... but right after it, it weighed a lot


def test_a_usually_available_place_that_just_failed_beats_a_rarely_available_one():
    # A works 90% of the last 20 h, B 20%; both fail now. A stays worth trying, B does not.
    tracker = Tracker([*_history(A, 20, fail_every=10), *_history(B, 20, fail_every=5,
                                                                  ok_otherwise=False)])
    tracker.record(Attempt(NOW, A, "capacity"))
    tracker.record(Attempt(NOW, B, "capacity"))
    a, b = tracker.estimate(A, NOW).availability, tracker.estimate(B, NOW).availability
    assert a > MIN_AVAILABILITY > b
    assert a > 0.55 and b < 0.15  # the module docstring's 0.9 -> 0.6 and 0.2 -> 0.13


def test_estimate_fields_weight_count_and_last_outcome():
    tracker = Tracker([Attempt(NOW - DEFAULT_HALF_LIFE_S, A, "capacity", "none left"),
                       Attempt(NOW, A, OK)])
    e = tracker.estimate(A, NOW)
    assert e.attempts == 2 and e.last_outcome == OK and e.last_at == NOW
    assert e.weight == pytest.approx(1.5)  # 1 (now) + 0.5 (one half-life ago)
    as_json = e.to_json()
    assert as_json["zone"] == "r1a" and as_json["spot"] is True
    assert as_json["availability"] == round(e.availability, 4) and as_json["attempts"] == 2


def test_snapshot_and_estimates_cover_every_observed_place():
    c = Key("alt", "x1", None, "a.big", False)
    tracker = Tracker([Attempt(NOW, B, OK), Attempt(NOW, c, "capacity"), Attempt(NOW, A, OK)])
    snapshot = tracker.snapshot(NOW)
    assert set(snapshot) == {A, B, c}
    assert all(snapshot[k] == tracker.estimate(k, NOW).availability for k in snapshot)
    assert [e.key for e in tracker.estimates(NOW)] == [c, A, B]  # provider, zone, type


def test_future_attempts_count_as_now():
    # Clocks of two machines may disagree a little: no weight above 1, no NaN.
    e = Tracker([Attempt(NOW + 60, A, OK)]).estimate(A, NOW)
    assert e.weight == 1.0 and not math.isnan(e.availability)


# --- the optimizer uses the estimates ----------------------------------------------------

def _offer(zone: str, region: str, spot_price: float) -> Offer:
    return Offer("sim", region, zone, "g1.big", "V100", 1.0, 8.0, 61.0, 16.0,
                 3 * spot_price, spot_price, False, "x86_64")


CATALOG = Catalog.from_offers([_offer("r1a", "r1", 1.0), _offer("r1b", "r1", 2.0),
                               _offer("r2a", "r2", 3.0)])
TASK = Task(run="true", resources=Resources(accelerators="V100:1", use_spot=True))


def _zone(availability: dict[Key, float], threshold: float = MIN_AVAILABILITY) -> str:
    plan = optimize(TASK, CATALOG, availability=availability, min_availability=threshold)
    return plan.tasks[0].zone


def test_optimizer_skips_a_place_below_min_availability():
    assert _zone({}) == "r1a"  # cheapest
    assert _zone({A: 0.1}) == "r1b"
    assert _zone({A: 0.1, B: 0.1}) == "r2a"
    assert _zone({A: MIN_AVAILABILITY}) == "r1a"  # at the threshold is not below it
    assert _zone({A: 0.1}, threshold=0.0) == "r1a"  # threshold 0: estimates ignored


def test_optimizer_treats_unobserved_places_as_available():
    # Only B is known (and unlikely): A, never tried, is not held against it.
    assert _zone({B: 0.01}) == "r1a"
    assert _zone({Key("sim", "r1", "r1a", "g1.big", False): 0.01}) == "r1a"  # on-demand key


def test_optimizer_applies_a_region_estimate_to_its_zones():
    assert _zone({Key("sim", "r1", None, "g1.big", True): 0.1}) == "r2a"


def test_optimizer_still_uses_unlikely_places_when_nothing_else_is_left():
    every = {Key("sim", r, z, "g1.big", True): 0.05
             for r, z in (("r1", "r1a"), ("r1", "r1b"), ("r2", "r2a"))}
    assert _zone(every) == "r1a"  # all unlikely: back to the cheapest


# --- persistence -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def postgres_url():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> TrackerStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_engine(url)
        with engine.begin() as conn:  # a clean schema per test
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
        db.engine_for.cache_clear()
    return TrackerStore(db.engine_for(url))


def test_store_round_trip(store):
    region_wide = Key("alt", "x1", None, "a.big", False)
    saved = [Attempt(NOW - 10, A, "capacity", "no capacity in r1a"),
             Attempt(NOW - 20, region_wide, "quota", "x" * 5000),  # recorded out of order
             Attempt(NOW, B, OK)]
    for attempt in saved:
        store.record(attempt, cluster="c1")
    loaded = store.attempts(since=0)
    assert [a.at for a in loaded] == [NOW - 20, NOW - 10, NOW]  # oldest first
    assert loaded[0].key == region_wide and loaded[0].key.spot is False
    assert loaded[0].message == "x" * 2000  # long provider messages are cut
    assert loaded[1:] == [saved[0], saved[2]]
    assert store.attempts(since=NOW - 10) == [saved[0], saved[2]]


def test_store_tracker_forgets_attempts_beyond_the_horizon(store):
    store.record(Attempt(NOW - HORIZON_S - 1, A, "capacity"))
    store.record(Attempt(NOW - 60, A, OK))
    store.record(Attempt(NOW - 30, B, "capacity"))
    tracker = store.tracker(NOW)
    expected = Tracker([Attempt(NOW - 60, A, OK), Attempt(NOW - 30, B, "capacity")])
    assert tracker.estimates(NOW) == expected.estimates(NOW)
    assert tracker.estimate(A, NOW).attempts == 1


def test_store_defaults_to_the_state_database_under_skyhop_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYHOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKYHOP_DB_URL", raising=False)
    db.engine_for.cache_clear()
    TrackerStore().record(Attempt(NOW, A, OK))
    assert (tmp_path / "home" / "state.db").is_file()
    assert TrackerStore().attempts(since=0) == [Attempt(NOW, A, OK)]  # a new store reads it
    db.engine_for.cache_clear()


def test_errors_about_the_account_or_request_do_not_count_as_unavailability():
    tracker = Tracker([Attempt(NOW, A, "quota"), Attempt(NOW, A, "transient"),
                       Attempt(NOW, A, "auth")])
    assert tracker.estimate(A, NOW) is None
    tracker.record(Attempt(NOW, A, "capacity"))
    assert tracker.estimate(A, NOW).attempts == 1
