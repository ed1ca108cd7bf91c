"""How fast the `skyhop` command responds, measured as a user sees it (whole processes).

    python bench/cli.py [--repeat N]

Prints the median and worst wall time of `skyhop --help`, `skyhop status` (with a few
clusters in state), `skyhop launch` of a no-op task on an existing local cluster and on a
new one, `skyhop exec` of a no-op, and `skyhop down`.
Targets (issue #3): --help and status <= 0.2 s (SkyPilot: ~1.8 s to start its CLI here),
launch on an existing cluster <= 0.5 s, on a new one <= 2 s.
Runs in a throwaway SKYHOP_HOME; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SKYPILOT_CLI_START_S = 1.8  # issue #2/#3: SkyPilot's CLI start on this kind of machine


def skyhop(*args: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], env=env,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if result.returncode != 0:
        raise SystemExit(f"skyhop {' '.join(args)} failed:\n{result.stderr}")
    return elapsed


def report(label: str, times: list[float], target: float, peer: float | None = None) -> None:
    med = statistics.median(times)
    ratio = f"; {peer / med:.0f}x faster than SkyPilot's CLI start" if peer else ""
    print(f"{label:38s} median {med:6.3f} s  worst {max(times):6.3f} s  "
          f"(target <= {target:g} s{ratio})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="skyhop-bench-")
    env = {**os.environ, "SKYHOP_HOME": home}
    env.pop("SKYHOP_DB_URL", None)
    # As on a user's machine, compiled modules are cached after the first run (some sandboxes
    # set this, which makes every start recompile skyhop's own modules: ~0.1 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    n = args.repeat
    try:
        skyhop("--help", env=env)  # warm the OS file cache
        report("skyhop --help", [skyhop("--help", env=env) for _ in range(n)], 0.2,
               SKYPILOT_CLI_START_S)
        for i in range(3):
            skyhop("launch", "-c", f"bench-{i}", "true", env=env)
        report("skyhop status (3 clusters)", [skyhop("status", env=env) for _ in range(n)],
               0.2, SKYPILOT_CLI_START_S)
        report("launch no-op, existing local cluster",
               [skyhop("launch", "-c", "bench-0", "true", env=env) for _ in range(n)], 0.5)
        report("exec no-op, existing local cluster",
               [skyhop("exec", "bench-0", "true", env=env) for _ in range(n)], 0.5)
        new, down = [], []
        for i in range(n):
            new.append(skyhop("launch", "-c", f"fresh-{i}", "true", env=env))
            down.append(skyhop("down", f"fresh-{i}", "-y", env=env))
        report("launch no-op, new local cluster", new, 2.0)
        report("down, local cluster", down, 2.0)
    finally:
        for i in range(3):
            subprocess.run([sys.executable, "-m", "skyhop.cli.main", "down", f"bench-{i}",
                            "-y"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
