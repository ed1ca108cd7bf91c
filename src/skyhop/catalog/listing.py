"""Rows for `skyhop catalog gpus` and `skyhop catalog offers` (plain dicts, JSON-ready)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skyhop.catalog.catalog import Catalog, load_catalog
from skyhop.catalog.query import explain_empty, select
from skyhop.spec.resources import Resources


def _price(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 5)


def _provider_mask(catalog: Catalog, providers: Sequence[str]) -> np.ndarray:
    if not providers:
        return np.ones(len(catalog), dtype=bool)
    wanted = [catalog.providers.index(p) for p in providers if p in catalog.providers]
    return np.isin(catalog.provider, wanted)


def gpu_summary(providers: Sequence[str] = (), catalog: Catalog | None = None) -> list[dict]:
    """One row per accelerator: counts on offer, providers, cheapest price per accelerator."""
    c = catalog or load_catalog()
    mask = _provider_mask(c, providers) & (c.accelerator >= 0)
    rows = []
    for acc in np.unique(c.accelerator[mask]):
        m = mask & (c.accelerator == acc)
        per_unit = c.price[m] / c.accelerator_count[m]
        per_unit_spot = c.spot_price[m] / c.accelerator_count[m]
        rows.append({
            "accelerator": c.accelerators[acc],
            "counts": sorted({float(x) for x in c.accelerator_count[m]}),
            "providers": sorted({c.providers[p] for p in np.unique(c.provider[m])}),
            "min_price_per_accelerator": _price(np.nanmin(per_unit)) if
            not np.isnan(per_unit).all() else None,
            "min_spot_price_per_accelerator": _price(np.nanmin(per_unit_spot)) if
            not np.isnan(per_unit_spot).all() else None,
        })
    return rows


def gpu_rows(name: str | None, providers: Sequence[str] = (), all_regions: bool = False,
             catalog: Catalog | None = None) -> list[dict]:
    """Per (accelerator, count, provider[, region]): the cheapest on-demand offer and the
    cheapest spot price."""
    c = catalog or load_catalog()
    mask = _provider_mask(c, providers) & (c.accelerator >= 0)
    if name is not None:
        mask &= c.accelerator == c.accelerators.index(c.accelerator_names.resolve(name))
    idx = np.nonzero(mask)[0]
    group_region = c.region[idx] if all_regions else np.zeros(len(idx), dtype=np.int64)
    keys = np.stack([c.accelerator[idx].astype(np.int64),
                     (c.accelerator_count[idx] * 1000).astype(np.int64),
                     c.provider[idx].astype(np.int64), group_region.astype(np.int64)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    rows = []
    for g in range(len(uniq)):
        members = idx[inverse == g]
        price, spot = c.price[members], c.spot_price[members]
        best = members[np.nanargmin(price)] if not np.isnan(price).all() else None
        best_spot = members[np.nanargmin(spot)] if not np.isnan(spot).all() else None
        ref = c.offer(int(best if best is not None else best_spot))
        rows.append({
            "accelerator": ref.accelerator, "count": ref.accelerator_count,
            "provider": ref.provider, "instance_type": ref.instance_type,
            "vcpus": _price(ref.vcpus), "memory_gib": _price(ref.memory_gib),
            "accelerator_memory_gib": _price(ref.accelerator_memory_gib),
            "price": _price(c.price[best]) if best is not None else None,
            "region": c.offer(int(best)).region if best is not None else None,
            "spot_price": _price(c.spot_price[best_spot]) if best_spot is not None else None,
            "spot_region": c.offer(int(best_spot)).region if best_spot is not None else None,
        })
    rows.sort(key=lambda r: (r["accelerator"], r["count"],
                             r["price"] if r["price"] is not None else float("inf")))
    return rows


def offer_rows(resources: Resources, limit: int | None = None,
               catalog: Catalog | None = None) -> list[dict]:
    """Offers meeting `resources`, cheapest first."""
    c = catalog or load_catalog()
    selection = select(c, resources)
    if not len(selection):
        raise explain_empty(c, selection, "catalog")
    order = np.lexsort((selection.rows, selection.hourly))
    if limit:
        order = order[:limit]
    out = []
    for k in order:
        o = c.offer(int(selection.rows[k]))
        out.append({
            "provider": o.provider, "region": o.region, "zone": o.zone,
            "instance_type": o.instance_type, "accelerators": o.accelerators,
            "vcpus": _price(o.vcpus), "memory_gib": _price(o.memory_gib),
            "use_spot": selection.use_spot, "price": _price(selection.hourly[k]),
        })
    return out
