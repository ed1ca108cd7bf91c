"""The catalog in memory: one numpy column per field, queried with vectorised masks."""

from __future__ import annotations

import functools
import io
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skyhop.catalog.accelerators import AcceleratorNames
from skyhop.catalog.offer import Offer
from skyhop.catalog.schema import (
    DATA_DIR,
    FLAG_ARM64,
    FLAG_ATTACHED_GPU,
    FLAG_BURSTABLE,
    FLAG_OWNED,
    NAMES_FILE,
    OFFER_DTYPE,
    OFFERS_FILE,
)


class Catalog:
    """All offers of every provider. Columns are contiguous numpy arrays of equal length."""

    COLUMNS = OFFER_DTYPE.names

    def __init__(self, offers: np.ndarray, names: dict):
        self.providers: list[str] = list(names["providers"])
        self.region_provider = np.array([p for p, _ in names["regions"]], dtype=np.int32)
        self.region_names: list[str] = [r for _, r in names["regions"]]
        self.zones: list[str] = list(names["zones"])
        self.instance_types: list[str] = list(names["instance_types"])
        self.accelerators: list[str] = list(names["accelerators"])
        self._names = names
        self.offers = offers
        for column in self.COLUMNS:
            setattr(self, column, np.ascontiguousarray(offers[column]))
        self.provider: np.ndarray
        self.region: np.ndarray
        self.zone: np.ndarray
        self.instance_type: np.ndarray
        self.accelerator: np.ndarray
        self.accelerator_count: np.ndarray
        self.vcpus: np.ndarray
        self.memory_gib: np.ndarray
        self.accelerator_memory_gib: np.ndarray
        self.price: np.ndarray
        self.spot_price: np.ndarray
        self.flags: np.ndarray

    def __len__(self) -> int:
        return len(self.offers)

    @functools.cached_property
    def accelerator_names(self) -> AcceleratorNames:
        return AcceleratorNames(self.accelerators)

    def region_label(self, region: int) -> str:
        return f"{self.providers[self.region_provider[region]]}/{self.region_names[region]}"

    def offer(self, i: int) -> Offer:
        row = self.offers[i]
        acc = int(row["accelerator"])
        price, spot = float(row["price"]), float(row["spot_price"])
        return Offer(
            provider=self.providers[row["provider"]],
            region=self.region_names[row["region"]],
            zone=self.zones[row["zone"]] if row["zone"] >= 0 else None,
            instance_type=self.instance_types[row["instance_type"]],
            accelerator=self.accelerators[acc] if acc >= 0 else None,
            accelerator_count=float(row["accelerator_count"]),
            vcpus=float(row["vcpus"]),
            memory_gib=float(row["memory_gib"]),
            accelerator_memory_gib=float(row["accelerator_memory_gib"]),
            price=None if math.isnan(price) else price,
            spot_price=None if math.isnan(spot) else spot,
            burstable=bool(row["flags"] & FLAG_BURSTABLE),
            arch="arm64" if row["flags"] & FLAG_ARM64 else "x86_64",
            owned=bool(row["flags"] & FLAG_OWNED),
            attached_host=bool(row["flags"] & FLAG_ATTACHED_GPU),
        )

    def restrict(self, providers: Sequence[str]) -> Catalog:
        """The same catalog with only these providers' offers (same string tables)."""
        keep = np.isin(self.provider, [self.providers.index(p) for p in providers
                                       if p in self.providers])
        return Catalog(self.offers[keep], self._names)

    @classmethod
    def from_offers(cls, offers: Sequence[Offer]) -> Catalog:
        """Build a small catalog from Offer objects (tests, simulations, own machines)."""
        from skyhop.catalog.build import to_arrays

        offers_array, names = to_arrays(list(offers))
        return cls(offers_array, names)

    def merged(self, extra: Sequence[Offer]) -> Catalog:
        """This catalog plus `extra` offers (e.g. the local machine), string tables joined."""
        if not extra:
            return self
        other = Catalog.from_offers(extra)
        names: dict[str, list] = {}
        remaps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key in ("providers", "zones", "instance_types", "accelerators"):
            mine, theirs = list(self._names[key]), list(other._names[key])
            joined = mine + [v for v in theirs if v not in set(mine)]
            index = {v: i for i, v in enumerate(joined)}
            names[key] = joined
            remaps[key] = (np.arange(len(mine)), np.array([index[v] for v in theirs],
                                                          dtype=np.int64))
        p_map = remaps["providers"][1]
        mine_regions = [tuple(r) for r in self._names["regions"]]
        their_regions = [(int(p_map[p]), r) for p, r in other._names["regions"]]
        joined_regions = mine_regions + [r for r in their_regions if r not in set(mine_regions)]
        region_index = {r: i for i, r in enumerate(joined_regions)}
        names["regions"] = [list(r) for r in joined_regions]
        added = other.offers.copy()
        added["provider"] = p_map[added["provider"]]
        added["region"] = [region_index[their_regions[r]] for r in added["region"]]
        for column, key in (("zone", "zones"), ("instance_type", "instance_types"),
                            ("accelerator", "accelerators")):
            values = added[column].astype(np.int64)
            mapped = np.where(values >= 0, remaps[key][1][np.maximum(values, 0)]
                              if len(remaps[key][1]) else -1, -1)
            added[column] = mapped
        return Catalog(np.concatenate([self.offers, added]), names)


def read_catalog(directory: Path = DATA_DIR) -> Catalog:
    raw = zlib.decompress((directory / OFFERS_FILE).read_bytes())
    offers = np.load(io.BytesIO(raw), allow_pickle=False)
    names = json.loads((directory / NAMES_FILE).read_text())
    return Catalog(offers, names)


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The shipped catalog (loaded once per process)."""
    return read_catalog()
