"""Failover provisioning: plan -> try -> classify -> record -> block -> re-plan, with in-process
fake providers that fail on cue, and once on real spot traces (skyhop.sim)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from conftest import SHARED_DATA
from skyhop.catalog.blocklist import Blocklist, BlockRule
from skyhop.catalog.catalog import Catalog
from skyhop.catalog.offer import Offer
from skyhop.clock import VirtualClock
from skyhop.errors import InfeasibleError
from skyhop.provision.base import MULTI_NODE, SPOT, ClusterSpec, Instance
from skyhop.provision.errors import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    ProvisionError,
    QuotaError,
    TransientError,
)
from skyhop.provision.provisioner import (
    BACKOFF_START_S,
    TRANSIENT_RETRIES,
    Provisioner,
    ProvisionFailed,
)
from skyhop.spec import Resources, Task
from skyhop.tracker.tracker import OK, Attempt

START = 1_000_000.0


def _offer(provider: str, region: str, zone: str, spot_price: float) -> Offer:
    return Offer(provider, region, zone, "g1.big", "V100", 1.0, 8.0, 61.0, 16.0,
                 3 * spot_price, spot_price, False, "x86_64")


# Cheapest first: sim/r1/r1a, sim/r1/r1b, sim/r2/r2a, then the other provider alt/x1/x1a.
CATALOG = Catalog.from_offers([_offer("sim", "r1", "r1a", 1.0), _offer("sim", "r1", "r1b", 2.0),
                               _offer("sim", "r2", "r2a", 3.0), _offer("alt", "x1", "x1a", 4.0)])
PRICE_ORDER = ["r1a", "r1b", "r2a", "x1a"]

Script = dict[str, "type[ProvisionError] | list[type[ProvisionError] | None]"]


def _task(num_nodes: int = 1) -> Task:
    return Task(run="true", num_nodes=num_nodes,
                resources=Resources(accelerators="V100:1", use_spot=True))


class FakeCloud:
    """An in-process Provider. `script` maps a zone to the error class raised on every call
    there, or to a list consumed one call at a time (None: that call works; once the list is
    empty, calls work). `down_until`: every call fails for capacity before that time.
    `partial`: zones that create only one node, then return it ('short') or raise ('raise')."""

    capabilities = frozenset({SPOT, MULTI_NODE})

    def __init__(self, name: str, script: Script | None = None, *,
                 clock: VirtualClock | None = None, down_until: float = 0.0,
                 partial: dict[str, str] | None = None, events: list[str] | None = None):
        self.name = name
        self.script = dict(script or {})
        self.clock = clock
        self.down_until = down_until
        self.partial = partial or {}
        self.events = events if events is not None else []
        self.calls: list[str] = []  # zone of every provision call
        self.terminated: list[str] = []
        self.clusters: dict[str, list[Instance]] = {}
        self._ids = itertools.count()

    def is_enabled(self) -> tuple[bool, str]:
        return True, ""

    def offers(self) -> list[Offer]:
        return []

    def prepare(self, cluster: ClusterSpec) -> None:
        pass

    def _error(self, zone: str) -> type[ProvisionError] | None:
        if self.clock is not None and self.clock.now() < self.down_until:
            return CapacityError
        scripted = self.script.get(zone)
        if isinstance(scripted, list):
            return scripted.pop(0) if scripted else None
        return scripted

    def _create(self, cluster: str, zone: str, count: int) -> list[Instance]:
        nodes = [Instance(f"{self.name}-{next(self._ids)}", rank, None, {"zone": zone})
                 for rank in range(count)]
        self.clusters.setdefault(cluster, []).extend(nodes)
        return nodes

    def provision(self, cluster: ClusterSpec, placement: Any, count: int) -> list[Instance]:
        zone = placement.zone
        self.calls.append(zone)
        self.events.append(f"call {zone}")
        error = self._error(zone)
        if error is not None:
            raise error(f"scripted {error.__name__} in {zone}", provider=self.name,
                        region=placement.region, zone=zone)
        if zone in self.partial:  # gang broken: one node made, the second not
            made = self._create(cluster.name, zone, 1)
            if self.partial[zone] == "raise":
                raise CapacityError(f"second node failed in {zone}", provider=self.name)
            return made
        return self._create(cluster.name, zone, count)

    def instances(self, cluster_name: str) -> list[Instance]:
        return list(self.clusters.get(cluster_name, []))

    def terminate(self, cluster_name: str, instance_ids: list[str]) -> None:
        self.terminated.extend(instance_ids)
        left = [n for n in self.clusters.get(cluster_name, []) if n.instance_id not in
                instance_ids]
        self.clusters[cluster_name] = left
        if not left:
            del self.clusters[cluster_name]

    def teardown(self, cluster_name: str) -> None:
        self.clusters.pop(cluster_name, None)


def _provisioner(*clouds: FakeCloud, clock: VirtualClock | None = None,
                 **kwargs: Any) -> Provisioner:
    by_name = {c.name: c for c in clouds}
    return Provisioner(CATALOG, [], by_name.__getitem__, clock=clock or VirtualClock(START),
                       **kwargs)


def _zones(history: list) -> list[str]:
    return [h.placement.zone for h in history]


# --- failover across zones, regions, providers ------------------------------------------

def test_capacity_in_the_two_cheapest_zones_lands_in_the_third():
    sim = FakeCloud("sim", {"r1a": CapacityError, "r1b": CapacityError})
    placement, instances, history = _provisioner(sim, FakeCloud("alt")).provision("c", _task())
    assert placement.zone == "r2a" and len(instances) == 1
    assert _zones(history) == ["r1a", "r1b", "r2a"]  # in price order
    assert [h.outcome for h in history] == ["capacity", "capacity", OK]
    assert sim.calls == ["r1a", "r1b", "r2a"]


@pytest.mark.parametrize(("error", "expected"), [
    (CapacityError, ["r1a", "r1b"]),  # zone blocked: next zone of the same region
    (QuotaError, ["r1a", "r2a"]),  # region blocked: r1b is never asked
    (InvalidRequestError, ["r1a", "r2a"]),  # region blocked too
    (AuthError, ["r1a", "x1a"]),  # provider blocked: over to the other provider
])
def test_an_error_blocks_its_scope_before_re_planning(error, expected):
    # Without the tracker, only the blocklist decides what is tried next.
    sim, alt = FakeCloud("sim", {"r1a": error}), FakeCloud("alt")
    placement, _, history = _provisioner(sim, alt, use_tracker=False).provision("c", _task())
    assert _zones(history) == expected and placement.zone == expected[-1]
    assert history[0].outcome == error("").kind


def test_a_transient_error_retries_the_same_place():
    clock = VirtualClock(START)
    sim = FakeCloud("sim", {"r1a": [TransientError, None]})
    placement, _, history = _provisioner(sim, clock=clock).provision("c", _task())
    assert placement.zone == "r1a" and _zones(history) == ["r1a", "r1a"]
    assert [h.outcome for h in history] == ["transient", OK]
    assert clock.now() > START  # a short pause before the retry


def test_a_place_that_stays_transient_is_given_up_after_the_retries():
    sim = FakeCloud("sim", {"r1a": TransientError})
    placement, _, history = _provisioner(sim).provision("c", _task())
    assert _zones(history) == ["r1a"] * (1 + TRANSIENT_RETRIES) + ["r1b"]
    assert placement.zone == "r1b"


def test_the_first_placement_given_is_tried_before_any_planning():
    sim = FakeCloud("sim")
    first = _provisioner(sim).plan(_task(), Blocklist((BlockRule("sim", "r1"),)))  # r2a
    placement, _, history = _provisioner(sim).provision("c", _task(), first=first)
    assert placement.zone == "r2a" and _zones(history) == ["r2a"]


# --- gang semantics ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["short", "raise"])
def test_a_partial_gang_is_terminated_before_failing_over(how):
    sim = FakeCloud("sim", partial={"r1a": how})
    placement, instances, history = _provisioner(sim).provision("c", _task(num_nodes=2))
    assert placement.zone == "r1b" and [h.outcome for h in history] == ["capacity", OK]
    assert len(sim.terminated) == 1  # the lone node of r1a
    assert sim.instances("c") == instances and {i.info["zone"] for i in instances} == {"r1b"}


def test_auth_failure_fails_over_even_when_the_provider_cannot_list_instances():
    class Expired(FakeCloud):
        def instances(self, cluster_name: str) -> list[Instance]:
            raise AuthError("credentials expired", provider=self.name)

    sim, alt = Expired("sim", {"r1a": AuthError}), FakeCloud("alt")
    placement, _, history = _provisioner(sim, alt).provision("c", _task())
    assert placement.zone == "x1a" and _zones(history) == ["r1a", "x1a"]


def test_nothing_survives_when_every_gang_is_partial():
    sim = FakeCloud("sim", partial={z: "short" for z in PRICE_ORDER[:3]})
    alt = FakeCloud("alt", partial={"x1a": "raise"})
    with pytest.raises(ProvisionFailed):
        _provisioner(sim, alt).provision("c", _task(num_nodes=2))
    assert sim.instances("c") == [] and alt.instances("c") == []
    assert len(sim.terminated) == 3 and len(alt.terminated) == 1


# --- giving up, waiting ----------------------------------------------------------------------

def test_when_every_place_fails_the_error_lists_every_attempt():
    sim = FakeCloud("sim", {z: CapacityError for z in ("r1a", "r1b", "r2a")})
    alt = FakeCloud("alt", {"x1a": QuotaError})
    with pytest.raises(ProvisionFailed) as failed:
        _provisioner(sim, alt).provision("job", _task())
    message = str(failed.value)
    assert "could not provision 'job'" in message
    assert _zones(failed.value.history) == PRICE_ORDER
    for i, zone in enumerate(PRICE_ORDER):
        line = next(x for x in message.splitlines() if x.strip().startswith(f"{i + 1}."))
        assert zone in line and ("quota" if zone == "x1a" else "capacity") in line
    assert "hint:" in message  # what the user can do


def test_a_task_nothing_can_run_is_infeasible_before_any_attempt():
    sim = FakeCloud("sim")
    task = Task(run="true", resources=Resources(accelerators="V100:8"))  # only V100:1 here
    with pytest.raises(InfeasibleError) as raised:
        _provisioner(sim).provision("c", task)
    assert not isinstance(raised.value, ProvisionFailed) and sim.calls == []


def test_retry_until_up_waits_with_backoff_until_capacity_returns():
    clock = VirtualClock(START)
    # Every place is out of capacity for 200 s: three rounds fail, with waits of 30, 60, 120.
    sim = FakeCloud("sim", clock=clock, down_until=START + 200)
    alt = FakeCloud("alt", clock=clock, down_until=START + 200)
    reports: list[str] = []
    placement, _, history = _provisioner(sim, alt, clock=clock, report=reports.append).provision(
        "c", _task(), retry_until_up=True)
    waits = [BACKOFF_START_S * 2 ** i for i in range(3)]
    assert clock.now() == START + sum(waits)
    announced = [re.search(r"retrying in (\d+) s", r) for r in reports]
    assert [float(m.group(1)) for m in announced if m] == waits
    assert len(history) == 3 * len(PRICE_ORDER) + 1 and history[-1].outcome == OK
    # Every place is unlikely now, so the plan falls back to the cheapest.
    assert placement.zone == "r1a"


def test_retry_until_up_gives_up_after_max_wait():
    clock = VirtualClock(START)
    sim = FakeCloud("sim", clock=clock, down_until=float("inf"))
    alt = FakeCloud("alt", clock=clock, down_until=float("inf"))
    with pytest.raises(ProvisionFailed) as failed:
        _provisioner(sim, alt, clock=clock).provision("c", _task(), retry_until_up=True,
                                                      max_wait_s=50)
    # Today it waits 30 + 60 s (the last backoff may overshoot max_wait_s), then stops.
    assert clock.now() - START >= 50
    history = failed.value.history
    assert len(history) >= 2 * len(PRICE_ORDER) and len(history) % len(PRICE_ORDER) == 0


# --- hooks and the tracker -------------------------------------------------------------------

def test_on_placement_is_called_before_each_provider_call():
    events: list[str] = []
    sim = FakeCloud("sim", {"r1a": CapacityError, "r1b": QuotaError}, events=events)
    alt = FakeCloud("alt", events=events)
    _provisioner(sim, alt).provision(
        "c", _task(), on_placement=lambda p: events.append(f"plan {p.zone}"))
    assert events == ["plan r1a", "call r1a", "plan r1b", "call r1b", "plan r2a", "call r2a"]


def test_every_attempt_is_recorded_and_passed_to_record():
    recorded: list[Attempt] = []
    clock = VirtualClock(START)
    sim = FakeCloud("sim", {"r1a": CapacityError, "r1b": [TransientError, None]})
    provisioner = _provisioner(sim, clock=clock, record=recorded.append)
    _, _, history = provisioner.provision("c", _task())
    assert [(a.key.zone, a.outcome) for a in recorded] == [
        (h.placement.zone, h.outcome) for h in history] == [
        ("r1a", "capacity"), ("r1b", "transient"), ("r1b", OK)]
    assert all(a.key.spot and a.key.provider == "sim" for a in recorded)
    assert [a.at for a in recorded] == [h.at for h in history]
    # Only capacity and success speak of availability: the throttled try is not counted.
    known = {e.key.zone: e for e in provisioner.tracker.estimates(clock.now())}
    assert set(known) == {"r1a", "r1b"} and known["r1b"].attempts == 1


def test_the_tracker_steers_the_next_launch_away_from_a_place_that_just_failed():
    def second_launch(use_tracker: bool) -> list[str]:
        sim = FakeCloud("sim", {"r1a": [CapacityError, CapacityError]})
        provisioner = _provisioner(sim, use_tracker=use_tracker)
        provisioner.provision("first", _task())
        _, _, history = provisioner.provision("second", _task())
        return _zones(history)

    assert second_launch(use_tracker=True) == ["r1b"]  # r1a just failed: skipped
    assert second_launch(use_tracker=False) == ["r1a", "r1b"]  # cheapest-first tries again


# --- on real spot traces -----------------------------------------------------------------------

TRACES = (SHARED_DATA / "spot-traces" / "skypilot-org_spot-traces" / "availability" / "1-node"
          / "aws-02-15-2023")


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"spot traces not present at {TRACES}")
def test_failover_on_real_traces_through_an_outage_of_every_zone(catalog):
    from skyhop.sim.catalog import trace_offers
    from skyhop.sim.provider import TraceProvider
    from skyhop.sim.traces import load_traces
    from skyhop.spec.fields import InfraPattern

    traces = load_traces(TRACES)
    gap = next(iter(traces.values())).gap_s
    down = [i for i in range(2000) if all(t.available[i] == 0 for t in traces.values())]
    assert down, "the traces have an hour-scale outage of every zone early on"
    clock = VirtualClock(down[0] * gap)  # launch as every zone goes down
    aws = TraceProvider("aws", traces, clock)
    reports: list[str] = []
    provisioner = Provisioner(Catalog.from_offers(trace_offers(catalog, traces, "p3.2xlarge")),
                              [InfraPattern("aws")], _one(aws), clock=clock,
                              report=reports.append)
    task = Task(run="true", resources=Resources(accelerators="V100:1", use_spot=True,
                                                instance_type="p3.2xlarge"))
    placement, instances, history = provisioner.provision("c", task, retry_until_up=True)
    assert len(instances) == 1 and history[-1].outcome == OK
    assert aws.calls == len(history) > len(traces)  # more than one round was needed
    assert any("retrying" in r for r in reports)
    for h in history:  # every outcome is what the trace shows at that moment
        up = traces[h.placement.zone].at(h.at) >= 1
        assert (h.outcome == OK) == up, h.describe()
    assert aws.instances("c") == instances and placement.zone == instances[0].info["zone"]


def _one(provider: Any) -> Callable[[str], Any]:
    def get(name: str) -> Any:
        assert name == provider.name
        return provider

    return get


# --- bounds: escalation to dearer types -----------------------------------------------------


def _typed_offer(instance_type: str, spot_price: float) -> Offer:
    return Offer("sim", "r1", "r1a", instance_type, "V100", 1.0, 8.0, 61.0, 16.0,
                 3 * spot_price, spot_price, False, "x86_64")


# Four types, each dearer than the last; none has capacity.
LADDER = Catalog.from_offers([_typed_offer("t.a", 1.0), _typed_offer("t.b", 1.5),
                              _typed_offer("t.c", 2.5), _typed_offer("t.d", 5.0)])


def test_escalation_to_dearer_types_stops_at_the_price_bound():
    from skyhop.provision.provisioner import ESCALATION_FACTOR

    cloud = FakeCloud("sim", {"r1a": CapacityError})
    provisioner = Provisioner(LADDER, [], {"sim": cloud}.__getitem__, clock=VirtualClock(START))
    with pytest.raises(ProvisionFailed) as info:
        provisioner.provision("c", _task())
    tried = [h.placement.instance_type for h in info.value.history]
    assert tried == ["t.a", "t.b"]  # t.c costs more than 2x t.a
    assert ESCALATION_FACTOR == 2.0 and "max_hourly_cost" in info.value.message


def test_max_hourly_cost_replaces_the_escalation_bound():
    cloud = FakeCloud("sim", {"r1a": CapacityError})
    provisioner = Provisioner(LADDER, [], {"sim": cloud}.__getitem__, clock=VirtualClock(START))
    task = Task(run="true", resources=Resources(accelerators="V100:1", use_spot=True,
                                                max_hourly_cost=10.0))
    with pytest.raises(ProvisionFailed) as info:
        provisioner.provision("c", task)
    assert [h.placement.instance_type for h in info.value.history] == ["t.a", "t.b", "t.c",
                                                                       "t.d"]
