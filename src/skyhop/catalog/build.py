"""Build the shipped catalog from the real public catalogs in `shared/data/catalog/`.

Run `python scripts/build_catalog.py [DATA_DIR]`. The inputs are SkyPilot-format CSVs
(read `shared/data/README.md` section 1); the output is two files in `catalog/data/`:

* `offers.npy.z`: one structured numpy array in .npy form, zlib-compressed (4.5 MB -> 0.9 MB
  in git; decompressing costs ~10 ms), one row per (instance type, location) offer;
* `names.json`: the string tables the integer columns index into.

Provider quirks handled here, once, so the runtime never sees them:
* GCP prices GPU VMs as a host row plus an accelerator row (empty `InstanceType`); they are
  joined into whole-VM offers. A2/A3/A4/G2 hosts come with fixed GPUs; T4/V100/P100/P4/K80
  attach to any N1 host within GCP's per-GPU vCPU and memory limits. TPU rows stand alone.
* Azure rows with an unquoted `V1,V2` generation have an extra field (ignored: we read by
  header position and the generation is the last column).
* AWS zones are AZ IDs (`use1-az4`), kept as they are; the AWS provider maps them to names.
* A spot price of 0 (Vast) or empty means no spot offer; an empty price means not sold on demand.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import re
import sys
import zlib
from pathlib import Path

import numpy as np

from skyhop.catalog.accelerators import canonical_source_name
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

OUTPUT_DIR = DATA_DIR

# (provider, path under the data dir). Every provider in shared/data/catalog is included,
# each from the newest schema folder available for it (shared/data/README.md section 1.3).
SOURCES: list[tuple[str, str]] = [
    ("aws", "v8/aws/vms_subset.csv"),
    ("aws", "v8/aws/vms_p-family_subset.csv"),
    ("gcp", "v8/gcp/vms.csv"),
    ("azure", "v8/azure/vms.csv"),
    ("lambda", "v8/lambda/vms.csv"),
    ("vast", "v8/vast/vms.csv"),
    ("nebius", "v8/nebius/vms.csv"),
    ("hyperbolic", "v8/hyperbolic/vms.csv"),
    ("fluidstack", "v9/fluidstack/vms.csv"),
    ("do", "v6/do/vms.csv"),
    ("paperspace", "v6/paperspace/vms.csv"),
    ("runpod", "v5/runpod/vms.csv"),
]

# GCP: accelerators that only come on a fixed host type (acc -> count -> host types).
# Source: https://cloud.google.com/compute/docs/gpus (A2, A3, A4 and G2 machine series).
GCP_FIXED_HOSTS: dict[str, dict[int, list[str]]] = {
    "A100": {1: ["a2-highgpu-1g"], 2: ["a2-highgpu-2g"], 4: ["a2-highgpu-4g"],
             8: ["a2-highgpu-8g"], 16: ["a2-megagpu-16g"]},
    "A100-80GB": {1: ["a2-ultragpu-1g"], 2: ["a2-ultragpu-2g"], 4: ["a2-ultragpu-4g"],
                  8: ["a2-ultragpu-8g"]},
    "L4": {1: ["g2-standard-4", "g2-standard-8", "g2-standard-12", "g2-standard-16",
               "g2-standard-32"], 2: ["g2-standard-24"], 4: ["g2-standard-48"],
           8: ["g2-standard-96"]},
    "H100": {1: ["a3-highgpu-1g"], 2: ["a3-highgpu-2g"], 4: ["a3-highgpu-4g"],
             8: ["a3-highgpu-8g", "a3-edgegpu-8g"]},
    "H100-MEGA": {8: ["a3-megagpu-8g"]},
    "H200": {8: ["a3-ultragpu-8g"]},
    "B200": {8: ["a4-highgpu-8g"]},
}
# GCP: GPUs attached to N1 hosts, count -> (max vCPUs, max memory GB) of the host.
# Source: https://cloud.google.com/compute/docs/gpus ("N1 general-purpose machine types").
GCP_N1_LIMITS: dict[str, dict[int, tuple[int, int]]] = {
    "K80": {1: (8, 52), 2: (16, 104), 4: (32, 208), 8: (64, 208)},
    "V100": {1: (12, 78), 2: (24, 156), 4: (48, 312), 8: (96, 624)},
    "T4": {1: (48, 312), 2: (48, 312), 4: (96, 624)},
    "P4": {1: (24, 156), 2: (48, 312), 4: (96, 624)},
    "P100": {1: (16, 104), 2: (32, 208), 4: (96, 624)},
}
# Host VM types that cannot run without their accelerators (GPU hosts, TPU hosts).
_GCP_HOST_ONLY = re.compile(r"^(a2|a3|a4|g2)-|^n\d+d?-\d+-\d+")
# Shared-core / burstable families (never chosen unless named).
# AWS T: https://aws.amazon.com/ec2/instance-types/t3/ ; Azure B: https://learn.microsoft.com/azure/virtual-machines/sizes/general-purpose/b-family
# GCP shared-core: https://cloud.google.com/compute/docs/general-purpose-machines#sharedcore
# DigitalOcean Basic (s-*) droplets use shared vCPUs: https://docs.digitalocean.com/products/droplets/concepts/choosing-a-plan/
_BURSTABLE = {
    "aws": re.compile(r"^t\d"),
    "azure": re.compile(r"^Standard_B"),
    "gcp": re.compile(r"^(f1-|g1-|e2-(micro|small|medium))"),
    "do": re.compile(r"^s-"),
}


def _num(text: str | None) -> float:
    text = (text or "").strip()
    return float(text) if text else math.nan


def _spot(text: str | None) -> float:
    value = _num(text)
    return value if value > 0 else math.nan  # Vast publishes 0.00 for "no spot price"


def _price(value: float) -> float | None:
    return None if math.isnan(value) else value


def _accelerator_memory_gib(gpu_info: str, name: str, metadata: dict[str, float]) -> float:
    """Per-accelerator memory from GpuInfo (a Python literal), else the common metadata."""
    text = (gpu_info or "").strip()
    if text.startswith("{"):
        try:
            info = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            info = {}
        gpus = info.get("Gpus") or info.get("gpus") or []
        if gpus:
            mem = gpus[0].get("MemoryInfo") or gpus[0].get("memoryInfo") or {}
            mib = mem.get("SizeInMiB") or mem.get("sizeInMiB")
            if mib:
                return float(mib) / 1024.0
    return metadata.get(name, math.nan)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        # zip() drops the extra field of Azure's unquoted "V1,V2" generation (last column).
        return [dict(zip(header, fields, strict=False)) for fields in reader if fields]


# Arm CPUs. AWS: the catalog's Arch column. GCP Tau T2A and Axion C4A:
# https://cloud.google.com/compute/docs/instances/arm-on-compute ; Azure: a 'p' among the
# size's feature letters (Standard_D8pls_v5): https://learn.microsoft.com/azure/virtual-machines/vm-naming-conventions
_ARM = {
    "gcp": re.compile(r"^(t2a|c4a)-"),
    "azure": re.compile(r"^Standard_[A-Z]+\d+[a-z]*p[a-z]*_v\d"),
}


def _traits(provider: str, instance_type: str, arch: str = "") -> dict[str, object]:
    """Whether the type is burstable, and its CPU architecture."""
    burstable = _BURSTABLE.get(provider)
    arm = _ARM.get(provider)
    return {"burstable": bool(burstable is not None and burstable.search(instance_type)),
            "arch": "arm64" if arch == "arm64" or (arm is not None and arm.search(
                instance_type)) else "x86_64"}


def _generic_rows(provider: str, records: list[dict[str, str]],
                  metadata: dict[str, float]) -> list[Offer]:
    rows = []
    for r in records:
        name = canonical_source_name(r.get("AcceleratorName", "").strip()) or None
        count = _num(r.get("AcceleratorCount"))
        if name is None or not count > 0:
            name, count = None, 0.0
        rows.append(Offer(
            provider=provider,
            region=r["Region"].strip(),
            zone=(r.get("AvailabilityZone") or "").strip() or None,
            instance_type=r["InstanceType"].strip(),
            accelerator=name,
            accelerator_count=count,
            vcpus=_num(r.get("vCPUs")),
            memory_gib=_num(r.get("MemoryGiB")),
            accelerator_memory_gib=(_accelerator_memory_gib(r.get("GpuInfo", ""), name, metadata)
                                    if name else math.nan),
            price=_price(_num(r.get("Price"))),
            spot_price=_price(_spot(r.get("SpotPrice"))),
            **_traits(provider, r["InstanceType"].strip(), (r.get("Arch") or "").strip()),
        ))
    return rows


def _sum(a: float, b: float) -> float:
    return a + b if not (math.isnan(a) or math.isnan(b)) else math.nan


def _gcp_rows(records: list[dict[str, str]], metadata: dict[str, float]) -> list[Offer]:
    """Join GCP host rows and accelerator rows into whole-VM offers."""
    hosts: dict[str, dict[str, dict[str, str]]] = {}  # zone -> instance type -> record
    rows: list[Offer] = []
    accelerator_records = []
    for r in records:
        itype = r["InstanceType"].strip()
        if not itype:
            accelerator_records.append(r)
            continue
        hosts.setdefault(r["AvailabilityZone"], {})[itype] = r
        if not _GCP_HOST_ONLY.search(itype):
            rows.extend(_generic_rows("gcp", [r], metadata))

    for acc in accelerator_records:
        name = canonical_source_name(acc["AcceleratorName"].strip())
        count = int(float(acc["AcceleratorCount"]))
        zone_hosts = hosts.get(acc["AvailabilityZone"], {})
        if name.startswith("tpu-"):
            host_types: list[str] = ["TPU-VM"]
        elif name in GCP_FIXED_HOSTS:
            host_types = [h for h in GCP_FIXED_HOSTS[name].get(count, []) if h in zone_hosts]
        elif name in GCP_N1_LIMITS and count in GCP_N1_LIMITS[name]:
            max_cpus, max_mem = GCP_N1_LIMITS[name][count]
            host_types = [h for h, hr in zone_hosts.items()
                          if h.startswith(("n1-standard-", "n1-highmem-", "n1-highcpu-"))
                          and _num(hr["vCPUs"]) <= max_cpus and _num(hr["MemoryGiB"]) <= max_mem]
        else:
            host_types = []
        acc_mem = _accelerator_memory_gib(acc.get("GpuInfo", ""), name, metadata)
        for host_type in host_types:
            host = zone_hosts.get(host_type)
            attached = host_type.startswith("n1-")
            rows.append(Offer(
                provider="gcp",
                region=acc["Region"].strip(),
                zone=acc["AvailabilityZone"].strip(),
                instance_type=host_type,
                accelerator=name,
                accelerator_count=float(count),
                vcpus=_num(host["vCPUs"]) if host else math.nan,
                memory_gib=_num(host["MemoryGiB"]) if host else math.nan,
                accelerator_memory_gib=acc_mem,
                # TPU VMs: the host VM is included in the TPU price.
                price=_price(_sum(_num(host["Price"]), _num(acc["Price"])) if host
                             else _num(acc["Price"])),
                spot_price=_price(_sum(_spot(host["SpotPrice"]), _spot(acc["SpotPrice"]))
                                  if host else _spot(acc["SpotPrice"])),
                burstable=False, arch="x86_64", attached_host=attached,
            ))
    return rows


def load_rows(data_dir: Path) -> list[Offer]:
    """Every offer from every provider's source file, normalised."""
    catalog_dir = data_dir / "catalog"
    metadata = {r["GPU"]: float(r["MemoryGB"])
                for r in _read(catalog_dir / "v7/common/metadata.csv") if r.get("MemoryGB")}
    rows: list[Offer] = []
    aws_families: set[str] = set()
    for provider, rel in SOURCES:
        records = _read(catalog_dir / rel)
        if provider == "gcp":
            rows.extend(_gcp_rows(records, metadata))
            continue
        if rel.endswith("vms_p-family_subset.csv"):
            # Older snapshot: only for families the newer subset lacks (p3, p6; README s.4).
            records = [r for r in records if r["InstanceType"].split(".")[0] not in aws_families]
        elif provider == "aws":
            aws_families = {r["InstanceType"].split(".")[0] for r in records}
        rows.extend(_generic_rows(provider, records, metadata))
    # Offers with neither an on-demand nor a spot price cannot be planned.
    return [r for r in rows if not (r.price is None and r.spot_price is None)]


def _flag_bits(o: Offer) -> int:
    return ((FLAG_BURSTABLE if o.burstable else 0) | (FLAG_ARM64 if o.arch == "arm64" else 0)
            | (FLAG_OWNED if o.owned else 0) | (FLAG_ATTACHED_GPU if o.attached_host else 0))


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def to_arrays(rows: list[Offer]) -> tuple[np.ndarray, dict[str, list]]:
    rows = sorted(rows, key=lambda r: (r.provider, r.region, r.zone or "", r.instance_type,
                                       r.accelerator or "", r.accelerator_count))
    providers = sorted({r.provider for r in rows})
    regions = sorted({(r.provider, r.region) for r in rows})
    zones = sorted({r.zone for r in rows if r.zone})
    itypes = sorted({r.instance_type for r in rows})
    accels = sorted({r.accelerator for r in rows if r.accelerator})
    p_idx = {p: i for i, p in enumerate(providers)}
    r_idx = {r: i for i, r in enumerate(regions)}
    z_idx = {z: i for i, z in enumerate(zones)}
    t_idx = {t: i for i, t in enumerate(itypes)}
    a_idx = {a: i for i, a in enumerate(accels)}
    out = np.empty(len(rows), dtype=OFFER_DTYPE)
    for i, r in enumerate(rows):
        out[i] = (p_idx[r.provider], r_idx[(r.provider, r.region)],
                  z_idx[r.zone] if r.zone else -1, t_idx[r.instance_type],
                  a_idx[r.accelerator] if r.accelerator else -1,
                  r.accelerator_count if r.accelerator else 0.0, r.vcpus, r.memory_gib,
                  r.accelerator_memory_gib, _nan(r.price), _nan(r.spot_price), _flag_bits(r))
    names = {
        "providers": providers,
        "regions": [[p_idx[p], name] for p, name in regions],
        "zones": zones,
        "instance_types": itypes,
        "accelerators": accels,
    }
    return out, names


def build(data_dir: Path, output_dir: Path = OUTPUT_DIR) -> int:
    offers, names = to_arrays(load_rows(data_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, offers, allow_pickle=False)
    (output_dir / OFFERS_FILE).write_bytes(zlib.compress(buffer.getvalue(), 9))
    (output_dir / NAMES_FILE).write_text(json.dumps(names, separators=(",", ":")) + "\n")
    return len(offers)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    default = Path(__file__).resolve().parents[3].parent / "shared" / "data"  # repo/../shared
    data_dir = Path(args[0]) if args else default
    if not (data_dir / "catalog").is_dir():
        print(f"error: no catalog data under {data_dir}; pass the shared/data directory",
              file=sys.stderr)
        return 2
    count = build(data_dir)
    print(f"wrote {count} offers to {OUTPUT_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
