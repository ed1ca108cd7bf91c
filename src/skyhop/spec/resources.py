"""`Resources`: what a task needs and where it may run (SkyPilot's vocabulary, plus a little)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from skyhop.spec.fields import (
    Amount,
    InfraPattern,
    Memory,
    parse_accelerators,
    parse_autostop,
    parse_cpus,
    parse_infra,
    parse_memory,
    parse_ports,
)

# Fields written in a compact form: (types that are already parsed, parser of the written
# form). Parsing accelerators and ports is idempotent, so they are always parsed.
_COMPACT_FIELDS: dict[str, tuple[tuple[type, ...], Callable[[Any], Any]]] = {
    "infra": ((InfraPattern,), parse_infra),
    "accelerators": ((), parse_accelerators),
    "cpus": ((Amount,), parse_cpus),
    "memory": ((Memory,), parse_memory),
    "ports": ((), parse_ports),
}


class SpecModel(BaseModel):
    """Base of the spec models: frozen, unknown fields rejected.

    Built from Python, invalid input raises pydantic's ValidationError (a ValueError);
    files go through `Task.from_dict`, which reports `file:line:col`."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Autostop(SpecModel):
    """Stop (or, with `down`, tear down) the cluster after this many idle minutes; what
    counts as activity is `wait_for` (see `fields.AUTOSTOP_WAIT_FOR`)."""

    idle_minutes: int
    down: bool = False
    wait_for: Literal["jobs_and_ssh", "jobs", "none"] = "jobs_and_ssh"


class Resources(SpecModel):
    """Requirements of one node. Every field is optional; `any_of`/`ordered` give alternatives
    that override the fields set beside them."""

    infra: InfraPattern | None = None
    accelerators: tuple[tuple[str, float], ...] | None = None
    accelerator_args: dict[str, Any] | None = None
    cpus: Amount | None = None
    memory: Memory | None = None
    instance_type: str | None = None
    use_spot: bool = False
    disk_size: int | None = None
    disk_tier: str | None = None
    network_tier: str | None = None
    image_id: str | dict[str, str] | None = None
    ports: tuple[str, ...] | None = None
    labels: dict[str, str] | None = None
    max_hourly_cost: float | None = None
    job_recovery: str | dict[str, Any] | None = None
    autostop: Autostop | None = None
    any_of: tuple[Resources, ...] | None = None
    ordered: tuple[Resources, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold_cloud_region_zone(cls, data: Any) -> Any:
        """The older `cloud/region/zone` fields become one `infra` pattern."""
        if not isinstance(data, dict) or not any(k in data for k in ("cloud", "region", "zone")):
            return data
        data = dict(data)
        parts = [data.pop(k, None) for k in ("cloud", "region", "zone")]
        if data.get("infra") is not None:
            raise ValueError("give either 'infra' or the older 'cloud'/'region'/'zone', not both")
        for part in parts:
            if part is not None and not isinstance(part, str):
                raise ValueError("cloud, region and zone must be strings")
        cloud, region, zone = (p or "*" for p in parts)
        data["infra"] = f"{cloud}/{region}/{zone}"
        return data

    @model_validator(mode="before")
    @classmethod
    def _spot_recovery_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "spot_recovery" in data:  # SkyPilot's older name
            data = dict(data)
            value = data.pop("spot_recovery")
            data.setdefault("job_recovery", value)
        return data

    @field_validator("infra", "accelerators", "cpus", "memory", "ports", mode="before")
    @classmethod
    def _compact_forms(cls, v: Any, info: ValidationInfo) -> Any:
        """Parse the compact string forms; values already parsed pass through."""
        parsed_type, parse = _COMPACT_FIELDS[info.field_name]
        return v if v is None or isinstance(v, parsed_type) else parse(v)

    @field_validator("autostop", mode="before")
    @classmethod
    def _autostop(cls, v: Any) -> Any:
        return v if isinstance(v, Autostop) else parse_autostop(v)

    @field_validator("disk_size", mode="before")
    @classmethod
    def _disk_size(cls, v: Any) -> Any:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise ValueError("disk_size must be a positive whole number of GB")
        return v

    @field_validator("max_hourly_cost", mode="before")
    @classmethod
    def _max_hourly_cost(cls, v: Any) -> Any:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise ValueError("max_hourly_cost must be a positive number of USD per hour")
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): str(val) for k, val in v.items()}
        return v

    @field_validator("any_of", "ordered", mode="before")
    @classmethod
    def _alternatives(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("must be a non-empty list of resource mappings")
        for item in v:
            if isinstance(item, dict) and ("any_of" in item or "ordered" in item):
                raise ValueError("alternatives cannot be nested")
        return tuple(v)

    @model_validator(mode="after")
    def _one_kind_of_alternatives(self) -> Resources:
        if self.any_of is not None and self.ordered is not None:
            raise ValueError("give either 'any_of' or 'ordered', not both")
        return self

    def alternatives(self) -> list[Resources]:
        """The concrete requirement sets this stands for, each with its own fields merged
        over the shared ones; in preference order when `ordered`."""
        options = self.any_of or self.ordered
        if not options:
            return [self]
        return [self.model_copy(update={"any_of": None, "ordered": None,
                                        **{k: getattr(opt, k) for k in opt.model_fields_set}})
                for opt in options]

    @property
    def is_ordered(self) -> bool:
        return self.ordered is not None

    def describe(self) -> str:
        """A short human form: `A100:8, 8+ CPUs, spot, aws/us-*`."""
        parts = []
        if self.accelerators:
            parts.append("|".join(f"{n}:{c:g}" for n, c in self.accelerators))
        if self.instance_type:
            parts.append(self.instance_type)
        if self.cpus:
            parts.append(f"{self.cpus} CPUs")
        if self.memory:
            parts.append(f"{self.memory} GiB")
        if self.use_spot:
            parts.append("spot")
        if self.infra:
            parts.append(str(self.infra))
        return ", ".join(parts) or "any"
