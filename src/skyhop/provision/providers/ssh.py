"""SSH machine pools: machines you already have, listed in the skyhop config.

    ssh_pools:
      lab:
        user: me
        identity_file: ~/.ssh/id_ed25519
        port: 22                       # default
        hosts: [10.0.0.5, {host: 10.0.0.6, port: 2222, user: other}]

A pool is a region of the `ssh` provider (`infra: ssh/lab`). Each host's shape (CPUs,
memory, NVIDIA GPUs) is discovered over SSH and cached for an hour; hosts of one shape make
one offer, free of charge. A launch claims free hosts exclusively (a row per host in the
state database, so two launches, even from two machines sharing PostgreSQL, cannot take the
same host); `down` stops what skyhop started there, removes its files and releases them.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyhop import config, paths
from skyhop.catalog.offer import Offer
from skyhop.errors import UserError
from skyhop.names import check_name, path_under
from skyhop.provision.base import MULTI_NODE, ClusterSpec, Instance
from skyhop.provision.errors import CapacityError

SHAPE_TTL_S = 3600.0
# A host and a login as OpenSSH takes them: never an option (a leading '-') or a shell word.
_HOST = re.compile(r"[A-Za-z0-9_.:\[\]%][A-Za-z0-9_.:\[\]%-]{0,252}")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
DISCOVER = ("nproc; awk '/MemTotal/ {print $2}' /proc/meminfo; "
            "nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits "
            "2>/dev/null || true")


@dataclass(frozen=True)
class PoolHost:
    pool: str
    host: str
    port: int
    user: str
    identity_file: str

    @property
    def host_id(self) -> str:
        return f"ssh:{self.pool}:{self.host}:{self.port}"


def pools() -> dict[str, list[PoolHost]]:
    """The configured pools, validated: {pool: [hosts]}."""
    raw = config.section("ssh_pools") or {}
    where = config.where("ssh_pools")
    if not isinstance(raw, dict):
        raise UserError("ssh_pools must map pool names to pools", where=where,
                        hint="ssh_pools: {lab: {hosts: [10.0.0.5], user: me, "
                             "identity_file: ~/.ssh/id_ed25519}}")
    out: dict[str, list[PoolHost]] = {}
    for name, pool in raw.items():
        check_name(name, "SSH pool", where=config.where("ssh_pools", name, key=True))
        where = config.where("ssh_pools", name)
        if not isinstance(pool, dict) or not isinstance(pool.get("hosts"), list):
            raise UserError(f"ssh_pools.{name} needs a list of hosts", where=where,
                            hint=f"ssh_pools: {{{name}: {{hosts: [10.0.0.5], user: me}}}}")
        hosts = []
        for index, entry in enumerate(pool["hosts"]):
            where = config.where("ssh_pools", name, "hosts", index)
            spec = entry if isinstance(entry, dict) else {"host": entry}
            if not spec.get("host"):
                raise UserError(f"ssh_pools.{name}: a host entry has no `host`", where=where,
                                hint="e.g. hosts: [10.0.0.5, {host: 10.0.0.6, port: 2222}]")
            merged = {**{k: pool.get(k) for k in ("user", "identity_file", "port")},
                      **{k: v for k, v in spec.items() if v is not None}}
            if not merged.get("user") or not merged.get("identity_file"):
                raise UserError(f"ssh_pools.{name}: host {merged['host']} needs `user` and "
                                "`identity_file` (on the pool or the host)", where=where,
                                hint="e.g. user: me, identity_file: ~/.ssh/id_ed25519")
            hosts.append(_pool_host(str(name), merged, where))
        out[str(name)] = hosts
    return out


def _pool_host(pool: str, spec: dict[str, Any], where: str) -> PoolHost:
    """One host entry, checked: its host, user and port go on OpenSSH's command line."""
    host, user, port = str(spec["host"]), str(spec["user"]), spec.get("port") or 22
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not _HOST.fullmatch(host):
        raise UserError(f"ssh_pools.{pool}: host {host[:80]!r} is not a host name or address",
                        where=where, hint="e.g. 10.0.0.5 or gpu1.lab.example.org")
    if not _USER.fullmatch(user):
        raise UserError(f"ssh_pools.{pool}: user {user[:80]!r} is not a login name",
                        where=where, hint="e.g. user: ubuntu")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"ssh_pools.{pool}: port {str(port)[:80]!r} is not a port number",
                        where=where, hint="a whole number 1-65535, e.g. port: 22")
    return PoolHost(pool, host, port, user, str(Path(str(spec["identity_file"])).expanduser()))


def shape_name(shape: dict[str, Any]) -> str:
    gpus = f"-{shape['gpu_count']}x{shape['gpu']}" if shape.get("gpu") else ""
    return f"{shape['vcpus']}CPU-{shape['memory_gib']:g}GB{gpus}"


class SSHPoolProvider:
    name = "ssh"
    capabilities = frozenset({MULTI_NODE})

    def is_enabled(self) -> tuple[bool, str]:
        configured = pools()  # a mistake in ssh_pools is the user's to fix: raised
        if not configured:
            return False, (f"no ssh_pools in {config.path()} (add `ssh_pools: {{lab: {{hosts: "
                           "[...], user: ..., identity_file: ...}}`)")
        return True, ""

    # -- discovery ----------------------------------------------------------------------
    def _cache_path(self, pool: str) -> Path:
        return path_under(paths.home() / "ssh_pools", f"{pool}.json")

    def shapes(self, pool: str, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """{host_id: shape or {"error": ...}} for every host of the pool."""
        hosts = pools().get(pool, [])
        path = self._cache_path(pool)
        cached: dict[str, Any] = {}
        if path.exists() and not refresh:
            cached = json.loads(path.read_text())
        now = time.time()
        stale = [h for h in hosts if h.host_id not in cached
                 or now - cached[h.host_id].get("at", 0) > SHAPE_TTL_S
                 or ("error" in cached[h.host_id] and now - cached[h.host_id]["at"] > 30)]
        if stale:
            with ThreadPoolExecutor(max_workers=min(16, len(stale))) as pool_threads:
                for host, shape in zip(stale, pool_threads.map(self._discover, stale),
                                       strict=True):
                    cached[host.host_id] = {**shape, "at": now}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cached, indent=1))
        return {h.host_id: cached[h.host_id] for h in hosts}

    def _discover(self, host: PoolHost) -> dict[str, Any]:
        from skyhop.provision.providers.local import canonical_gpu

        try:
            code, out = self._runner(host).output_of(DISCOVER)
        except UserError as exc:
            return {"error": exc.message}
        lines = out.strip().splitlines()
        if code != 0 or len(lines) < 2 or not lines[0].strip().isdigit():
            return {"error": f"could not read its resources: {out.strip()[:200]}"}
        shape: dict[str, Any] = {"vcpus": int(lines[0]),
                                 "memory_gib": round(int(lines[1]) / 1024 / 1024, 1)}
        gpus = []
        for line in lines[2:]:
            name, _, mem = line.rpartition(",")
            try:
                gpus.append((name.strip(), float(mem) / 1024))
            except ValueError:
                continue
        if gpus:
            from skyhop.catalog.catalog import load_catalog

            known = load_catalog().accelerators
            names = [canonical_gpu(n, known, m) for n, m in gpus]
            shape.update(gpu=names[0], gpu_count=names.count(names[0]),
                         gpu_memory_gib=round(gpus[0][1], 1))
        return shape

    def diagnose(self) -> list[str]:
        """Hosts that cannot be used, and why (from the last discovery)."""
        return [f"ssh/{pool}: {host_id.split(':', 2)[2]}: {shape['error']}"
                for pool in pools() for host_id, shape in self.shapes(pool).items()
                if "error" in shape]

    def offers(self, known_accelerators: list[str] | None = None) -> list[Offer]:
        out: dict[tuple[str, str], Offer] = {}
        for pool in pools():
            for shape in self.shapes(pool).values():
                if "error" in shape:
                    continue
                name = shape_name(shape)
                out.setdefault((pool, name), Offer(
                    provider=self.name, region=pool, zone=None, instance_type=name,
                    accelerator=shape.get("gpu"), accelerator_count=float(
                        shape.get("gpu_count", 0)), vcpus=shape["vcpus"],
                    memory_gib=shape["memory_gib"],
                    accelerator_memory_gib=shape.get("gpu_memory_gib", float("nan")),
                    price=0.0, spot_price=None, burstable=False, arch="x86_64", owned=True))
        return list(out.values())

    # -- claims -------------------------------------------------------------------------
    def _claim(self, cluster: str, host_ids: list[str], count: int) -> list[str]:
        """Claim `count` of the hosts, in order, skipping held ones; all or none."""
        import sqlalchemy as sa

        from skyhop.state import db
        from skyhop.state.schema import host_claims

        engine = db.engine()
        with engine.begin() as conn:
            held = {r.host_id for r in conn.execute(sa.select(host_claims.c.host_id))}
        free = [h for h in host_ids if h not in held]
        got: list[str] = []
        for host_id in free:
            if len(got) == count:
                break
            try:
                with engine.begin() as conn:
                    conn.execute(sa.insert(host_claims).values(
                        host_id=host_id, cluster=cluster, claimed_at=time.time()))
                got.append(host_id)
            except sa.exc.IntegrityError:  # another launch took it just now
                continue
        if len(got) < count:
            self._release(got)
        return got if len(got) == count else []

    def _release(self, host_ids: list[str]) -> None:
        import sqlalchemy as sa

        from skyhop.state import db
        from skyhop.state.schema import host_claims

        if host_ids:
            with db.engine().begin() as conn:
                conn.execute(sa.delete(host_claims).where(host_claims.c.host_id.in_(host_ids)))

    def _claimed(self, cluster: str) -> list[str]:
        import sqlalchemy as sa

        from skyhop.state import db
        from skyhop.state.schema import host_claims

        with db.engine().connect() as conn:
            return [r.host_id for r in conn.execute(
                sa.select(host_claims.c.host_id).where(host_claims.c.cluster == cluster)
                .order_by(host_claims.c.claimed_at, host_claims.c.host_id))]

    # -- lifecycle ----------------------------------------------------------------------
    def _hosts(self) -> dict[str, PoolHost]:
        return {h.host_id: h for hosts in pools().values() for h in hosts}

    def _runner(self, host: PoolHost) -> Any:
        from skyhop.execute.ssh_runner import SSHRunner

        return SSHRunner(host.host, host.user, host.identity_file, host.port,
                         known_hosts=paths.home() / "known_hosts")

    def prepare(self, cluster: ClusterSpec) -> None:
        pass

    def provision(self, cluster: ClusterSpec, placement: Any, count: int) -> list[Instance]:
        """Claim `count` free hosts of the shape that answer; an unreachable host is skipped
        (and remembered as such) while others remain."""
        pool = placement.region
        shapes = self.shapes(pool)
        fitting = [h for h, s in shapes.items()
                   if "error" not in s and shape_name(s) == placement.instance_type]
        hosts = self._hosts()
        unreachable: dict[str, str] = {}
        while True:
            candidates = [h for h in fitting if h not in unreachable]
            claimed = self._claim(cluster.name, candidates, count)
            if not claimed:
                why = "".join(f"; {h.split(':', 2)[2]}: {e}" for h, e in unreachable.items())
                raise CapacityError(f"pool {pool!r} has fewer than {count} free reachable "
                                    f"{placement.instance_type} host(s) ({len(fitting)} in "
                                    f"all{why})", provider=self.name, region=pool,
                                    instance_type=placement.instance_type)
            with ThreadPoolExecutor(max_workers=len(claimed)) as threads:
                problems = list(threads.map(
                    lambda h: self._problem(hosts[h], cluster.name), claimed))
            bad = {h: p for h, p in zip(claimed, problems, strict=True) if p}
            if not bad:
                return [self._instance(hosts[h], rank) for rank, h in enumerate(claimed)]
            self._release(claimed)
            unreachable.update(bad)
            self._forget_shapes(pool, list(bad))

    def _problem(self, host: PoolHost, cluster: str) -> str | None:
        """Why this host cannot be the cluster's: unreachable, or held by another home."""
        try:
            runner = self._runner(host)
            runner.check()
            code, out = runner.output_of(_claim_on_host_command(cluster))
        except UserError as exc:
            return exc.message
        holder = out.strip()
        if code != 0 or holder not in ("claimed", _claim_owner(cluster)):
            return (f"in use by another skyhop home ({holder or 'being claimed'}); "
                    f"`skyhop down` there frees it")
        return None

    def _forget_shapes(self, pool: str, host_ids: list[str]) -> None:
        """Rediscover these hosts next time (they may have gone away for good)."""
        path = self._cache_path(pool)
        if path.exists():
            cached = json.loads(path.read_text())
            for host_id in host_ids:
                cached.pop(host_id, None)
            path.write_text(json.dumps(cached, indent=1))

    def _instance(self, host: PoolHost, rank: int) -> Instance:
        return Instance(host.host_id, rank, host.host,
                        {"user": host.user, "port": host.port, "pool": host.pool,
                         "identity_file": host.identity_file})

    def instances(self, cluster_name: str) -> list[Instance]:
        hosts = self._hosts()
        return [self._instance(hosts[h], rank)
                for rank, h in enumerate(self._claimed(cluster_name)) if h in hosts]

    def runner(self, cluster_name: str, instance: Instance) -> Any:
        host = self._hosts().get(instance.instance_id)
        if host is None:  # removed from the config since: what state recorded still works
            info = instance.info
            host = PoolHost(info.get("pool", "?"), instance.address or "", int(
                info.get("port", 22)), info["user"], info["identity_file"])
        return self._runner(host)

    def terminate(self, cluster_name: str, instance_ids: list[str]) -> None:
        """Clean the hosts (what skyhop started, its files), then release them. A host that
        cannot be reached is released anyway: it is the owner's machine, not a bill."""
        from skyhop.provision.keys import deauthorize_command

        hosts = self._hosts()

        def clean(host_id: str) -> None:
            host = hosts.get(host_id)
            if host is None:
                return
            runner = self._runner(host)
            try:
                _, out = runner.output_of(_claim_on_host_command(cluster_name))
                if out.strip() not in ("claimed", _claim_owner(cluster_name)):
                    return  # another home holds this host now: nothing of ours to clean
                runner.run(deauthorize_command(cluster_name), cwd="~")
                python = runner.python()
                runner.run(f"{python} -m skyhop.execute.node_cleanup", cwd="~")
                runner.run(_release_on_host_command(cluster_name), cwd="~")
            except UserError:
                pass

        ids = [i for i in instance_ids if i in set(self._claimed(cluster_name))]
        if ids:
            with ThreadPoolExecutor(max_workers=len(ids)) as threads:
                list(threads.map(clean, ids))
        self._release(ids)

    def orphans(self, known: set[str]) -> dict[str, list[str]]:
        import sqlalchemy as sa

        from skyhop.state import db
        from skyhop.state.schema import host_claims

        found: dict[str, list[str]] = {}
        with db.engine().connect() as conn:
            for row in conn.execute(sa.select(host_claims)):
                if row.cluster not in known:
                    found.setdefault(row.cluster, []).append(row.host_id)
        return found

    def teardown(self, cluster_name: str) -> None:
        self._release(self._claimed(cluster_name))

    def stop(self, cluster_name: str, instance_ids: list[str]) -> None:
        raise UserError("pool hosts cannot be stopped, only released", hint="skyhop down")

    def start(self, cluster_name: str, instance_ids: list[str]) -> list[Instance]:
        raise UserError("pool hosts cannot be started", hint="skyhop launch")


# -- claims on the host itself ------------------------------------------------------------
# The state database stops two launches of one home (or of homes sharing a database) from
# taking a host twice. Homes with separate databases can share a pool login too, so the
# claim is also made where every one of them looks: an atomic mkdir on the host, holding
# which home and cluster took it.
HOST_CLAIM_DIR = "\"$HOME/.skyhop-claim\""


def _claim_owner(cluster: str) -> str:
    return f"home {paths.home_id()} cluster {cluster}"


def _claim_on_host_command(cluster: str) -> str:
    """Prints `claimed` when this takes the host (or finds the claim ours already: then the
    owner line), else the current holder's owner line."""
    owner = shlex.quote(_claim_owner(cluster))
    return (f"d={HOST_CLAIM_DIR}; if mkdir -m 700 \"$d\" 2>/dev/null; then "
            f"printf '%s\\n' {owner} > \"$d/owner\" && echo claimed; "
            f"else cat \"$d/owner\" 2>/dev/null; true; fi")


def _release_on_host_command(cluster: str) -> str:
    """Removes the host's claim only when it is this cluster's."""
    owner = shlex.quote(_claim_owner(cluster))
    return (f"d={HOST_CLAIM_DIR}; [ \"$(cat \"$d/owner\" 2>/dev/null)\" != {owner} ] || "
            f"rm -rf \"$d\"")
