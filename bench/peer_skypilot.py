"""skyhop vs. the real peer, SkyPilot 0.14.1, planning the same tasks on identical prices.

    python3 -m venv /tmp/skypeer && /tmp/skypeer/bin/pip install skypilot==0.14.1
    python bench/peer_skypilot.py [--peer-python /tmp/skypeer/bin/python] [--json]

SkyPilot runs in its own venv, in a child process under `unshare -n` (an empty network
namespace, needs root), so it cannot reach the internet; it plans offline from the real
skypilot-catalog v8 files in `shared/data` (README section 5), seeded under a throwaway HOME.
skyhop plans on a catalog built from exactly those files (the fair comparison) and on its
shipped catalog restricted to aws/gcp/azure. Each optimize call is timed warm (after one
warm-up call of the same case); the peer's first (cold) call and process time are shown too.
The issue's figures for SkyPilot: ~1 s for one task, ~65 s for a 50-task chain.
Skips (exit 0) when `unshare` or the peer venv is missing. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLOUDS = ["aws", "gcp", "azure"]
# name -> (resources of every task, number of tasks in a chain)
CASES: dict[str, tuple[dict[str, str], int]] = {
    "V100:1": ({"accelerators": "V100:1"}, 1),
    "A100:8": ({"accelerators": "A100:8"}, 1),
    "cpus 8+": ({"cpus": "8+"}, 1),
    "chain 20 x V100:1": ({"accelerators": "V100:1"}, 20),
    "chain 50 x V100:1": ({"accelerators": "V100:1"}, 50),
}


# ---------------------------------------------------------------- peer side (SkyPilot venv)
def peer_worker(out: Path) -> None:
    """Runs inside `unshare -n` with the peer's python: plans every case with SkyPilot."""
    start = time.perf_counter()
    import sky
    from sky import check, clouds

    # Benchmark-only patch: `sky check` needs credentials, so enable AWS/GCP/Azure directly.
    # Every optimizer/resources call site reads this through the `sky.check` module.
    enabled = [clouds.AWS(), clouds.GCP(), clouds.Azure()]
    check.get_cached_enabled_clouds_or_refresh = lambda *_a, **_k: list(enabled)
    result: dict[str, Any] = {"import_s": time.perf_counter() - start, "cases": {}}
    for name, (resources, n) in CASES.items():
        times, tasks = [], []
        for _ in range(2):  # first call (cold for this case), then the measured warm call
            with sky.Dag() as dag:
                tasks = [sky.Task(name=f"t{i}", run="true") for i in range(n)]
                for task in tasks:
                    task.set_resources(sky.Resources(**resources))
                for a, b in itertools.pairwise(tasks):
                    dag.add_edge(a, b)
            t = time.perf_counter()
            sky.Optimizer.optimize(dag, quiet=True)
            times.append(time.perf_counter() - t)
        best = tasks[0].best_resources
        result["cases"][name] = {
            "first_s": times[0], "warm_s": times[1],
            "cost": sum(task.best_resources.get_cost(3600) for task in tasks),
            "placement": f"{str(best.cloud).lower()}/{best.region}/{best.zone or '-'} "
                         f"{best.instance_type} ${best.get_cost(3600):.4f}/h",
        }
    result["process_s"] = time.perf_counter() - start
    out.write_text(json.dumps(result))


def seed_peer_home(home: Path, data: Path) -> None:
    """Seed SkyPilot's catalog dir with the peer-bench files, fresh mtimes (no re-download)."""
    root = home / ".sky" / "catalogs" / "v8"
    sources = {"aws/vms.csv": data / "peer-bench" / "aws_vms_subset_v8.csv",
               "gcp/vms.csv": data / "catalog" / "v8" / "gcp" / "vms.csv",
               "common/accelerators.csv": data / "peer-bench" / "common_accelerators_v8.csv"}
    for rel, src in sources.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).unlink(missing_ok=True)  # the source may be read-only; so is a copy
        shutil.copyfile(src, root / rel)
        os.utime(root / rel)
    # The shared Azure file writes Generation `V1,V2` unquoted (README section 1), which pandas
    # rejects; re-quote it as upstream does. Values are unchanged.
    (root / "azure").mkdir(parents=True, exist_ok=True)
    (root / "azure/vms.csv").unlink(missing_ok=True)
    with ((data / "catalog/v8/azure/vms.csv").open(newline="") as fin,
          (root / "azure/vms.csv").open("w", newline="") as fout):
        reader, writer = csv.reader(fin), csv.writer(fout)
        header = next(reader)
        writer.writerow(header)
        last = len(header) - 1
        writer.writerows([*row[:last], ",".join(row[last:])] for row in reader if row)


def run_peer(peer_python: str, home: Path, data: Path) -> dict[str, Any]:
    seed_peer_home(home, data)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPILOT", "SKY_"))}
    env.update(HOME=str(home), SKYPILOT_DISABLE_USAGE_COLLECTION="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = ["unshare", "-n", peer_python, str(Path(__file__).resolve()),
               "--peer-worker", str(out)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out.exists():
            sys.exit(f"peer worker failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result["wall_s"] = wall
    result["version"] = subprocess.run([peer_python, "-c", "import sky; print(sky.__version__)"],
                                       env=env, capture_output=True, text=True).stdout.strip()
    return result


# ---------------------------------------------------------------- skyhop side
def peer_catalog(data: Path) -> Any:
    """A skyhop catalog from exactly the files the peer plans on."""
    from skyhop.catalog import build
    from skyhop.catalog.catalog import Catalog

    metadata = {r["GPU"]: float(r["MemoryGB"])
                for r in build._read(data / "catalog/v7/common/metadata.csv") if r.get("MemoryGB")}
    rows = build._generic_rows("aws", build._read(data / "peer-bench/aws_vms_subset_v8.csv"),
                               metadata)
    rows += build._gcp_rows(build._read(data / "catalog/v8/gcp/vms.csv"), metadata)
    rows += build._generic_rows("azure", build._read(data / "catalog/v8/azure/vms.csv"),
                                metadata)
    rows = [r for r in rows if not (math.isnan(r.price) and math.isnan(r.spot_price))]
    return Catalog(*build.to_arrays(rows))


def run_skyhop(catalog: Any, repeat: int) -> dict[str, dict[str, Any]]:
    from skyhop.optimizer import optimize
    from skyhop.spec import Dag, Resources, Task

    results = {}
    for name, (resources, n) in CASES.items():
        tasks = [Task(name=f"t{i}", run="true", resources=Resources(**resources))
                 for i in range(n)]
        job = tasks[0] if n == 1 else Dag.chain(tasks)
        plan = optimize(job, catalog)  # warm-up
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            plan = optimize(job, catalog)
            times.append(time.perf_counter() - t)
        p = plan.tasks[0]
        results[name] = {
            "warm_s": statistics.median(times), "cost": plan.total_cost,
            "placement": f"{p.provider}/{p.region}/{p.zone or '-'} {p.instance_type} "
                         f"${p.hourly_price:.4f}/h",
        }
    return results


# ---------------------------------------------------------------- report
def report(peer: dict[str, Any], fair: dict[str, Any], shipped: dict[str, Any],
           sizes: tuple[int, int]) -> dict[str, Any]:
    cases = {}
    for name in CASES:
        pc, fc, sc = peer["cases"][name], fair[name], shipped[name]
        cases[name] = {"skypilot": pc, "skyhop_peer_catalog": fc, "skyhop_shipped": sc,
                       "speedup": pc["warm_s"] / fc["warm_s"],
                       "cost_ratio": fc["cost"] / pc["cost"]}
    return {"skypilot_version": peer["version"], "skypilot_import_s": peer["import_s"],
            "skypilot_process_s": peer["process_s"], "skypilot_wall_s": peer["wall_s"],
            "offers_peer_catalog": sizes[0], "offers_shipped_aws_gcp_azure": sizes[1],
            "cases": cases}


def print_table(result: dict[str, Any]) -> None:
    print(f"SkyPilot {result['skypilot_version']} (offline, unshare -n): import "
          f"{result['skypilot_import_s']:.2f} s, worker {result['skypilot_process_s']:.1f} s, "
          f"process wall {result['skypilot_wall_s']:.1f} s")
    print(f"skyhop catalogs: peer files {result['offers_peer_catalog']:,} offers; shipped "
          f"aws/gcp/azure {result['offers_shipped_aws_gcp_azure']:,} offers")
    head = (f"{'case':18s} {'sky 1st s':>9s} {'sky warm s':>10s} {'skyhop ms':>9s} "
            f"{'speedup':>8s} {'sky $/h':>9s} {'skyhop $/h':>10s} {'cost x':>6s} "
            f"{'shipped $/h':>11s}")
    print(head)
    print("-" * len(head))
    for name, c in result["cases"].items():
        pc, fc, sc = c["skypilot"], c["skyhop_peer_catalog"], c["skyhop_shipped"]
        print(f"{name:18s} {pc['first_s']:9.3f} {pc['warm_s']:10.3f} "
              f"{fc['warm_s'] * 1000:9.2f} {c['speedup']:7,.0f}x {pc['cost']:9.4f} "
              f"{fc['cost']:10.4f} {c['cost_ratio']:6.3f} {sc['cost']:11.4f}")
    print("placements (first task; SkyPilot | skyhop on peer files | skyhop shipped):")
    for name, c in result["cases"].items():
        print(f"  {name:18s} {c['skypilot']['placement']}\n  {'':18s} "
              f"{c['skyhop_peer_catalog']['placement']}\n  {'':18s} "
              f"{c['skyhop_shipped']['placement']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default="/tmp/skypeer/bin/python")
    parser.add_argument("--peer-home", type=Path, default=Path("/tmp/skypeer-home"))
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the shared/data dir")
    parser.add_argument("--repeat", type=int, default=5, help="skyhop timed calls per case")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--peer-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(args.peer_worker)
        return
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-n", "true"], capture_output=True).returncode != 0:
        print("skip: `unshare -n` is unavailable (needs util-linux and root); SkyPilot is only "
              "run without network access")
        return
    if not os.access(args.peer_python, os.X_OK):
        print(f"skip: no peer venv at {args.peer_python}; install it with: python3 -m venv "
              "/tmp/skypeer && /tmp/skypeer/bin/pip install skypilot==0.14.1")
        return
    peer = run_peer(args.peer_python, args.peer_home, args.data)
    from skyhop.catalog.catalog import load_catalog

    fair_catalog = peer_catalog(args.data)
    shipped_catalog = load_catalog().restrict(CLOUDS)
    result = report(peer, run_skyhop(fair_catalog, args.repeat),
                    run_skyhop(shipped_catalog, args.repeat),
                    (len(fair_catalog), len(shipped_catalog)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
