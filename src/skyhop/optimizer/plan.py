"""The optimizer's output: a placement per task, the data movement it implies, and totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Placement:
    name: str
    provider: str
    region: str
    zone: str | None
    instance_type: str
    accelerators: dict[str, float] | None
    use_spot: bool
    num_nodes: int
    hourly_price: float  # USD/h per node
    est_hours: float
    est_cost: float  # hourly_price x num_nodes x est_hours
    vcpus: float | None = None
    memory_gib: float | None = None

    @property
    def infra(self) -> str:
        return "/".join(p for p in (self.provider, self.region, self.zone) if p)


@dataclass(frozen=True)
class Transfer:
    src: str  # task name or data URI
    dst: str  # task name
    gigabytes: float
    cost: float
    src_location: str = ""
    dst_location: str = ""


@dataclass(frozen=True)
class Considered:
    """The best offer of one provider for one task (what a user compares against)."""

    task: str
    provider: str
    region: str
    zone: str | None
    instance_type: str
    accelerators: dict[str, float] | None
    use_spot: bool
    vcpus: float | None
    memory_gib: float | None
    hourly_price: float
    est_cost: float
    chosen: bool


@dataclass
class Plan:
    objective: str  # "cost" | "time"
    tasks: list[Placement]
    egress: list[Transfer]
    total_hours: float
    considered: list[Considered] = field(default_factory=list)
    solver: str = "direct"  # "direct" (independent tasks) or "ilp"

    @property
    def compute_cost(self) -> float:
        return sum(p.est_cost for p in self.tasks)

    @property
    def egress_cost(self) -> float:
        return sum(t.cost for t in self.egress)

    @property
    def total_cost(self) -> float:
        return self.compute_cost + self.egress_cost

    def to_json(self) -> dict:
        drop = {"vcpus", "memory_gib"}
        return {
            "objective": self.objective,
            "total_cost": round(self.total_cost, 6),
            "total_hours": round(self.total_hours, 6),
            "tasks": [{k: (round(v, 6) if isinstance(v, float) else v)
                       for k, v in asdict(p).items() if k not in drop} for p in self.tasks],
            "egress": [{"src": t.src, "dst": t.dst, "gigabytes": t.gigabytes,
                        "cost": round(t.cost, 6)} for t in self.egress],
        }
