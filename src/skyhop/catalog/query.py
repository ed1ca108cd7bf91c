"""Which catalog offers satisfy one set of requirements, and why others were removed.

Filters run one after another as vectorised masks; the count left after each is kept so an
empty result can say which constraint removed the last candidates.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from skyhop.catalog.blocklist import Blocklist
from skyhop.catalog.catalog import Catalog
from skyhop.catalog.schema import FLAG_ARM64, FLAG_ATTACHED_GPU, FLAG_BURSTABLE, FLAG_OWNED
from skyhop.errors import InfeasibleError, UnknownAcceleratorError
from skyhop.spec.fields import Amount, InfraPattern, Memory
from skyhop.spec.resources import Resources

# Defaults when a task names no CPUs, memory, accelerator or instance type: SkyPilot's
# (`_DEFAULT_NUM_VCPUS = 8`, `_DEFAULT_MEMORY_CPU_RATIO = 4` in sky/catalog/*_catalog.py),
# so SkyPilot task files get machines of the same shape.
DEFAULT_CPUS = Amount(8, or_more=True)
DEFAULT_MEMORY = Memory(Amount(4, or_more=True), per_cpu=True)
# GCP N1 hosts with attached GPUs can be any size; without a request, use a host shaped like
# the other clouds' VMs with that GPU: vCPUs per GPU count (SkyPilot's _NUM_ACC_TO_NUM_CPU in
# sky/catalog/gcp_catalog.py, "based on p2/p3/g4dn on AWS") and >= 4 GiB per vCPU.
ATTACHED_HOST_CPUS: dict[str, dict[float, float]] = {
    "K80": {1: 4, 2: 8, 4: 16, 8: 32},
    "T4": {1: 4, 2: 8, 4: 48},
    "V100": {1: 8, 2: 16, 4: 32, 8: 64},
    "P100": {1: 8, 2: 16, 4: 32, 8: 64},
}
_DEFAULT_HOST_CPUS = {1: 8, 2: 16, 4: 32, 8: 64, 16: 128}
ATTACHED_HOST_MEMORY_PER_CPU = 4.0


@dataclass
class Selection:
    """Offers (catalog row indices) meeting the requirements, with their hourly price."""

    resources: Resources
    rows: np.ndarray
    hourly: np.ndarray  # USD/h per node in the chosen market (spot or on-demand)
    use_spot: bool
    stages: list[tuple[str, int]] = field(default_factory=list)  # (filter, offers left)
    before_last: np.ndarray | None = None  # rows alive before the filter that emptied it

    def __len__(self) -> int:
        return len(self.rows)


def _glob_table(names: Sequence[str], pattern: str) -> np.ndarray:
    """Boolean per name: does the glob match (case-insensitive)."""
    if pattern == "*":
        return np.ones(len(names), dtype=bool)
    p = pattern.lower()
    return np.fromiter((fnmatch.fnmatchcase(n.lower(), p) for n in names), dtype=bool,
                       count=len(names))


def infra_mask(catalog: Catalog, pattern: InfraPattern) -> np.ndarray:
    provider_ok = _glob_table(catalog.providers, pattern.provider)
    region_ok = provider_ok[catalog.region_provider] & _glob_table(catalog.region_names,
                                                                  pattern.region)
    mask = region_ok[catalog.region]
    if pattern.zone != "*":
        zone_ok = np.append(_glob_table(catalog.zones, pattern.zone), False)  # -1 -> False
        mask &= zone_ok[catalog.zone]
    return mask


def _amount_mask(values: np.ndarray, amount: Amount) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if amount.or_more:
            return values >= amount.value - 1e-6
        return np.abs(values - amount.value) < 1e-6


def _memory_mask(catalog: Catalog, rows: np.ndarray, memory: Memory) -> np.ndarray:
    mem = catalog.memory_gib[rows]
    if memory.per_cpu:
        with np.errstate(invalid="ignore"):
            return mem >= memory.amount.value * catalog.vcpus[rows] - 1e-6
    return _amount_mask(mem, memory.amount)


def _attached_host_default(catalog: Catalog, rows: np.ndarray) -> np.ndarray:
    """Mask: attached-GPU hosts must be at least the default host shape for their GPUs."""
    attached = (catalog.flags[rows] & FLAG_ATTACHED_GPU) != 0
    if not attached.any():
        return np.ones(len(rows), dtype=bool)
    need = np.zeros(len(rows), dtype=np.float32)
    for j in np.nonzero(attached)[0]:
        r = rows[j]
        name = catalog.accelerators[catalog.accelerator[r]]
        count = float(catalog.accelerator_count[r])
        need[j] = ATTACHED_HOST_CPUS.get(name, _DEFAULT_HOST_CPUS).get(count, 8 * count)
    vcpus, mem = catalog.vcpus[rows], catalog.memory_gib[rows]
    return ~attached | ((vcpus >= need) & (mem >= need * ATTACHED_HOST_MEMORY_PER_CPU))


class _Filter:
    def __init__(self, catalog: Catalog, rows: np.ndarray):
        self.catalog = catalog
        self.rows = rows
        self.stages: list[tuple[str, int]] = [("all offers", len(rows))]
        self.before_last: np.ndarray | None = None

    def apply(self, label: str, mask: np.ndarray) -> None:
        if len(self.rows) and not mask.all():
            kept = self.rows[mask]
            if len(kept) == 0 and self.before_last is None:
                self.before_last = self.rows
            self.rows = kept
        self.stages.append((label, len(self.rows)))


# AWS Local Zone IDs carry a metro code (use1-atl2-az1, usw2-lax1-az1); an account must opt
# in to each before launching there, so they are planned only when a task names the zone.
# https://docs.aws.amazon.com/local-zones/latest/ug/getting-started.html
_OPT_IN_ZONE = re.compile(r"^[a-z]+\d-[a-z]+\d+-az\d+$")


def _opt_in_zones(c: Catalog) -> np.ndarray:
    cached = getattr(c, "_opt_in_zone_rows", None)
    if cached is None:
        by_zone = np.array([bool(z and _OPT_IN_ZONE.match(z)) for z in c.zones] + [False])
        cached = by_zone[c.zone]  # zone -1 (none) maps to the trailing False
        c._opt_in_zone_rows = cached
    return cached


def select(catalog: Catalog, resources: Resources, *, num_nodes: int = 1,
           allowed_infra: Sequence[InfraPattern] = (), blocklist: Blocklist | None = None,
           where: str | None = None) -> Selection:
    """Offers meeting one concrete requirement set (no any_of)."""
    c = catalog
    if resources.infra and resources.infra.provider != "*" and not infra_mask(
            c, InfraPattern(resources.infra.provider)).any():
        raise InfeasibleError(f"provider {resources.infra.provider!r} has no offers in the "
                              "catalog yet", where=where,
                              hint="choose one of: " + ", ".join(c.providers))
    f = _Filter(c, np.arange(len(c)))
    explicit_shape = resources.instance_type is not None
    owned_all = (c.flags & FLAG_OWNED) != 0

    if resources.accelerators:
        mask = np.zeros(len(c), dtype=bool)
        wanted = []
        for name, count in resources.accelerators:
            try:
                canonical = c.accelerator_names.resolve(name)
            except UnknownAcceleratorError as exc:
                exc.where = where
                raise
            wanted.append(f"{canonical}:{count:g}")
            acc = c.accelerators.index(canonical)
            # A rented instance has exactly the count; an owned machine has room for it.
            mask |= (c.accelerator == acc) & ((np.abs(c.accelerator_count - count) < 1e-6)
                                              | (owned_all & (c.accelerator_count >= count)))
        f.apply(f"accelerators {' or '.join(wanted)}", mask)
    elif not explicit_shape:
        f.apply("no accelerators", c.accelerator[f.rows] < 0)

    if explicit_shape:
        f.apply(f"instance_type {resources.instance_type}",
                c.instance_type[f.rows] == _index_or_minus(c.instance_types,
                                                           resources.instance_type))
    else:  # rented shared-core and Arm machines only when named
        flags = c.flags[f.rows]
        f.apply("x86, not burstable",
                ((flags & (FLAG_BURSTABLE | FLAG_ARM64)) == 0) | ((flags & FLAG_OWNED) != 0))

    cpus, memory = resources.cpus, resources.memory
    if not (resources.accelerators or explicit_shape or cpus or memory):
        # A cloud VM of SkyPilot's default shape; the user's own machines as they are.
        owned = (c.flags[f.rows] & FLAG_OWNED) != 0
        default = (_amount_mask(c.vcpus[f.rows], DEFAULT_CPUS)
                   & _memory_mask(c, f.rows, DEFAULT_MEMORY))
        f.apply(f"default shape: cpus {DEFAULT_CPUS}, memory {DEFAULT_MEMORY} GiB per vCPU",
                owned | default)
    if cpus is not None:  # on an owned machine, an exact request is a demand it must hold
        f.apply(f"cpus {cpus}", _amount_mask(c.vcpus[f.rows], cpus)
                | (owned_all[f.rows] & (c.vcpus[f.rows] >= cpus.value)))
    if memory is not None:
        label = f"memory {memory}" + (" GiB per vCPU" if memory.per_cpu else " GiB")
        mask = _memory_mask(c, f.rows, memory)
        if not memory.per_cpu:
            mask |= owned_all[f.rows] & (c.memory_gib[f.rows] >= memory.amount.value)
        f.apply(label, mask)
    if resources.accelerators and cpus is None and memory is None and not explicit_shape:
        f.apply("default host size for attached GPUs", _attached_host_default(c, f.rows))

    prices = c.spot_price if resources.use_spot else c.price
    f.apply("spot offered" if resources.use_spot else "sold on demand",
            ~np.isnan(prices[f.rows]))

    patterns = [p for p in ([resources.infra] if resources.infra else [])]
    for pattern in patterns:
        f.apply(f"infra {pattern}", infra_mask(c, pattern)[f.rows])
    if not (resources.infra and resources.infra.zone != "*"):
        f.apply("not an opt-in zone (AWS Local Zones only when named)",
                ~_opt_in_zones(c)[f.rows])
    if allowed_infra:
        allowed = np.zeros(len(c), dtype=bool)
        for pattern in allowed_infra:
            allowed |= infra_mask(c, pattern)
        f.apply("allowed infra " + ", ".join(map(str, allowed_infra)), allowed[f.rows])

    if blocklist:
        f.apply("blocklist", ~_blocked(c, f.rows, blocklist, resources.use_spot))

    if resources.max_hourly_cost is not None:
        f.apply(f"max_hourly_cost ${resources.max_hourly_cost:g}/h for {num_nodes} node(s)",
                prices[f.rows] * num_nodes <= resources.max_hourly_cost + 1e-9)

    return Selection(resources, f.rows, prices[f.rows], resources.use_spot, f.stages,
                     f.before_last)


def _index_or_minus(names: list[str], name: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        return -1


def _blocked(c: Catalog, rows: np.ndarray, blocklist: Blocklist, spot: bool) -> np.ndarray:
    out = np.zeros(len(rows), dtype=bool)
    for rule in blocklist.rules:
        if rule.spot is not None and rule.spot != spot:
            continue
        pattern = InfraPattern(rule.provider, rule.region, rule.zone)
        mask = infra_mask(c, pattern)[rows]
        if rule.instance_type != "*":
            mask &= _glob_table(c.instance_types, rule.instance_type)[c.instance_type[rows]]
        out |= mask
    return out


def explain_empty(catalog: Catalog, selection: Selection, task_label: str,
                  where: str | None = None) -> InfeasibleError:
    """Which filter removed the last offers, and where they were before it."""
    stages = selection.stages
    culprit = next((label for (label, n), (_, before) in zip(stages[1:], stages, strict=False)
                    if n == 0 and before > 0), stages[-1][0])
    hint = None
    rows = selection.before_last
    if rows is not None and len(rows):
        labels = sorted({catalog.region_label(r) for r in catalog.region[rows]})
        shown = ", ".join(labels[:6]) + (f" and {len(labels) - 6} more" if len(labels) > 6
                                         else "")
        prices = (catalog.spot_price if selection.use_spot else catalog.price)[rows]
        cheapest = float(np.nanmin(prices)) if not np.isnan(prices).all() else None
        hint = f"before that, {len(rows)} offers matched, in {shown}"
        if cheapest is not None:
            hint += f"; the cheapest at ${cheapest:.2f}/h per node"
    error = InfeasibleError(
        f"{task_label}: no offer satisfies {selection.resources.describe()}: "
        f"the last candidates were removed by '{culprit}'",
        where=where, hint=hint)
    error.culprit = culprit
    return error
