"""The shipped catalog's on-disk layout, shared by the builder and the loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"
OFFERS_FILE = "offers.npy.z"  # a zlib-compressed .npy of OFFER_DTYPE rows
NAMES_FILE = "names.json"  # the string tables the integer columns index into

# Bits of the `flags` column.
FLAG_BURSTABLE = 1  # shared-core / burstable CPU: only chosen when named
FLAG_ATTACHED_GPU = 2  # a host VM with GPUs attached (GCP N1): the host shape is free
FLAG_ARM64 = 4  # Arm CPU: only chosen when named (x86 images and binaries are the norm)
FLAG_OWNED = 8  # the user's own machine (local, SSH pools): cloud shape defaults do not apply

OFFER_DTYPE = np.dtype(
    [
        ("provider", "u1"),
        ("region", "u2"),  # index into names["regions"]: a (provider, region) pair
        ("zone", "i4"),  # index into names["zones"], -1 for providers without zones
        ("instance_type", "u4"),
        ("accelerator", "i2"),  # -1 for none
        ("accelerator_count", "f4"),
        ("vcpus", "f4"),  # NaN when unknown (TPU VMs)
        ("memory_gib", "f4"),
        ("accelerator_memory_gib", "f4"),  # per accelerator
        ("price", "f8"),  # USD/h on demand, NaN when not sold on demand
        ("spot_price", "f8"),  # USD/h, NaN when there is no spot offer
        ("flags", "u1"),
    ]
)
