"""The simulator: spot traces, a provider whose capacity follows them on a virtual clock, and
offers for trace zones priced from the catalog."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SHARED_DATA
from skyhop.catalog.catalog import Catalog
from skyhop.catalog.offer import Offer
from skyhop.clock import VirtualClock
from skyhop.provision.base import ClusterSpec
from skyhop.provision.errors import CapacityError
from skyhop.sim.catalog import trace_offers
from skyhop.sim.provider import TraceProvider
from skyhop.sim.traces import Trace, load_trace, load_traces

TRACES = (SHARED_DATA / "spot-traces" / "skypilot-org_spot-traces" / "availability" / "1-node"
          / "aws-02-15-2023")
needs_traces = pytest.mark.skipif(not TRACES.is_dir(),
                                  reason=f"spot traces not present at {TRACES}")


def _write(directory: Path, name: str, gap: float, data: list[int]) -> Path:
    path = directory / name
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


def _placement(zone: str) -> SimpleNamespace:
    return SimpleNamespace(provider="aws", region=zone[:-1], zone=zone,
                           instance_type="p3.2xlarge", use_spot=True)


# --- traces ----------------------------------------------------------------------------------

def test_load_trace_reads_the_documented_format(tmp_path):
    trace = load_trace(_write(tmp_path, "us-east-1a_v100_1.json", 600, [1, 0, 2]))
    assert trace.name == "us-east-1a"  # the zone, from the file name
    assert trace.gap_s == 600.0 and trace.duration_s == 1800.0
    assert trace.available.tolist() == [1, 0, 2]


def test_trace_at_is_the_tick_containing_the_time_clamped_to_the_span():
    trace = Trace("z", 100.0, np.array([1, 0, 2], dtype=np.int32))
    assert [trace.at(t) for t in (0, 99.9, 100, 199, 200, 299)] == [1, 1, 0, 0, 2, 2]
    assert trace.at(-50) == 1 and trace.at(10_000) == 2  # before / after: first / last tick


def test_load_traces_keys_by_zone_and_ignores_other_files(tmp_path):
    _write(tmp_path, "us-west-2b_v100_1.json", 60, [0])
    _write(tmp_path, "us-east-1a_v100_1.json", 60, [1])
    (tmp_path / "README.md").write_text("not a trace")
    traces = load_traces(tmp_path)
    assert list(traces) == ["us-east-1a", "us-west-2b"]


@needs_traces
def test_real_traces_have_the_shape_the_data_readme_gives():
    traces = load_traces(TRACES)
    assert len(traces) == 9 and {z[:-1] for z in traces} == {"us-east-1", "us-east-2",
                                                             "us-west-2"}
    for trace in traces.values():
        assert trace.gap_s == 195.0 and len(trace.available) == 20158  # 1,092 h
        assert set(np.unique(trace.available).tolist()) == {0, 1}  # single-node: up or not
    # README table: us-east-1a is up 17% of the ticks, us-east-1c 47%.
    assert traces["us-east-1a"].available.mean() == pytest.approx(0.17, abs=0.005)
    assert traces["us-east-1c"].available.mean() == pytest.approx(0.47, abs=0.005)


# --- the provider ----------------------------------------------------------------------------

def test_trace_provider_capacity_follows_the_trace_at_the_virtual_time():
    clock = VirtualClock(1000.0)
    traces = {"us-east-1a": Trace("us-east-1a", 100.0, np.array([1, 0, 2], dtype=np.int32))}
    aws = TraceProvider("aws", traces, clock, start=1000.0, attempt_s=60.0)
    spec = ClusterSpec("c", 1)
    # Capacity is checked when the attempt ends: 60 s in, tick 0 (1 instance).
    nodes = aws.provision(spec, _placement("us-east-1a"), 1)
    assert clock.now() == 1060.0 and [n.rank for n in nodes] == [0]
    assert aws.instances("c") == nodes
    aws.teardown("c")
    clock.t = 1050.0  # ends at 1110: tick 1, none available
    with pytest.raises(CapacityError, match="us-east-1a") as raised:
        aws.provision(spec, _placement("us-east-1a"), 1)
    assert raised.value.zone == "us-east-1a" and raised.value.kind == "capacity"
    assert aws.instances("c") == []
    clock.t = 1150.0  # ends at 1210: tick 2, two available: two nodes fit, three do not
    assert len(aws.provision(ClusterSpec("two", 2), _placement("us-east-1a"), 2)) == 2
    with pytest.raises(CapacityError):
        aws.provision(ClusterSpec("three", 3), _placement("us-east-1a"), 3)
    with pytest.raises(CapacityError):  # a zone without a trace has no capacity
        aws.provision(spec, _placement("us-east-1b"), 1)
    assert aws.calls == 5


def test_trace_provider_terminate_removes_only_the_named_nodes():
    clock = VirtualClock()
    aws = TraceProvider("aws", {"z1": Trace("z1", 60.0, np.array([4], dtype=np.int32))}, clock)
    placement = SimpleNamespace(provider="aws", region="z", zone="z1", instance_type="t",
                                use_spot=True)
    a, b, c = aws.provision(ClusterSpec("c", 3), placement, 3)
    aws.terminate("c", [b.instance_id])
    assert aws.instances("c") == [a, c]
    aws.terminate("c", [a.instance_id, c.instance_id])
    assert aws.instances("c") == []
    aws.terminate("c", [a.instance_id])  # idempotent


@needs_traces
def test_trace_provider_matches_the_real_trace_over_time():
    traces = load_traces(TRACES)
    clock = VirtualClock()
    aws = TraceProvider("aws", traces, clock, attempt_s=0.0)
    trace = traces["us-east-1c"]
    for tick in range(0, 2000, 37):
        clock.t = tick * trace.gap_s + 1
        assert aws.available("us-east-1c") == trace.available[tick]
        expect_ok = trace.available[tick] >= 1
        try:
            aws.provision(ClusterSpec(f"c{tick}", 1), _placement("us-east-1c"), 1)
            ok = True
        except CapacityError:
            ok = False
        assert ok == expect_ok, tick


# --- offers ----------------------------------------------------------------------------------

def _az(region: str, az_id: str, spot: float | None, itype: str = "p3.2xlarge") -> Offer:
    return Offer("aws", region, az_id, itype, "V100", 1.0, 8.0, 61.0, 16.0, 3.06, spot, False,
                 "x86_64")


def _traces(*zones: str) -> dict[str, Trace]:
    return {z: Trace(z, 60.0, np.array([1], dtype=np.int32)) for z in zones}


def test_trace_offers_pair_zones_with_the_regions_az_ids_in_sorted_order():
    catalog = Catalog.from_offers([
        _az("us-east-1", "use1-az2", 0.5), _az("us-east-1", "use1-az1", 0.4),
        _az("us-east-1", "use1-az3", None),  # no spot price: not used
        _az("us-west-2", "usw2-az1", 0.9), _az("us-west-2", "usw2-az1", 0.1, "g5.xlarge")])
    offers = trace_offers(catalog, _traces("us-east-1c", "us-east-1a", "us-east-1b",
                                           "us-west-2a"), "p3.2xlarge")
    got = {o.zone: (o.region, o.spot_price) for o in offers}
    assert got == {"us-east-1a": ("us-east-1", 0.4),  # az1
                   "us-east-1b": ("us-east-1", 0.5),  # az2
                   "us-east-1c": ("us-east-1", 0.4),  # more zones than priced IDs: wrap
                   "us-west-2a": ("us-west-2", 0.9)}  # p3.2xlarge's price, not g5's
    assert all(o.provider == "aws" and o.instance_type == "p3.2xlarge" and o.price == 3.06
               and o.accelerator == "V100" for o in offers)


def test_trace_offers_refuse_a_region_without_spot_prices():
    catalog = Catalog.from_offers([_az("us-east-1", "use1-az1", 0.4)])
    with pytest.raises(ValueError, match="us-west-2"):
        trace_offers(catalog, _traces("us-west-2a"), "p3.2xlarge")


@needs_traces
def test_trace_offers_from_the_shipped_catalog(catalog):
    traces = load_traces(TRACES)
    offers = trace_offers(catalog, traces, "p3.2xlarge")
    assert sorted(o.zone for o in offers) == sorted(traces)
    rows = np.nonzero(catalog.instance_type == catalog.instance_types.index("p3.2xlarge"))[0]
    priced: dict[str, dict[str, float]] = {}  # region -> AZ ID -> spot price
    for row in rows:
        o = catalog.offer(int(row))
        if o.provider == "aws" and o.zone and o.spot_price is not None:
            priced.setdefault(o.region, {})[o.zone] = o.spot_price
    for region in {o.region for o in offers}:
        mine = sorted((o for o in offers if o.region == region), key=lambda o: o.zone)
        ids = sorted(priced[region])
        assert all(o.spot_price in priced[region].values() for o in mine)
        assert mine[0].spot_price == priced[region][ids[0]]  # first zone: first AZ ID
    east = {o.spot_price for o in offers if o.region == "us-east-1"}
    assert len(east) > 1  # the real spread of prices within a region is kept


def test_trace_provider_preempts_when_availability_drops():
    from skyhop.clock import VirtualClock
    from skyhop.provision.base import ClusterSpec
    from skyhop.sim.provider import TraceProvider
    from skyhop.sim.traces import Trace

    clock = VirtualClock(0.0)
    provider = TraceProvider("sim", {"z1": Trace("z1", 60.0, np.array([1, 1, 1, 0, 0, 1]))},
                             clock,
                             attempt_s=10.0)

    class Where:
        zone, region, instance_type = "z1", "r1", "t1"

    [node] = provider.provision(ClusterSpec("c", 1), Where(), 1)
    clock.sleep(60)  # still available at 70 s
    assert [i.instance_id for i in provider.instances("c")] == [node.instance_id]
    clock.sleep(120)  # 190 s: the trace shows no capacity, the cloud took it back
    assert provider.instances("c") == [] and provider.preemptions == 1
    assert provider.instances("c") == []  # gone for good, even when capacity returns
