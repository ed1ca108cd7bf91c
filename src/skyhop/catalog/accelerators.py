"""Canonical accelerator names and case-insensitive alias resolution.

Canonical names follow SkyPilot's catalogs (`A100`, `A100-80GB`, `H100`, `tpu-v5p-8`, ...).
A few providers publish other spellings for the same part; `SOURCE_RENAMES` folds them onto
the canonical name when the catalog is built, so one request matches every provider.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from skyhop.errors import UnknownAcceleratorError

# Spellings seen in ../shared/data/catalog (RunPod v5, Fluidstack v9) -> the canonical name
# used by the v8 catalogs for the same part.
SOURCE_RENAMES: dict[str, str] = {
    "A100-80GB-SXM4": "A100-80GB",  # RunPod v5
    "H100-80GB-HBM3": "H100",  # RunPod v5 (SXM)
    "H100-PCIe": "H100",  # RunPod v5
    "H100-NVLINK": "H100",  # Fluidstack v9 (8x H100 SXM with NVLink)
    "RTXA4000": "A4000",  # RunPod v5; Paperspace says A4000
    "RTXA4500": "A4500",
    "RTXA5000": "A5000",
    "RTXA6000": "A6000",  # RunPod v5, Vast; Lambda says A6000
}

# Extra names users type for a canonical part (matched after normalisation).
USER_ALIASES: dict[str, str] = {
    "A100-40GB": "A100",
    "H100-80GB": "H100",
    "H100-SXM": "H100",
    "V100-16GB": "V100",
    "A10G-24GB": "A10G",
    "INF2": "Inferentia2",
    "TRN1": "Trainium",
}

_PREFIXES = ("nvidia", "tesla", "geforce", "amd")


def alias_key(name: str) -> str:
    """Normalise a spelling: case, punctuation and vendor prefixes do not matter."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    for prefix in _PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix) :]
    return key


def canonical_source_name(name: str) -> str:
    """The canonical name for an accelerator name found in a provider's catalog file."""
    return SOURCE_RENAMES.get(name, name)


class AcceleratorNames:
    """Resolves user spellings to the canonical names a catalog knows."""

    def __init__(self, known: Iterable[str]):
        self.known = sorted(set(known))
        self._by_key: dict[str, str] = {}
        for name in self.known:
            self._by_key.setdefault(alias_key(name), name)
        for alias, name in {**SOURCE_RENAMES, **USER_ALIASES}.items():
            if name in self._by_key.values():
                self._by_key.setdefault(alias_key(alias), name)

    def resolve(self, name: str) -> str:
        """Canonical name for `name`; raises UnknownAcceleratorError with suggestions."""
        found = self._by_key.get(alias_key(name))
        if found is not None:
            return found
        raise UnknownAcceleratorError(
            f"unknown accelerator {name!r}",
            hint=self.suggest(name),
        )

    def suggest(self, name: str) -> str:
        lowered = {n.lower(): n for n in self.known}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
        if close:
            return "did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
        return "run `skyhop catalog gpus` to list the accelerators on offer"
