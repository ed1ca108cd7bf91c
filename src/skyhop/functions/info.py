"""`skyhop.instance_info()`: where a function runs, from inside it.

The worker receives its place in the pool when the pool starts and keeps it in the
environment (`SKYHOP_FUNCTION_INFO`), so processes the function starts (torchrun, a data
loader) can read it too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from skyhop.errors import UserError

ENV = "SKYHOP_FUNCTION_INFO"


@dataclass(frozen=True)
class InstanceInfo:
    """This node's place in its pool: enough for torch.distributed, JAX or a hand-made
    rendezvous (rank 0 listens on `head_addr:port`, the others connect)."""

    rank: int  # 0 .. node_count-1; 0 is the head
    node_count: int
    head_addr: str  # the head node's address, reachable from every node
    port: int  # a port that was free on the head when the pool started
    addresses: tuple[str, ...]  # every node's address, by rank
    pool: str  # the pool's cluster name
    provider: str  # where it runs: local, ssh, aws, ...

    @property
    def is_head(self) -> bool:
        return self.rank == 0

    def torch_env(self) -> dict[str, str]:
        """The variables torch.distributed's `env://` rendezvous reads."""
        return {"MASTER_ADDR": self.head_addr, "MASTER_PORT": str(self.port),
                "RANK": str(self.rank), "WORLD_SIZE": str(self.node_count)}


def instance_info() -> InstanceInfo:
    """This node's place in its pool; only inside a function running on a pool."""
    raw = os.environ.get(ENV)
    if not raw:
        raise UserError("skyhop.instance_info() is only available inside a function "
                        "running on a pool",
                        hint="call it in a @skyhop.function dispatched to a skyhop.Compute "
                             "pool (fn() >> pool)")
    data = json.loads(raw)
    return InstanceInfo(rank=int(data["rank"]), node_count=int(data["node_count"]),
                        head_addr=str(data["head_addr"]), port=int(data["port"]),
                        addresses=tuple(data.get("addresses") or ()),
                        pool=str(data.get("pool", "")), provider=str(data.get("provider", "")))
