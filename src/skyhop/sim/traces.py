"""Real spot availability traces (Can't Be Late, NSDI'24; shared/data/spot-traces, README
section 2.1): `{"metadata": {"gap_seconds": G}, "data": [n0, n1, ...]}` where data[i] is the
number of instances available during [i*G, (i+1)*G)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Trace:
    name: str  # the zone, e.g. "us-east-1a"
    gap_s: float
    available: np.ndarray  # instances available per tick

    @property
    def duration_s(self) -> float:
        return len(self.available) * self.gap_s

    def at(self, t_s: float) -> int:
        """Instances available at `t_s` seconds from the trace start (clamped to its span)."""
        i = int(t_s // self.gap_s)
        return int(self.available[min(max(i, 0), len(self.available) - 1)])


def load_trace(path: Path) -> Trace:
    data = json.loads(Path(path).read_text())
    zone = Path(path).stem.split("_", 1)[0]
    return Trace(zone, float(data["metadata"]["gap_seconds"]),
                 np.asarray(data["data"], dtype=np.int32))


def load_traces(directory: Path) -> dict[str, Trace]:
    """Every trace in a folder, by zone (files are named `<zone>_<type>_<n>.json`)."""
    traces = [load_trace(p) for p in sorted(Path(directory).glob("*.json"))]
    return {t.name: t for t in traces}
