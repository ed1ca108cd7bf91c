"""Parsers for the compact value forms of the task language (`A100:8`, `8+`, `aws/us-*`...).

Each parser accepts what SkyPilot accepts (and a little more), returns a normalised value,
and raises ValueError with a message that says what form was expected.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from dataclasses import dataclass
from typing import Any

# Provider names the task language knows, with the aliases users write.
PROVIDERS = ("aws", "gcp", "azure", "lambda", "vast", "nebius", "hyperbolic", "fluidstack",
             "do", "paperspace", "runpod", "kubernetes", "ssh", "local")
PROVIDER_ALIASES = {"k8s": "kubernetes", "lambdalabs": "lambda", "digitalocean": "do",
                    "amazon": "aws", "google": "gcp"}


def provider_name(text: str) -> str:
    """Canonical provider name (case-insensitive, aliases resolved) or ValueError."""
    name = text.strip().lower()
    name = PROVIDER_ALIASES.get(name, name)
    if name in PROVIDERS:
        return name
    close = difflib.get_close_matches(name, PROVIDERS + tuple(PROVIDER_ALIASES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(PROVIDERS)}"
    raise ValueError(f"unknown provider {text!r}{hint}")


@dataclass(frozen=True, slots=True)
class InfraPattern:
    """`provider[/region[/zone]]`, each part a glob (`*` matches anything)."""

    provider: str = "*"
    region: str = "*"
    zone: str = "*"

    def __str__(self) -> str:
        parts = [self.provider, self.region, self.zone]
        while len(parts) > 1 and parts[-1] == "*":
            parts.pop()
        return "/".join(parts)

    def matches(self, provider: str, region: str | None = None, zone: str | None = None) -> bool:
        """True when the location fits; a None region/zone matches only `*` there."""
        return (_glob(self.provider, provider) and _glob(self.region, region)
                and _glob(self.zone, zone))

    def admits_provider(self, provider: str) -> bool:
        return _glob(self.provider, provider)


def _glob(pattern: str, value: str | None) -> bool:
    if pattern == "*":
        return True
    if value is None:
        return False
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


def parse_infra(text: Any) -> InfraPattern:
    """`aws`, `aws/us-east-1`, `gcp/*/us-central1-a`, `k8s/my-context`, `*/eu-*`."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("infra must be a string like 'aws', 'aws/us-east-1' or "
                         "'gcp/*/us-central1-a'")
    parts = [p.strip() for p in text.strip().split("/")]
    # Kubernetes contexts and SSH pools may themselves contain '/'; keep the rest whole.
    if len(parts) > 3 and parts[0].lower() not in ("k8s", "kubernetes", "ssh"):
        raise ValueError(f"infra {text!r} has too many parts; use provider/region/zone")
    if len(parts) > 2 and parts[0].lower() in ("k8s", "kubernetes", "ssh"):
        parts = [parts[0], "/".join(parts[1:])]
    if any(not p for p in parts):
        raise ValueError(f"infra {text!r} has an empty part")
    provider = parts[0] if parts[0] == "*" else provider_name(parts[0])
    return InfraPattern(provider, *parts[1:])


@dataclass(frozen=True, slots=True)
class Amount:
    """A numeric requirement: exactly `value`, or at least it when `or_more`."""

    value: float
    or_more: bool = False

    def __str__(self) -> str:
        return f"{self.value:g}{'+' if self.or_more else ''}"

    def admits(self, have: float) -> bool:
        return have >= self.value if self.or_more else have == self.value


_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(\+?)\s*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(x|gb|gib|g)?\s*(\+?)\s*$", re.IGNORECASE)


def parse_cpus(value: Any) -> Amount:
    """`8`, `8+`, `0.5`: vCPUs, exact or at least."""
    if isinstance(value, bool):
        raise ValueError("cpus must be a number like 8 or a string like '8+'")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("cpus must be positive")
        return Amount(float(value))
    m = _AMOUNT.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"cpus {value!r} is not a count; write e.g. 8 or '8+'")
    return Amount(float(m.group(1)), bool(m.group(2)))


@dataclass(frozen=True, slots=True)
class Memory:
    """Memory in GiB, or a multiple of the instance's vCPUs (`4x`)."""

    amount: Amount
    per_cpu: bool = False

    def __str__(self) -> str:
        ratio = "x" if self.per_cpu else ""
        return f"{self.amount.value:g}{ratio}{'+' if self.amount.or_more else ''}"


def parse_memory(value: Any) -> Memory:
    """`32`, `32+`, `32GB+`, `4x` (at least 4 GiB per vCPU)."""
    if isinstance(value, bool):
        raise ValueError("memory must be a number of GiB like 32 or a string like '32+' or '4x'")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("memory must be positive")
        return Memory(Amount(float(value)))
    m = _MEMORY.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"memory {value!r} is not understood; write e.g. 32, '32+' or '4x'")
    per_cpu = (m.group(2) or "").lower() == "x"
    # A ratio is a lower bound: '4x' means at least 4 GiB per vCPU.
    return Memory(Amount(float(m.group(1)), bool(m.group(3)) or per_cpu), per_cpu)


def _accelerator_item(text: str) -> tuple[str, float]:
    name, sep, count = text.strip().partition(":")
    if not name.strip():
        raise ValueError(f"accelerator {text!r} has no name; write e.g. 'A100:8'")
    if not sep:
        return name.strip(), 1.0
    try:
        n = float(count)
    except ValueError:
        raise ValueError(f"accelerator count in {text!r} is not a number; write e.g. "
                         "'A100:8'") from None
    if n <= 0:
        raise ValueError(f"accelerator count in {text!r} must be positive")
    return name.strip(), n


def parse_accelerators(value: Any) -> tuple[tuple[str, float], ...]:
    """`A100`, `A100:8`, `{A100: 8, H100: 8}` or `[A100:8, H100:8]`: alternatives, any of."""
    if isinstance(value, str):
        items = [_accelerator_item(v) for v in value.split(",")] if "," in value else [
            _accelerator_item(value)]
    elif isinstance(value, dict):
        items = []
        for name, count in value.items():
            if count is None:
                count = 1
            if isinstance(count, bool) or not isinstance(count, (int, float)) or count <= 0:
                raise ValueError(f"accelerator count for {name!r} must be a positive number")
            items.append((str(name).strip(), float(count)))
    elif isinstance(value, (list, tuple, set)):
        items = []
        for v in value:
            if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
                v = f"{v[0]}:{v[1]}"  # an already-parsed (name, count) pair
            if not isinstance(v, str):
                raise ValueError("each accelerator in a list must be a string like 'A100:8'")
            items.append(_accelerator_item(v))
    else:
        raise ValueError("accelerators must be 'NAME[:COUNT]', a mapping {NAME: COUNT} or a "
                         "list of 'NAME:COUNT'")
    if not items:
        raise ValueError("accelerators is empty")
    return tuple(dict.fromkeys(items))


def parse_ports(value: Any) -> tuple[str, ...]:
    """`8080`, `'10000-10010'` or a list of those."""
    values = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in values:
        text = str(v).strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
        if isinstance(v, bool) or not m:
            raise ValueError(f"port {v!r} is not a port or range like 8080 or '10000-10010'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not (1 <= lo <= hi <= 65535):
            raise ValueError(f"port {text!r} is out of range 1-65535")
        out.append(text)
    return tuple(out)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_HOURS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0, "": 1.0}


def parse_hours(value: Any, *, default_unit: str = "h") -> float:
    """A duration in hours: `3`, `2.5`, `90m`, `36h`, `2d`."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number or a string like '90m', '36h', '2d'")
    if isinstance(value, (int, float)):
        hours = float(value) * _UNIT_HOURS[default_unit]
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"duration {value!r} is not understood; write e.g. 3, '90m', "
                             "'36h' or '2d'")
        hours = float(m.group(1)) * _UNIT_HOURS[(m.group(2) or default_unit).lower()]
    if hours <= 0:
        raise ValueError("a duration must be positive")
    return hours


# SkyPilot's default for `autostop: true`:
# https://docs.skypilot.co/en/latest/reference/auto-stop.html
DEFAULT_AUTOSTOP_MINUTES = 5
# What resets the idle timer, as SkyPilot's `wait_for`: jobs and interactive SSH sessions,
# jobs only, or nothing (stop that long after autostop is set).
AUTOSTOP_WAIT_FOR = ("jobs_and_ssh", "jobs", "none")


def check_wait_for(value: Any) -> str:
    """`value` if it is one of AUTOSTOP_WAIT_FOR, else ValueError saying which are."""
    if value not in AUTOSTOP_WAIT_FOR:
        raise ValueError(f"autostop wait_for {value!r} is not one of "
                         f"{', '.join(AUTOSTOP_WAIT_FOR)}")
    return value


def parse_autostop(value: Any) -> dict[str, Any] | None:
    """SkyPilot's forms: `true` (5 idle minutes), `false`, `10` or `'10m'`/`'1h'` (idle
    time), or `{idle_minutes: 10, down: true, wait_for: jobs}`. None when off."""
    if value is None or value is False:
        return None
    if value is True:
        return {"idle_minutes": DEFAULT_AUTOSTOP_MINUTES}
    if not isinstance(value, dict):
        return {"idle_minutes": _idle_minutes(value)}
    unknown = sorted(set(value) - {"idle_minutes", "down", "wait_for"})
    if {"hook", "hook_timeout"} & set(unknown):
        raise ValueError("autostop hooks are not supported yet: end `run` with that step "
                         "instead")
    if unknown:
        raise ValueError(f"unknown autostop field(s) {', '.join(unknown)}; expected "
                         "idle_minutes, down, wait_for")
    wait_for = check_wait_for(value.get("wait_for", "jobs_and_ssh"))
    down = value.get("down", False)
    if not isinstance(down, bool):
        raise ValueError("autostop down must be true or false")
    return {"idle_minutes": _idle_minutes(value.get("idle_minutes",
                                                    DEFAULT_AUTOSTOP_MINUTES)),
            "down": down, "wait_for": wait_for}


def _idle_minutes(value: Any) -> int:
    """Whole idle minutes from `10` (minutes), `'10m'`, `'1h'`, `'0'`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minutes = float(value)
    elif isinstance(value, str) and value.strip() in ("0", "0m"):
        minutes = 0.0
    else:
        try:
            minutes = parse_hours(value, default_unit="m") * 60
        except ValueError:
            raise ValueError(f"autostop {value!r} is not an idle time; write e.g. true, 10, "
                             "'10m' or '1h'") from None
    if minutes < 0:
        raise ValueError("autostop idle minutes must be >= 0")
    return math.ceil(minutes - 1e-9)
