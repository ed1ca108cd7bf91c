"""Observed availability: every provisioning attempt and its outcome, and an estimate per
(provider, zone, instance type, market) that forgets with time.

Two time scales. Spot capacity swings from all to none within hours, but stays put for
hours at a time (Can't Be Late, NSDI'24, section 2), and some zones are far more often
available than others (in its 9-zone V100 traces, from 17% to 90% of the time). So:

* the long-run availability m of a place is the mean of a Beta(1, 1) prior updated with
  every attempt weighted by 0.5 ** (age / 24 h);
* the estimate is the mean of a Beta prior centred on m with strength 2, updated with the
  attempts weighted by 0.5 ** (age / 1 h).

With no information the estimate is 0.5. A place that usually works and just failed once
stays likely (0.9 -> 0.6); one that rarely works and just failed is unlikely (0.2 -> 0.13).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

OK = "ok"
CAPACITY = "capacity"
DEFAULT_HALF_LIFE_S = 3600.0  # short term: is there capacity now
LONG_HALF_LIFE_S = 86400.0  # long run: how often is there capacity here
PRIOR_SUCCESSES, PRIOR_FAILURES = 1.0, 1.0
LONG_RUN_STRENGTH = 2.0


@dataclass(frozen=True)
class Key:
    provider: str
    region: str | None
    zone: str | None
    instance_type: str
    spot: bool

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.region, self.zone) if p)
        return f"{where} {self.instance_type}{' spot' if self.spot else ''}"


@dataclass(frozen=True)
class Attempt:
    at: float
    key: Key
    outcome: str  # OK, or the error kind: capacity, quota, auth, invalidrequest, transient
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    def to_json(self) -> dict:
        return {"at": self.at, **asdict(self.key), "outcome": self.outcome,
                "message": self.message}


@dataclass(frozen=True)
class Estimate:
    key: Key
    availability: float  # 0..1
    weight: float  # decayed number of observations behind it
    attempts: int
    last_outcome: str
    last_at: float

    def to_json(self) -> dict:
        return {**asdict(self.key), "availability": round(self.availability, 4),
                "weight": round(self.weight, 4), "attempts": self.attempts,
                "last_outcome": self.last_outcome, "last_at": self.last_at}


class Tracker:
    """In-memory attempts and estimates; `TrackerStore` persists them in the state DB."""

    def __init__(self, attempts: Iterable[Attempt] = (),
                 half_life_s: float = DEFAULT_HALF_LIFE_S,
                 long_half_life_s: float = LONG_HALF_LIFE_S):
        self.half_life_s = half_life_s
        self.long_half_life_s = long_half_life_s
        self._by_key: dict[Key, list[Attempt]] = defaultdict(list)
        for attempt in attempts:
            self.record(attempt)

    def record(self, attempt: Attempt) -> None:
        # Only capacity says anything about availability: throttling, quota or credential
        # errors are about the request or the account, not about the place.
        if attempt.ok or attempt.outcome == CAPACITY:
            self._by_key[attempt.key].append(attempt)

    def estimate(self, key: Key, now: float) -> Estimate | None:
        attempts = self._by_key.get(key)
        if not attempts:
            return None
        short_ok = short_n = long_ok = long_n = 0.0
        for a in attempts:
            age = max(0.0, now - a.at)
            short = math.pow(0.5, age / self.half_life_s)
            long = math.pow(0.5, age / self.long_half_life_s)
            short_n += short
            long_n += long
            if a.ok:
                short_ok += short
                long_ok += long
        long_run = (PRIOR_SUCCESSES + long_ok) / (PRIOR_SUCCESSES + PRIOR_FAILURES + long_n)
        p = (LONG_RUN_STRENGTH * long_run + short_ok) / (LONG_RUN_STRENGTH + short_n)
        successes, failures = short_ok, short_n - short_ok
        last = max(attempts, key=lambda a: a.at)
        return Estimate(key, p, successes + failures, len(attempts), last.outcome, last.at)

    def snapshot(self, now: float) -> dict[Key, float]:
        """Availability per observed key (unobserved keys are 0.5)."""
        out = {}
        for key in self._by_key:
            estimate = self.estimate(key, now)
            if estimate is not None:
                out[key] = estimate.availability
        return out

    def estimates(self, now: float) -> list[Estimate]:
        found = [self.estimate(k, now) for k in self._by_key]
        return sorted((e for e in found if e is not None),
                      key=lambda e: (e.key.provider, e.key.zone or "", e.key.instance_type))
