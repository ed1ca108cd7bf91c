"""A provider whose capacity follows real availability traces on a virtual clock.

Each `provision` call takes `attempt_s` of virtual time (a real attempt takes about a
minute: request, wait for the instance state, give up) and succeeds when the trace shows at
least the requested number of instances available in the zone at that moment; otherwise it
raises CapacityError, as a cloud would. Running clusters are preempted when the trace's
availability in their zone drops below their size (seen through `instances`, the
provider's truth). Prices come from the catalog the plan was made on.
"""

from __future__ import annotations

import itertools
from typing import Any

from skyhop.clock import Clock
from skyhop.provision.base import MULTI_NODE, SPOT, ClusterSpec, Instance
from skyhop.provision.errors import CapacityError
from skyhop.sim.traces import Trace

DEFAULT_ATTEMPT_S = 60.0


class TraceProvider:
    capabilities = frozenset({SPOT, MULTI_NODE})

    def __init__(self, name: str, traces: dict[str, Trace], clock: Clock, *,
                 start: float = 0.0, attempt_s: float = DEFAULT_ATTEMPT_S):
        self.name = name
        self.traces = traces
        self.clock = clock
        self.start = start  # virtual time at which the traces begin
        self.attempt_s = attempt_s
        self.clusters: dict[str, list[Instance]] = {}
        self._ids = itertools.count()
        self.calls = 0
        self.preemptions = 0

    def is_enabled(self) -> tuple[bool, str]:
        return True, ""

    def offers(self, known_accelerators: list[str] | None = None) -> list[Any]:
        return []

    def available(self, zone: str) -> int:
        trace = self.traces.get(zone)
        return trace.at(self.clock.now() - self.start) if trace else 0

    def prepare(self, cluster: ClusterSpec) -> None:
        pass

    def provision(self, cluster: ClusterSpec, placement: Any, count: int) -> list[Instance]:
        self.calls += 1
        self.clock.sleep(self.attempt_s)
        zone = placement.zone
        if self.available(zone) < count:
            raise CapacityError(f"no {placement.instance_type} capacity in {zone}",
                                provider=self.name, region=placement.region, zone=zone,
                                instance_type=placement.instance_type)
        nodes = [Instance(f"sim-{next(self._ids)}", rank, None, {"zone": zone})
                 for rank in range(count)]
        self.clusters[cluster.name] = nodes
        return nodes

    def instances(self, cluster_name: str) -> list[Instance]:
        """The provider's truth at the virtual now: when the trace shows fewer instances
        available in the zone than the cluster holds, the cloud has taken them back
        (a preemption), as spot capacity does."""
        nodes = self.clusters.get(cluster_name, [])
        if nodes and self.available(nodes[0].info["zone"]) < len(nodes):
            del self.clusters[cluster_name]
            self.preemptions += 1
            return []
        return list(nodes)

    def terminate(self, cluster_name: str, instance_ids: list[str]) -> None:
        nodes = self.clusters.get(cluster_name, [])
        self.clusters[cluster_name] = [n for n in nodes if n.instance_id not in instance_ids]
        if not self.clusters[cluster_name]:
            del self.clusters[cluster_name]

    def teardown(self, cluster_name: str) -> None:
        self.clusters.pop(cluster_name, None)
