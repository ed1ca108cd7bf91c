"""How fast remote function calls are: round trip, throughput and pool start-up.

    python bench/dispatch.py [--calls 1000] [--round-trips 2000] [--no-ssh]

For a local 2-node pool and (as root with OpenSSH installed) a 2-node SSH pool of real sshd
hosts in network namespaces (tests/sshhosts.py), prints:
- the round trip of a no-op call (`noop() >> pool`, one at a time): median and p99
- the throughput of 1,000 tiny calls sent at once (`gather(...) >> pool`, `pool.map`)
- pool start-up (`with skyhop.Compute(...)` until the workers are ready): the first pool
  of a fresh process (skyhop's imports included) and warm pools (machine, runtime and
  imports already there), median of several
Targets (issue "Python functions on any provider"): local <= 2 ms and >= 2,000 calls/s;
SSH <= 10 ms and >= 500 calls/s; warm local start-up <= 1 s. Skyward, measured on this kind
of machine: ~100 ms round trip, ~28 calls/s.
Runs in a throwaway SKYHOP_HOME; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import skyhop

ROOT = Path(__file__).resolve().parents[1]
SSH_ADDRESSES = ["10.213.0.45", "10.213.0.46"]
SKYWARD_ROUND_TRIP_MS, SKYWARD_CALLS_PER_S = 100.0, 28.0


@skyhop.function
def noop(x=None):
    return x


def round_trips(pool: skyhop.Compute, count: int) -> tuple[float, float]:
    for _ in range(100):  # warm up: connections, caches
        noop() >> pool
    times = []
    for _ in range(count):
        start = time.perf_counter()
        noop() >> pool
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000


def throughput(pool: skyhop.Compute, calls: int) -> tuple[float, float]:
    best_gather = best_map = 0.0
    for _ in range(3):
        start = time.perf_counter()
        values = skyhop.gather(*[noop(i) for i in range(calls)]) >> pool
        best_gather = max(best_gather, calls / (time.perf_counter() - start))
        assert values == tuple(range(calls))
        start = time.perf_counter()
        values = list(pool.map(noop, range(calls)))
        best_map = max(best_map, calls / (time.perf_counter() - start))
        assert values == list(range(calls))
    return best_gather, best_map


def measure(label: str, args: argparse.Namespace, **compute: object) -> dict[str, float]:
    with skyhop.Compute(nodes=2, quiet=True, **compute) as pool:  # type: ignore[arg-type]
        median, p99 = round_trips(pool, args.round_trips)
        gathered, mapped = throughput(pool, args.calls)
    print(f"{label:22s} round trip median {median:6.3f} ms  p99 {p99:6.3f} ms   "
          f"{args.calls} calls: gather {gathered:8.0f}/s  map {mapped:8.0f}/s")
    return {"median_ms": median, "p99_ms": p99, "gather_per_s": gathered, "map_per_s": mapped}


def warm_startups(repeat: int, **compute: object) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with skyhop.Compute(nodes=2, quiet=True, **compute):  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
    return times


FRESH = """
import time
start = time.perf_counter()
import skyhop
with skyhop.Compute(infra="local", nodes=2, quiet=True) as pool:
    print(time.perf_counter() - start, pool.startup_seconds)
"""


def fresh_process_startup(env: dict[str, str]) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", FRESH], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def check(label: str, value: float, target: float, higher_is_better: bool = False) -> str:
    met = value >= target if higher_is_better else value <= target
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{label}: {shown} (target {'>=' if higher_is_better else '<='} " \
           f"{target:,g}) {'met' if met else 'NOT MET'}"


def ssh_hosts(base: Path) -> tuple[Any, str | None]:
    sys.path.insert(0, str(ROOT / "tests"))
    import sshhosts

    reason = sshhosts.unavailable_reason()
    if reason:
        print(f"SSH pool: skipped ({reason})")
        return None, None
    made = sshhosts.SSHHosts(base).start()
    for address in SSH_ADDRESSES:
        made.add(address)
    return made, sshhosts.USER


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--startups", type=int, default=5)
    parser.add_argument("--no-ssh", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="skyhop-bench-"))
    os.environ["SKYHOP_HOME"] = str(home / "home")
    os.environ.pop("SKYHOP_DB_URL", None)
    os.environ.pop("SKYHOP_CONFIG", None)
    hosts = None
    results: dict[str, object] = {}
    try:
        total, enter = fresh_process_startup(dict(os.environ))
        print(f"local 2-node pool start, fresh process: {total:.3f} s with skyhop's imports "
              f"({enter:.3f} s in Compute.__enter__)")
        warm = warm_startups(args.startups, infra="local")
        print(f"local 2-node pool start, warm:          median {statistics.median(warm):.3f} s"
              f"  worst {max(warm):.3f} s")
        local = measure("local 2-node pool", args, infra="local")
        results.update(local_start_fresh_s=total, local_start_warm_s=statistics.median(warm),
                       local=local)
        lines = [check("local round trip median, ms", local["median_ms"], 2.0),
                 check("local calls/s (gather)", local["gather_per_s"], 2000, True),
                 check("local warm start-up, s", statistics.median(warm), 1.0)]
        if not args.no_ssh:
            hosts, user = ssh_hosts(home / "ssh")
        if hosts is not None:
            (home / "home").mkdir(exist_ok=True)
            (home / "home" / "config.yaml").write_text(json.dumps({"ssh_pools": {"bench": {
                "hosts": SSH_ADDRESSES, "user": user,
                "identity_file": str(hosts.client_key)}}}))
            from skyhop import config

            config.reload()
            cold = warm_startups(1, infra="ssh/bench")  # uploads the runtime
            warm_ssh = warm_startups(args.startups, infra="ssh/bench")
            print(f"SSH 2-node pool start: first {cold[0]:.3f} s (runtime upload), warm "
                  f"median {statistics.median(warm_ssh):.3f} s")
            ssh = measure("SSH 2-node pool", args, infra="ssh/bench")
            results.update(ssh_start_s=statistics.median(warm_ssh), ssh=ssh)
            lines += [check("SSH round trip median, ms", ssh["median_ms"], 10.0),
                      check("SSH calls/s (gather)", ssh["gather_per_s"], 500, True)]
        print(f"\nSkyward on this kind of machine: ~{SKYWARD_ROUND_TRIP_MS:g} ms round trip, "
              f"~{SKYWARD_CALLS_PER_S:g} calls/s")
        print("\n".join(lines))
    finally:
        if hosts is not None:
            hosts.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
