"""The embedded local provider: nodes are sandboxes on this machine, free of charge.

A node is a directory under `$SKYHOP_HOME/local/<cluster>/node-<rank>` (its home; the
workdir syncs to `~/sky_workdir` inside it) and the processes started for it, each in its
own process group and marked with the node's directory so teardown finds them by PID.
File mounts land inside the node's folder too: `~/x` and `/x` both at `<node>/x`, and a
path whose `..` leads out is refused before anything is made.
Capacity is this machine's CPUs, memory and NVIDIA GPUs (`nvidia-smi`); all nodes of a
local cluster share the machine, so a local cluster has at most `MAX_NODES` nodes.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from skyhop import paths
from skyhop.catalog.accelerators import alias_key
from skyhop.catalog.offer import Offer
from skyhop.execute.runner import LocalRunner, confined, kill_marked
from skyhop.names import path_under
from skyhop.provision.base import MULTI_NODE, STOP, ClusterSpec, Instance
from skyhop.provision.errors import InvalidRequestError

REGION = "local"
INSTANCE_TYPE = "local"
MAX_NODES = 64  # nodes of one local cluster: all share this machine


@functools.cache
def machine() -> dict:
    """This machine's shape: vCPUs, memory (GiB), GPUs [(name, memory GiB)]."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cpus = os.cpu_count() or 1
    memory = 0.0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {"vcpus": cpus, "memory_gib": memory, "gpus": nvidia_gpus()}


def nvidia_gpus() -> list[tuple[str, float]]:
    """[(name, memory GiB)] per GPU from `nvidia-smi`, [] when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,"
                              "nounits"], capture_output=True, text=True, timeout=20,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(mem) / 1024))
        except ValueError:
            continue
    return gpus


def canonical_gpu(smi_name: str, known: list[str], memory_gib: float) -> str:
    """Map `NVIDIA H100 80GB HBM3` / `Tesla V100-SXM2-16GB` to a catalog name."""
    key = alias_key(smi_name)
    best = None
    for name in known:
        base, _, size = name.partition("-")
        base_key = alias_key(base)
        if not base_key or base_key not in key or name.startswith("tpu"):
            continue
        if size:  # a memory variant (A100-80GB) only when the card has that memory
            m = re.fullmatch(r"(\d+)GB", size)
            if not m or abs(memory_gib - float(m.group(1))) > 8:
                continue
        if best is None or len(name) > len(best):
            best = name
    return best or re.sub(r"^(NVIDIA|Tesla)\s+", "", smi_name).split()[0]


class LocalProvider:
    name = "local"
    capabilities = frozenset({MULTI_NODE, STOP})
    max_nodes = MAX_NODES

    def __init__(self, root: Path | None = None):
        self._root = root

    @property
    def root(self) -> Path:
        return self._root or paths.home() / "local"

    def cluster_dir(self, cluster: str) -> Path:
        return path_under(self.root, cluster)

    def node_dir(self, cluster: str, rank: int) -> Path:
        return path_under(self.root, cluster, f"node-{rank}")

    def is_enabled(self) -> tuple[bool, str]:
        return True, ""

    def offers(self, known_accelerators: list[str] | None = None) -> list[Offer]:
        shape = machine()
        gpus = shape["gpus"]
        accelerator, count, gpu_mem = None, 0.0, float("nan")
        if gpus:
            names = [canonical_gpu(n, known_accelerators or [], m) for n, m in gpus]
            accelerator, count, gpu_mem = names[0], float(names.count(names[0])), gpus[0][1]
        return [Offer(provider=self.name, region=REGION, zone=None, instance_type=INSTANCE_TYPE,
                      accelerator=accelerator, accelerator_count=count, vcpus=shape["vcpus"],
                      memory_gib=round(shape["memory_gib"], 1), accelerator_memory_gib=gpu_mem,
                      price=0.0, spot_price=None, burstable=False, arch=os.uname().machine
                      .replace("aarch64", "arm64"), owned=True)]

    def prepare(self, cluster: ClusterSpec) -> None:
        self.cluster_dir(cluster.name).mkdir(parents=True, exist_ok=True)

    def provision(self, cluster: ClusterSpec, placement: object, count: int) -> list[Instance]:
        if count > MAX_NODES:
            raise InvalidRequestError(f"a local cluster has at most {MAX_NODES} nodes, not "
                                      f"{count}", provider=self.name)
        self.prepare(cluster)
        instances = []
        for rank in range(count):
            node = self.node_dir(cluster.name, rank)
            node.mkdir(parents=True, exist_ok=True)
            instances.append(self._instance(cluster.name, rank))
        return instances

    def _instance(self, cluster: str, rank: int) -> Instance:
        node = self.node_dir(cluster, rank)
        return Instance(instance_id=f"local:{cluster}:{rank}", rank=rank, address="127.0.0.1",
                        info={"dir": str(node)})

    def instances(self, cluster_name: str) -> list[Instance]:
        base = self.cluster_dir(cluster_name)
        if not base.is_dir():
            return []
        ranks = sorted(int(p.name.split("-", 1)[1]) for p in base.glob("node-*")
                       if p.name.split("-", 1)[1].isdigit())
        return [self._instance(cluster_name, r) for r in ranks]

    def orphans(self, known: set[str]) -> dict[str, list[str]]:
        if not self.root.is_dir():
            return {}
        return {d.name: [i.instance_id for i in self.instances(d.name)]
                for d in self.root.iterdir() if d.is_dir() and d.name not in known}

    def check_node_path(self, path: str) -> None:
        """A file-mount target must lie inside the node's folder (UserError otherwise);
        checked before anything is made. Absolute paths are taken inside it too."""
        confined(Path("/node"), path)

    def runner(self, cluster_name: str, instance: Instance) -> LocalRunner:
        return LocalRunner(Path(instance.info.get("dir") or
                                self.node_dir(cluster_name, instance.rank)))

    def _marker_prefix(self, cluster_name: str) -> str:
        return f"{self.cluster_dir(cluster_name)}/"

    def stop(self, cluster_name: str, instance_ids: list[str]) -> None:
        kill_marked(self._marker_prefix(cluster_name))

    def start(self, cluster_name: str, instance_ids: list[str]) -> list[Instance]:
        return self.instances(cluster_name)

    def terminate(self, cluster_name: str, instance_ids: list[str]) -> None:
        kill_marked(self._marker_prefix(cluster_name))
        for instance_id in instance_ids:
            rank = int(instance_id.rsplit(":", 1)[1])
            shutil.rmtree(self.node_dir(cluster_name, rank), ignore_errors=True)

    def teardown(self, cluster_name: str) -> None:
        kill_marked(self._marker_prefix(cluster_name))
        shutil.rmtree(self.cluster_dir(cluster_name), ignore_errors=True)
