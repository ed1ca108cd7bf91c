"""Spot policies under deadlines on every single-node spot trace: greedy, Uniform Progress, skyhop.

    python bench/spot_policy.py [--every-h 24] [--quick] [--history-h 168] [--json]
    python bench/spot_policy.py --fit-prior

The setting of Can't Be Late (Wu et al., NSDI'24, section 6.1): a 48 h job, changeover 0.2 h,
deadlines at job fractions 0.75, 0.8 and 0.9 (64, 60 and 53.3 h). Traces: every file under
availability/1-node and preemption/1-node of shared/data/spot-traces/skypilot-org_spot-traces
(value >= 1: spot available); traces shorter than a deadline (the four 45.6 h GCP ones) are
skipped and listed. Windows: the job starts every 24 h (--every-h) while start + deadline fits
in the trace. Prices: p3.2xlarge from the shipped catalog, in the trace zone's AWS region (the
on-demand price and the median spot price over the region's AZs; us-east-1 for GCP zones).
skyhop's policy is shown the week of trace before each start (--history-h): what a tracker
would have seen; nothing after the start. The omniscient optimum is the exact minimum cost
knowing the whole trace (skyhop.sim.spot_sim.omniscient_costs).

Metrics per deadline and policy: mean cost relative to on-demand only, deadlines met, and the
share of greedy's gap to the omniscient optimum that the policy closes, two ways:
- "closed": 1 - sum(policy - omniscient) / sum(greedy - omniscient) over all windows, i.e. the
  ratio of the mean gaps (the paper's comparison of mean cost differences, section 6.4,
  Figure 12). This is the target metric.
- "per-window": the mean (and median) of (greedy - policy) / (greedy - omniscient) over windows
  where greedy is more than 1% of on-demand cost above the optimum. Unstable: a window where
  greedy is 1.1% above optimal and a policy 2% counts as -82%.
Targets (issue): every deadline met; Uniform Progress reproduces the paper's ranking
(omniscient <= UP < greedy in mean cost); skyhop closes >= 70% of the gap on average (the mean
of "closed" over the three deadlines).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spot-traces"
TRACES = DATA / "skypilot-org_spot-traces"
HELD_OUT = (DATA / "michaelvll_skypilot-spot-strategy" / "raw_availability_10min",
            ("2022-11-28T22-23", "2022-12-13T19-23"))
INSTANCE_TYPE = "p3.2xlarge"  # v100_1 in the traces (shared/data/README.md section 2.1)
JOB_H = 48.0
JOB_FRACTIONS = (0.75, 0.8, 0.9)  # deadline = 48 h / fraction
CHANGEOVER_H = 0.2
POLICY_NAMES = ("greedy", "uniform_progress", "skyhop")
PER_WINDOW_EPS = 0.01  # of the on-demand cost
TARGET_CLOSED = 0.70


def trace_files() -> list[Path]:
    return sorted([*TRACES.glob("availability/1-node/**/*.json"),
                   *TRACES.glob("preemption/1-node/**/*.json")])


def run(every_h: float, history_h: float) -> dict:
    from skyhop.catalog.catalog import load_catalog
    from skyhop.jobs.policies import get_policy
    from skyhop.sim import spot_sim
    from skyhop.sim.traces import load_trace

    catalog = load_catalog()
    jobs = {f: spot_sim.Job(JOB_H, JOB_H / f, CHANGEOVER_H) for f in JOB_FRACTIONS}
    windows: dict[float, list[dict]] = {f: [] for f in JOB_FRACTIONS}
    skipped, priced = [], {}
    for path in trace_files():
        name = str(path.relative_to(TRACES))
        trace = load_trace(path)
        region = spot_sim.trace_region(trace.name)
        prices, priced_in = spot_sim.catalog_prices(INSTANCE_TYPE, region, catalog)
        priced[priced_in] = prices
        starts = {f: spot_sim.window_starts(trace, job, every_h) for f, job in jobs.items()}
        if not any(starts.values()):
            skipped.append(f"{name} ({len(trace.available) * trace.gap_s / 3600:.1f} h)")
            continue
        optimum = {f: dict(zip(starts[f], spot_sim.omniscient_costs(trace, job, prices,
                                                                    starts[f]), strict=True))
                   for f, job in jobs.items()}
        for start in sorted(set().union(*starts.values())):
            for f in JOB_FRACTIONS:  # loosest deadline first: its plan covers the others
                if start not in optimum[f]:
                    continue
                job = jobs[f]
                row = {"trace": name, "start_h": start * trace.gap_s / 3600,
                       "on_demand": spot_sim.on_demand_cost(job, prices, trace.gap_s),
                       "omniscient": float(optimum[f][start])}
                for policy in POLICY_NAMES:
                    result = spot_sim.simulate(trace, get_policy(policy), job, prices,
                                               start_tick=start, history_h=history_h)
                    row[policy] = result.cost
                    row[f"{policy}_met"] = result.deadline_met
                windows[f].append(row)
    summary = {f: summarise(rows) for f, rows in windows.items()}
    return {"windows": windows, "summary": summary, "skipped": skipped,
            "prices": {r: [p.on_demand, p.spot] for r, p in priced.items()}}


def summarise(rows: list[dict]) -> dict:
    greedy_gap = sum(r["greedy"] - r["omniscient"] for r in rows)
    out: dict = {"windows": len(rows),
                 "omniscient_cost": statistics.mean(r["omniscient"] / r["on_demand"]
                                                    for r in rows)}
    for policy in POLICY_NAMES:
        gap = sum(r[policy] - r["omniscient"] for r in rows)
        shares = [(r["greedy"] - r[policy]) / (r["greedy"] - r["omniscient"]) for r in rows
                  if r["greedy"] - r["omniscient"] > PER_WINDOW_EPS * r["on_demand"]]
        out[policy] = {
            "cost": statistics.mean(r[policy] / r["on_demand"] for r in rows),
            "met": sum(r[f"{policy}_met"] for r in rows),
            "closed": 1 - gap / greedy_gap if greedy_gap > 0 else 0.0,
            "per_window_mean": statistics.mean(shares) if shares else 0.0,
            "per_window_median": statistics.median(shares) if shares else 0.0,
            "per_window_n": len(shares)}
    return out


def report(result: dict, every_h: float, history_h: float, seconds: float) -> None:
    summary = result["summary"]
    n_traces = len({r["trace"] for rows in result["windows"].values() for r in rows})
    prices = ", ".join(f"{r} ${od:g}/${spot:.4g}" for r, (od, spot) in
                       sorted(result["prices"].items()))
    print(f"{n_traces} single-node traces, a {JOB_H:g} h job starting every {every_h:g} h, "
          f"changeover {CHANGEOVER_H:g} h, {INSTANCE_TYPE} on-demand/spot per hour: {prices}; "
          f"skyhop sees {history_h:g} h of history")
    if result["skipped"]:
        print(f"skipped (shorter than the loosest window): {', '.join(result['skipped'])}")
    print(f"{'deadline':>9s} {'policy':17s} {'cost/OD':>8s} {'met':>9s} {'closed':>7s} "
          f"{'per-window mean':>16s} {'median':>7s}")
    for f in JOB_FRACTIONS:
        s = summary[f]
        label = f"{JOB_H / f:.1f} h"
        print(f"{label:>9s} {'omniscient':17s} {s['omniscient_cost']:8.3f} "
              f"{s['windows']:>4d}/{s['windows']:<4d}")
        for policy in POLICY_NAMES:
            p = s[policy]
            print(f"{'':>9s} {policy:17s} {p['cost']:8.3f} {p['met']:>4d}/{s['windows']:<4d} "
                  f"{p['closed']:7.0%} {p['per_window_mean']:16.0%} "
                  f"{p['per_window_median']:7.0%}  (n={p['per_window_n']})")
    all_met = all(summary[f][p]["met"] == summary[f]["windows"] for f in JOB_FRACTIONS
                  for p in POLICY_NAMES)
    ranking = all(summary[f]["omniscient_cost"] <= summary[f]["uniform_progress"]["cost"]
                  < summary[f]["greedy"]["cost"] for f in JOB_FRACTIONS)
    closed = statistics.mean(summary[f]["skyhop"]["closed"] for f in JOB_FRACTIONS)
    print(f"target every deadline met: {'yes' if all_met else 'NO'}")
    print(f"target UP reproduces the paper's ranking (omniscient <= UP < greedy, every "
          f"deadline): {'yes' if ranking else 'NO'}")
    print(f"target skyhop closes >= {TARGET_CLOSED:.0%} of greedy's gap on average: "
          f"{closed:.1%} {'yes' if closed >= TARGET_CLOSED else 'NO'}")
    print(f"({seconds:.0f} s)")


def fit_prior() -> None:
    """Re-derive skyhop's prior hazard rates from the held-out probe logs."""
    import numpy as np

    from skyhop.jobs import policies
    from skyhop.sim.spot_sim import periods

    root, folders = HELD_OUT
    model = policies.SpotModel()
    files = [p for folder in folders for p in sorted((root / folder).glob("*.csv"))]
    for path in files:  # tick,time,launch_failed (1 = unavailable; README section 2.2)
        failed = [int(line.split(",")[2]) for line in path.read_text().split()]
        runs = periods(np.array(failed) == 0, 600.0)
        for available, hours in runs[:-1]:
            model.add(available, hours)
        model.add(*runs[-1], ended=False)
    for available, name in ((True, "PRIOR_UP_RATES"), (False, "PRIOR_DOWN_RATES")):
        rates = tuple(round(e / h, 3) for e, h in zip(model.ends[available],
                                                        model.at_risk_h[available], strict=True))
        shipped = getattr(policies, name)
        print(f"{name} = {rates}  ({len(files)} files; shipped: "
              f"{'same' if rates == shipped else shipped})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--every-h", type=float, default=24.0,
                        help="hours between job starts in a trace")
    parser.add_argument("--quick", action="store_true", help="a start every 96 h")
    parser.add_argument("--history-h", type=float, default=168.0,
                        help="trace before each start that skyhop's policy may see")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fit-prior", action="store_true",
                        help="re-derive skyhop's prior from the held-out traces and exit")
    args = parser.parse_args()
    if args.fit_prior:
        fit_prior()
        return
    if not TRACES.is_dir():
        sys.exit(f"traces not found at {TRACES}")
    every_h = 96.0 if args.quick else args.every_h
    began = time.perf_counter()
    result = run(every_h, args.history_h)
    if args.json:
        print(json.dumps({"summary": result["summary"], "skipped": result["skipped"],
                          "prices": result["prices"]}, indent=2))
        return
    report(result, every_h, args.history_h, time.perf_counter() - began)


if __name__ == "__main__":
    main()
