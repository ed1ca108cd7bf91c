"""Failover on real availability traces: cheapest-first versus tracker-informed ordering.

    python bench/failover.py [--launches N] [--seed S] [--json]

The 9-zone p3.2xlarge (1x V100) spot availability traces of Can't Be Late (NSDI'24,
shared/data/spot-traces/.../availability/1-node/aws-02-15-2023, 1,092 h) drive a simulated
AWS (skyhop.sim): an attempt takes 60 s of virtual time and succeeds when the trace shows
capacity in that zone then. Spot prices come from the shipped catalog (zone names are paired
with the region's AZ IDs in sorted order; see skyhop/sim/catalog.py). Launches arrive at
random times over the traces; each runs skyhop's real provisioner with --retry-until-up.

- cheapest-first: SkyPilot's behaviour: try the cheapest zone, block it on failure, re-plan.
- tracker: the same loop, but the plan skips zones the tracker estimates unlikely to have
  capacity, from the outcomes of earlier attempts (decaying, half-life 1 h).

Prints attempts per launch, simulated time to success, and the hourly price paid.
Target (issue #4): >= 30% fewer attempts at <= 5% extra cost.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

TRACES = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spot-traces"
          / "skypilot-org_spot-traces" / "availability" / "1-node" / "aws-02-15-2023")
INSTANCE_TYPE = "p3.2xlarge"  # v100_1 in the traces (shared/data/README.md section 2.1)


def run(policy: str, launch_times: list[float], traces: dict, offers: list,
        min_availability: float) -> dict:
    from skyhop.catalog.catalog import Catalog
    from skyhop.clock import VirtualClock
    from skyhop.provision.provisioner import Provisioner
    from skyhop.sim.provider import TraceProvider
    from skyhop.spec import Resources, Task
    from skyhop.spec.fields import InfraPattern

    catalog = Catalog.from_offers(offers)
    clock = VirtualClock()
    provider = TraceProvider("aws", traces, clock)
    provisioner = Provisioner(catalog, [InfraPattern("aws")], lambda name: provider,
                              clock=clock, use_tracker=policy == "tracker",
                              min_availability=min_availability)
    task = Task(run="true", resources=Resources(accelerators="V100:1", use_spot=True,
                                                instance_type=INSTANCE_TYPE))
    attempts, waits, prices = [], [], []
    for i, t in enumerate(launch_times):
        clock.t = t
        placement, _, history = provisioner.provision(f"c{i}", task, retry_until_up=True)
        provider.teardown(f"c{i}")
        attempts.append(len(history))
        waits.append((clock.now() - t) / 60)
        prices.append(placement.hourly_price)
    return {
        "policy": policy,
        "launches": len(launch_times),
        "attempts_mean": statistics.mean(attempts),
        "attempts_p90": sorted(attempts)[int(0.9 * len(attempts))],
        "first_try_success": sum(a == 1 for a in attempts) / len(attempts),
        "minutes_to_success_mean": statistics.mean(waits),
        "minutes_to_success_p90": sorted(waits)[int(0.9 * len(waits))],
        "price_mean": statistics.mean(prices),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-availability", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from skyhop.catalog.catalog import load_catalog
    from skyhop.provision.provisioner import MIN_AVAILABILITY
    from skyhop.sim.catalog import trace_offers
    from skyhop.sim.traces import load_traces

    if not TRACES.is_dir():
        raise SystemExit(f"traces not found at {TRACES}")
    traces = load_traces(TRACES)
    offers = trace_offers(load_catalog(), traces, INSTANCE_TYPE)
    span = min(t.duration_s for t in traces.values())
    rng = random.Random(args.seed)
    launch_times = sorted(rng.uniform(0, span - 6 * 3600) for _ in range(args.launches))
    threshold = args.min_availability if args.min_availability is not None else MIN_AVAILABILITY
    base = run("cheapest-first", launch_times, traces, offers, threshold)
    informed = run("tracker", launch_times, traces, offers, threshold)
    fewer = 1 - informed["attempts_mean"] / base["attempts_mean"]
    extra = informed["price_mean"] / base["price_mean"] - 1
    result = {"traces": str(TRACES), "zones": len(traces), "min_availability": threshold,
              "results": [base, informed], "fewer_attempts": fewer, "extra_cost": extra}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(traces)} zones, {args.launches} launches over {span / 3600:.0f} h of traces, "
          f"p3.2xlarge spot, 60 s per attempt, skip below availability {threshold:g}")
    print(f"{'policy':16s} {'attempts':>9s} {'p90':>4s} {'1st try':>8s} "
          f"{'min to up':>10s} {'p90':>6s} {'$/h paid':>9s}")
    for r in (base, informed):
        print(f"{r['policy']:16s} {r['attempts_mean']:9.2f} {r['attempts_p90']:4d} "
              f"{r['first_try_success']:8.0%} {r['minutes_to_success_mean']:10.1f} "
              f"{r['minutes_to_success_p90']:6.0f} {r['price_mean']:9.4f}")
    print(f"tracker: {fewer:.0%} fewer attempts (target >= 30%), {extra:+.1%} cost "
          f"(target <= +5%)")


if __name__ == "__main__":
    main()
