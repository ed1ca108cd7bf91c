"""The Provider protocol: small on purpose; what a provider can do is declared, not assumed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from skyhop.catalog.offer import Offer
    from skyhop.execute.runner import Runner
    from skyhop.optimizer.plan import Placement

# Capability names.
SPOT, MULTI_NODE, STOP, OPEN_PORTS = "spot", "multi_node", "stop", "open_ports"


# Which skyhop home made a resource: `gc` collects only its own home's, so homes sharing a
# cloud account never collect each other's clusters.
HOME_TAG = "skyhop-home"


@dataclass
class ClusterSpec:
    """What the provisioner asks a provider for."""

    name: str
    num_nodes: int
    tags: dict[str, str] = field(default_factory=dict)
    # Called by the provider as soon as it has made something that must be cleaned up, before
    # anything else can fail: (region, instance ids just returned), or (region, []) for other
    # resources (a security group), so state knows every id and every region touched.
    created: Callable[[str | None, list[str]], None] | None = None


@dataclass
class Instance:
    """One node as the provider sees it."""

    instance_id: str
    rank: int
    address: str | None
    info: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    name: str
    capabilities: frozenset[str]
    # The most nodes one cluster may have here, when the provider has a fixed bound (local:
    # one machine). Optional: read with getattr(provider, "max_nodes", None); the launcher
    # refuses a larger num_nodes before anything is created.
    max_nodes: int | None

    def is_enabled(self) -> tuple[bool, str]:
        """(usable, why not) without side effects: credentials, config, libraries."""

    def offers(self) -> list[Offer]:
        """Offers beyond the shipped catalog (e.g. the local machine's own shape)."""

    def prepare(self, cluster: ClusterSpec) -> None:
        """Idempotent: keys, networks, security groups, directories."""

    def provision(self, cluster: ClusterSpec, placement: Placement, count: int
                  ) -> list[Instance]:
        """Create `count` nodes; raises a classified error when it cannot."""

    def instances(self, cluster_name: str) -> list[Instance]:
        """The provider's truth about the cluster's nodes, found by tags."""

    def runner(self, cluster_name: str, instance: Instance) -> Runner:
        """A runner that executes commands on that node."""

    def stop(self, cluster_name: str, instance_ids: list[str]) -> None: ...

    def start(self, cluster_name: str, instance_ids: list[str]) -> list[Instance]: ...

    def terminate(self, cluster_name: str, instance_ids: list[str]) -> None:
        """Idempotent."""

    def teardown(self, cluster_name: str) -> None:
        """Remove what prepare made."""
