"""One offer: an instance type at a location with its prices. Plain data (no numpy), so
providers can describe their own machines without loading the catalog."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Offer:
    """One instance type at one location, with its on-demand and spot prices (USD/h)."""

    provider: str
    region: str
    zone: str | None
    instance_type: str
    accelerator: str | None
    accelerator_count: float
    vcpus: float
    memory_gib: float
    accelerator_memory_gib: float
    price: float | None
    spot_price: float | None
    burstable: bool
    arch: str
    owned: bool = False  # the user's own machine, not rented
    attached_host: bool = False  # a host VM with GPUs attached (GCP N1): host shape is free

    def hourly(self, spot: bool) -> float | None:
        return self.spot_price if spot else self.price

    @property
    def accelerators(self) -> dict[str, float] | None:
        return {self.accelerator: self.accelerator_count} if self.accelerator else None
