"""Offers for trace zones, priced from the real catalog.

The traces name AWS zones (`us-east-1a`); the catalog prices spot per AZ *ID*
(`use1-az4`), and which name is which ID differs per AWS account. Zones are paired with the
region's AZ IDs in sorted order: an arbitrary but fixed pairing that keeps the real spread of
spot prices within each region (documented wherever results are reported).
"""

from __future__ import annotations

from skyhop.catalog.catalog import Catalog
from skyhop.catalog.offer import Offer
from skyhop.sim.traces import Trace


def trace_offers(catalog: Catalog, traces: dict[str, Trace], instance_type: str,
                 provider: str = "aws") -> list[Offer]:
    """One offer per trace zone with the catalog's prices for `instance_type` there."""
    type_index = catalog.instance_types.index(instance_type)
    rows = [int(r) for r in (catalog.instance_type == type_index).nonzero()[0]]
    by_region: dict[str, list[Offer]] = {}
    for r in rows:
        offer = catalog.offer(r)
        if offer.provider == provider and offer.zone:
            by_region.setdefault(offer.region, []).append(offer)
    out = []
    zones_by_region: dict[str, list[str]] = {}
    for zone in sorted(traces):
        zones_by_region.setdefault(zone[:-1], []).append(zone)  # us-east-1a -> us-east-1
    for region, zones in zones_by_region.items():
        priced = sorted(by_region.get(region, []), key=lambda o: o.zone or "")
        priced = [o for o in priced if o.spot_price is not None]
        if not priced:
            raise ValueError(f"the catalog has no spot price for {instance_type} in {region}")
        for i, zone in enumerate(zones):
            src = priced[i % len(priced)]
            out.append(Offer(provider, region, zone, instance_type, src.accelerator,
                             src.accelerator_count, src.vcpus, src.memory_gib,
                             src.accelerator_memory_gib, src.price, src.spot_price,
                             src.burstable, src.arch))
    return out
