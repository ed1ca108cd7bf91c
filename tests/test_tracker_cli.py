"""`skyhop tracker show` as a user runs it (real processes) on a throwaway SKYHOP_HOME."""

from __future__ import annotations

import json
import time

import pytest

from conftest import run_cli, use_home
from skyhop.cli.common import age
from skyhop.state import db
from skyhop.tracker.store import HORIZON_S, TrackerStore
from skyhop.tracker.tracker import OK, Attempt, Key, Tracker

AWS_A = Key("aws", "us-east-1", "us-east-1a", "p3.2xlarge", True)
AWS_B = Key("aws", "us-east-1", "us-east-1b", "p3.2xlarge", True)
GCP = Key("gcp", "us-central1", "us-central1-a", "a2-highgpu-1g", False)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated SKYHOP_HOME (the CLI processes inherit it)."""
    yield use_home(monkeypatch, tmp_path / "home")
    db.engine_for.cache_clear()
    db.engine_for.cache_clear()


def _record(*attempts: Attempt) -> None:
    store = TrackerStore()
    for attempt in attempts:
        store.record(attempt)


def test_empty_state_is_a_friendly_line_and_exit_0(home):
    result = run_cli("tracker", "show")
    assert result.returncode == 0, result.stderr
    assert "no provisioning attempts recorded yet" in result.stdout
    as_json = run_cli("tracker", "show", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == []


def test_json_lists_the_estimates_sorted_with_their_region(home):
    now = time.time()
    attempts = [Attempt(now - 300, GCP, "capacity", "no capacity"),
                Attempt(now - 240, AWS_B, "capacity", "no capacity"),
                Attempt(now - 200, AWS_A, "capacity"),
                Attempt(now - 180, AWS_A, OK),
                Attempt(now - HORIZON_S - 60, AWS_B, OK)]  # too old to be shown
    _record(*attempts)
    result = run_cli("tracker", "show", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["provider"], r["zone"]) for r in rows] == [
        ("aws", "us-east-1a"), ("aws", "us-east-1b"), ("gcp", "us-central1-a")]
    assert {"provider", "region", "zone", "instance_type", "spot", "availability", "weight",
            "attempts", "last_outcome", "last_at"} <= set(rows[0])
    a, b, g = rows
    assert a["region"] == "us-east-1" and a["spot"] is True and g["spot"] is False
    assert a["attempts"] == 2 and a["last_outcome"] == OK and a["last_at"] == now - 180
    assert b["attempts"] == 1 and b["last_outcome"] == "capacity"  # the old success is gone
    expected = Tracker(attempts[:4])  # the same estimate as in the library, minutes later
    for row, key in ((a, AWS_A), (b, AWS_B), (g, GCP)):
        assert row["availability"] == pytest.approx(
            expected.estimate(key, now).availability, abs=0.01)
    assert a["availability"] > b["availability"]


def test_table_shows_percent_and_age(home):
    now = time.time()
    _record(Attempt(now - 185, AWS_A, "capacity"), Attempt(now - 185, GCP, OK))
    result = run_cli("tracker", "show")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "us-east-1a" in out and "us-central1-a" in out and "p3.2xlarge" in out
    assert "22%" in out and "78%" in out  # one failure, one success from the 0.5 prior
    assert out.count("3m ago") == 2 and "capacity" in out


def test_provider_filter(home):
    now = time.time()
    _record(Attempt(now - 60, AWS_A, OK), Attempt(now - 60, GCP, OK))
    only_gcp = json.loads(run_cli("tracker", "show", "--json", "-p", "gcp").stdout)
    assert [r["provider"] for r in only_gcp] == ["gcp"]
    aliased = json.loads(run_cli("tracker", "show", "--json", "--provider", "AWS").stdout)
    assert [r["zone"] for r in aliased] == ["us-east-1a"]
    none_yet = run_cli("tracker", "show", "-p", "azure")
    assert none_yet.returncode == 0 and "no provisioning attempts" in none_yet.stdout
    bad = run_cli("tracker", "show", "-p", "awz")
    assert bad.returncode == 2 and "unknown provider" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_tracker_is_listed_in_help():
    result = run_cli("--help")
    assert result.returncode == 0 and "tracker" in result.stdout


def test_ages_are_short_and_never_negative():
    now = 1_000_000.0
    assert [age(now - s, now) for s in (-5, 12, 180, 239, 2.5 * 3600, 1.5 * 86400)] == [
        "0s ago", "12s ago", "3m ago", "3m ago", "2.5h ago", "1.5d ago"]
    assert age(None) == "-"
