"""Cluster records as plain data: no SQLAlchemy here, so fast readers can build them too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INIT, UP, STOPPED, TERMINATING = "INIT", "UP", "STOPPED", "TERMINATING"


@dataclass
class Node:
    rank: int
    instance_id: str
    address: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClusterRecord:
    name: str
    status: str
    provider: str
    region: str | None
    zone: str | None
    instance_type: str | None
    accelerators: dict[str, float] | None
    num_nodes: int
    use_spot: bool
    hourly_price: float
    resources: dict[str, Any] | None
    setup_hash: str | None
    autostop_minutes: int | None
    autostop_down: bool
    handle: dict[str, Any]
    owner: str | None
    launched_at: float
    status_changed_at: float
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any], node_rows: list[dict[str, Any]]) -> ClusterRecord:
        data = dict(row)
        data["use_spot"] = bool(data["use_spot"])
        data["autostop_down"] = bool(data["autostop_down"])
        data["handle"] = data["handle"] or {}
        return cls(**data, nodes=[Node(r["rank"], r["instance_id"], r["address"],
                                       r["info"] or {}) for r in node_rows])

    @property
    def infra(self) -> str:
        return "/".join(p for p in (self.provider, self.region, self.zone) if p)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "infra": self.infra,
            "provider": self.provider, "region": self.region, "zone": self.zone,
            "instance_type": self.instance_type, "accelerators": self.accelerators,
            "num_nodes": self.num_nodes, "use_spot": self.use_spot,
            "hourly_price": self.hourly_price, "autostop_minutes": self.autostop_minutes,
            "autostop_down": self.autostop_down, "launched_at": self.launched_at,
            "status_changed_at": self.status_changed_at,
            "nodes": [{"rank": n.rank, "instance_id": n.instance_id, "address": n.address}
                      for n in self.nodes],
        }


