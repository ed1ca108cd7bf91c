"""Launch and exec: plan -> provision -> sync -> setup -> run, the same pipeline for every
provider. Intent is written to state before any provider call that spends money."""

from __future__ import annotations

import contextlib
import json
import os
import secrets as secrets_module
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skyhop import paths
from skyhop.errors import UserError
from skyhop.execute import sync
from skyhop.execute.agent import TOKEN_FILE
from skyhop.execute.agent_client import AgentClient, agent_token, check_job_fits, new_token_nonce
from skyhop.execute.reconcile import owner_alive, owner_tag
from skyhop.execute.report import PlainReporter, Reporter
from skyhop.execute.runner import LocalRunner, Runner
from skyhop.execute.ssh_runner import SSHRunner
from skyhop.names import check_env_name, check_name
from skyhop.provision import registry
from skyhop.provision.base import HOME_TAG, Instance
from skyhop.provision.keys import remove_cluster_key
from skyhop.spec.dag import Dag
from skyhop.spec.fields import check_wait_for
from skyhop.spec.task import Task
from skyhop.state.clusters import ClusterStore
from skyhop.state.records import INIT, STOPPED, UP, ClusterRecord, Node

if TYPE_CHECKING:
    from skyhop.optimizer.plan import Plan

AGENT_DIR = ".skyhop/agent"  # under the head node's home
NODE_KEY = "~/.skyhop/keys/node-key"  # on the head of a multi-node SSH cluster


def _row(task: Task, placement: Any) -> dict[str, Any]:
    """The cluster row's description of a placement."""
    return {"provider": placement.provider, "num_nodes": task.num_nodes,
            "hourly_price": placement.hourly_price, "region": placement.region,
            "zone": placement.zone, "instance_type": placement.instance_type,
            "accelerators": placement.accelerators, "use_spot": placement.use_spot,
            "resources": {"vcpus": placement.vcpus, "memory_gib": placement.memory_gib}}


def _owner() -> str:
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass
class LaunchResult:
    cluster: str
    job_id: int | None
    exit_code: int | None  # None when detached or dry-run
    placement: Any = None


def new_cluster_name() -> str:
    return f"skyhop-{secrets_module.token_hex(3)}"


def launch_catalog(dag: Dag):
    """The shipped catalog plus the offers of providers that describe themselves (the local
    machine), and the infra patterns the plan may use: providers that can launch here. Your
    own machine is chosen when no cloud can launch, or when a task asks for `infra: local`."""
    from skyhop.catalog.catalog import load_catalog
    from skyhop.spec.fields import InfraPattern

    catalog = load_catalog()
    enabled = registry.enabled()
    clouds = [p for p in enabled if p != "local"]
    wants_local = any(alt.infra is not None and alt.infra.provider == "local"
                      for task in dag.tasks for alt in task.resources.alternatives())
    allowed = clouds + (["local"] if "local" in enabled and (wants_local or not clouds)
                        else [])
    allowed = check_node_counts(dag, allowed)
    extra = []
    for name in allowed:
        extra.extend(registry.get(name).offers(catalog.accelerators))
    return catalog.merged(extra), [InfraPattern(p) for p in allowed]


def check_node_counts(dag: Dag, providers: list[str]) -> list[str]:
    """The providers that can give every task its `num_nodes`. A task that no provider it
    may use can give that many nodes is refused here, before anything is created."""
    caps = {p: getattr(registry.get(p), "max_nodes", None) for p in providers}
    for task in dag.tasks:
        alternatives = task.resources.alternatives()
        usable = [p for p in providers if any(alt.infra is None or alt.infra.admits_provider(p)
                                               for alt in alternatives)]
        if usable and all(caps[p] is not None and task.num_nodes > caps[p] for p in usable):
            limits = ", ".join(f"{p} gives at most {caps[p]}" for p in usable)
            raise UserError(f"num_nodes: {task.num_nodes} is more nodes than any provider "
                            f"here can give ({limits})", where=task.where("num_nodes"),
                            hint="lower num_nodes, or set up a cloud provider (see "
                                 "`skyhop check`)")
    most = max((t.num_nodes for t in dag.tasks), default=1)
    return [p for p in providers if caps[p] is None or most <= caps[p]] or providers


def plan(dag: Dag, blocklist: Any = None) -> Plan:
    """Place every task on a provider that can launch here."""
    from skyhop.errors import InfeasibleError
    from skyhop.optimizer import optimize
    from skyhop.provision.provisioner import MIN_AVAILABILITY
    from skyhop.tracker.store import TrackerStore

    catalog, allowed = launch_catalog(dag)
    now = time.time()
    try:  # places that just failed are skipped while others remain (the tracker)
        return optimize(dag, catalog, allowed_infra=allowed, blocklist=blocklist,
                        availability=TrackerStore().tracker(now).snapshot(now),
                        min_availability=MIN_AVAILABILITY)
    except UserError as exc:
        problems = [line for p in allowed
                    for line in getattr(registry.get(p.provider), "diagnose", list)()]
        if problems:  # e.g. pool hosts that could not be reached: the real reason
            exc.message += "\n" + "\n".join(f"  {line}" for line in problems)
            exc.args = (exc.message,)
        if not isinstance(exc, InfeasibleError) or not (exc.culprit or "").startswith(
                "allowed infra"):
            raise
        # The catalog has it, but not where we can launch: say what can launch here.
        here = _launchable(catalog, allowed)
        raise InfeasibleError(
            exc.message.split(": the last candidates")[0]
            + f" on the providers that can launch here: {here}",
            where=exc.where,
            hint="`skyhop optimize FILE` shows where it would run on every cloud; "
                 "`skyhop check` shows which providers can launch here and why not") from None


def _launchable(catalog: Any, allowed: list[Any]) -> str:
    """The providers a plan may use, with the shape of machines that describe themselves."""
    parts = []
    for pattern in allowed:
        own = registry.get(pattern.provider).offers(catalog.accelerators)
        parts.append(f"{pattern.provider} ({_shape(own[0])})" if own else pattern.provider)
    return "; ".join(parts)


def _shape(offer: Any) -> str:
    gpus = (f"{offer.accelerator_count:g}x {offer.accelerator}" if offer.accelerator
            else "no GPUs")
    return f"this machine has {offer.vcpus:g} vCPUs, {offer.memory_gib:g} GiB, {gpus}"


def resolve_env(task: Task, overrides: dict[str, str]) -> tuple[dict[str, str],
                                                                  dict[str, str]]:
    """(envs, secrets) with --env overrides; every null value must be given."""
    envs = {k: v for k, v in task.envs.items()}
    secret_values = {k: (v.get_secret_value() if v is not None else None)
                     for k, v in task.secrets.items()}
    for key, value in overrides.items():
        check_env_name(key, where="env")
        if key in secret_values:
            secret_values[key] = value
        else:
            envs[key] = value
    missing = [k for k, v in {**envs, **secret_values}.items() if v is None]
    if missing:
        raise UserError(f"no value for {', '.join(missing)}",
                        where=task.where("envs" if missing[0] in envs else "secrets"),
                        hint=f"pass --env {missing[0]}=VALUE")
    check_job_fits(task.run or "true", envs, secret_values)  # type: ignore[arg-type]
    return envs, secret_values  # type: ignore[return-value]


def why_not_fits(record: ClusterRecord, task: Task) -> str | None:
    """None when the existing cluster meets one of the task's requirement sets."""
    if task.num_nodes > record.num_nodes:
        return f"it has {record.num_nodes} node(s), the task needs {task.num_nodes}"
    have = record.accelerators or {}
    shape = record.resources or {}
    reasons = []
    for alt in task.resources.alternatives():
        if alt.infra and not alt.infra.matches(record.provider, record.region, record.zone):
            reasons.append(f"it is on {record.infra}, not {alt.infra}")
        elif alt.accelerators and not any(
                have.get(name, 0) >= count or any(k.lower() == name.lower() and v >= count
                                                   for k, v in have.items())
                for name, count in alt.accelerators):
            reasons.append(f"it has {have or 'no accelerators'}, not "
                           + " or ".join(f"{n}:{c:g}" for n, c in alt.accelerators))
        elif alt.cpus and not (shape.get("vcpus") or 0) >= alt.cpus.value:
            reasons.append(f"it has {shape.get('vcpus')} vCPUs, not {alt.cpus}")
        elif alt.instance_type and alt.instance_type != record.instance_type:
            reasons.append(f"it is {record.instance_type}, not {alt.instance_type}")
        else:
            return None
    return reasons[0] if reasons else None


class Launcher:
    def __init__(self, store: ClusterStore | None = None, reporter: Reporter | None = None):
        self.store = store or ClusterStore()
        self.reporter = reporter or PlainReporter()

    # -- clusters ------------------------------------------------------------------------
    def runners(self, record: ClusterRecord) -> list[Runner]:
        provider = registry.get(record.provider)
        return [provider.runner(record.name, Instance(n.instance_id, n.rank, n.address,
                                                      n.info)) for n in record.nodes]

    def agent(self, record: ClusterRecord) -> AgentClient:
        head = self.runners(record)[0]
        nonce = record.handle.get("agent_nonce")
        return AgentClient(record.name, record.handle["agent_dir"], head.connect_agent,
                           agent_token(nonce) if nonce else None)

    def _start_agent(self, record: ClusterRecord) -> None:
        runners = self.runners(record)
        head = runners[0]
        agent_dir = head.resolve(f"~/{AGENT_DIR}")
        nodes = []
        for node, runner in zip(record.nodes, runners, strict=True):
            entry = {"rank": node.rank, "address": node.info.get("private_ip") or node.address,
                     "dir": node.info.get("dir") or runner.home}
            if node.rank > 0 and isinstance(runner, SSHRunner):
                # the head reaches the other nodes itself, with the cluster's own key
                entry["ssh"] = {"user": runner.user, "port": runner.port, "key": NODE_KEY}
            nodes.append(entry)
        if any("ssh" in n for n in nodes):
            self._install_cluster_key(record.name, runners)
        info = {"name": record.name, "agent_dir": agent_dir, "nodes": nodes,
                "gpus_per_node": sum((record.accelerators or {}).values()),
                "cpus_per_node": (record.resources or {}).get("vcpus") or 1,
                "autostop": ({"idle_minutes": record.autostop_minutes,
                              "down": record.autostop_down,
                              "wait_for": record.handle.get("autostop_wait_for"),
                              "command": record.handle.get("autostop_command")}
                             if record.autostop_minutes is not None else None)}
        info_path = f"{agent_dir}/cluster.json"
        head.write_file(info_path, json.dumps(info).encode())
        # A new token for each agent: the node keeps it (0600), the handle only its nonce.
        nonce = new_token_nonce()
        head.write_file(f"{agent_dir}/{TOKEN_FILE}", agent_token(nonce).encode())
        self.store.update(record.name, handle={**record.handle, "agent_nonce": nonce})
        env = {}
        if isinstance(head, LocalRunner):
            # The agent runs `skyhop stop|down` for autostop: it must find this same state.
            env["SKYHOP_HOME"] = str(paths.home())
            if os.environ.get("SKYHOP_DB_URL"):
                env["SKYHOP_DB_URL"] = os.environ["SKYHOP_DB_URL"]
        python = head.python()  # already quoted for the shell
        log = shlex.quote(f"{agent_dir}/agent.log")
        code = head.run(f"nohup {python} -m skyhop.execute.agent {shlex.quote(info_path)} "
                        f">> {log} 2>&1 &", env=env, cwd="~")
        if code != 0:
            raise UserError(f"cluster {record.name!r}: the agent could not be started "
                            f"(exit code {code})")
        self.agent(self.store.get(record.name) or record).wait_ready()

    @staticmethod
    def _install_cluster_key(name: str, runners: list[Runner]) -> None:
        """The head reaches the workers with a key pair of this cluster alone (never the
        user's own key nor skyhop's): its public part is authorized on every node, its
        private part goes to the head only."""
        from skyhop.provision import keys

        private, public = keys.ensure_cluster_key(name)
        for runner in runners:
            assert isinstance(runner, SSHRunner)
            code, out = runner.output_of(keys.authorize_command(public))
            if code != 0:
                raise UserError(f"cluster {name!r}: cannot authorize the cluster's key on "
                                f"a node: {out.strip()[:200]}")
        runners[0].write_file(NODE_KEY, private.read_bytes())

    def provision(self, name: str, task: Task, placement: Any,
                  retry_until_up: bool = False, blocklist: Any = None) -> ClusterRecord:
        """Create the cluster, failing over across zones, regions and providers."""
        check_name(name, "cluster")  # every face checks first; this is the last line
        if not self.store.reserve(name, owner=owner_tag(), **_row(task, placement)):
            return self._wait_for(name)
        try:
            placement, instances = self._provision_with_failover(name, task, placement,
                                                                 retry_until_up, blocklist)
            provider = registry.get(placement.provider)
            self.store.set_nodes(name, [Node(i.rank, i.instance_id, i.address, i.info)
                                        for i in instances])
            head_home = provider.runner(name, instances[0]).resolve(f"~/{AGENT_DIR}")
            current = self.store.get(name)
            handle = current.handle if current is not None else {}
            self.store.update(name, handle={**handle, "agent_dir": head_home})
            record = self.store.get(name)
            assert record is not None
            self._start_agent(record)
        except BaseException:
            self.reporter.stage("provision", f"{name}: failed; cleaning up")
            self.teardown(name)
            raise
        self.store.update(name, status=UP)
        record = self.store.get(name)
        assert record is not None
        self.store.open_usage(record)
        return record

    def _provision_with_failover(self, name: str, task: Task, placement: Any,
                                 retry_until_up: bool, blocklist: Any = None
                                 ) -> tuple[Any, list[Instance]]:
        from skyhop.provision.provisioner import Provisioner
        from skyhop.tracker.store import TrackerStore

        catalog, allowed = launch_catalog(Dag([task]))
        attempts = TrackerStore(self.store.engine)
        provisioner = Provisioner(
            catalog, allowed, registry.get, tracker=attempts.tracker(time.time()),
            record=lambda attempt: attempts.record(attempt, cluster=name),
            report=lambda message: self.reporter.stage("provision", message))

        def on_placement(where: Any) -> None:
            self.store.update(name, **_row(task, where))  # intent before any spending
            self.reporter.stage("provision", f"{name}: {task.num_nodes} x "
                                f"{where.instance_type} on {where.infra} "
                                f"(${where.hourly_price:.2f}/h per node)")

        placement, instances, _ = provisioner.provision(
            name, task, first=placement, on_placement=on_placement,
            retry_until_up=retry_until_up,
            tags={"skyhop-owner": _owner(), HOME_TAG: paths.home_id()},
            blocklist=blocklist, created=lambda *made: self._record_created(name, *made))
        return placement, instances

    def _record_created(self, name: str, provider: str, region: str | None,
                        ids: list[str]) -> None:
        """Every id a provider returns, and every region it made anything in, go into the
        row's `handle.created` ({provider: {region: [ids]}}) at once, so `down` and
        `status --refresh` find them whatever fails next."""
        record = self.store.get(name)
        if record is None:
            return
        handle = dict(record.handle or {})
        created = {p: dict(r) for p, r in (handle.get("created") or {}).items()}
        known = created.setdefault(provider, {}).setdefault(region or "", [])
        if ids or not known:
            created[provider][region or ""] = sorted({*known, *ids})
            self.store.update(name, handle={**handle, "created": created})

    def _wait_for(self, name: str, timeout: float = 300.0) -> ClusterRecord:
        """Another process is creating this cluster: wait for it, then reuse it."""
        self.reporter.stage("provision", f"{name}: being created by another launch; waiting")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.store.get(name)
            if record is None:
                raise UserError(f"cluster {name!r} failed to come up in another launch")
            if record.status == UP:
                return record
            time.sleep(0.1)
        raise UserError(f"cluster {name!r} is still being created after {timeout:g} s")

    def teardown(self, name: str) -> None:
        """Terminate whatever exists of the cluster and forget it."""
        record = self.store.get(name)
        if record is None:
            return
        provider = registry.get(record.provider)
        self.store.update(name, status="TERMINATING")
        if record.handle.get("agent_dir"):
            with contextlib.suppress(UserError):
                self.agent(record).shutdown()
        created = record.handle.get("created") or {}
        # Other providers an earlier attempt made something in (failover), then this one.
        for other in sorted(set(created) - {record.provider}):
            leftover = registry.get(other)
            leftover.terminate(name, [i for ids in created[other].values() for i in ids])
            leftover.teardown(name)
        recorded = [n.instance_id for n in record.nodes] + [
            i for ids in created.get(record.provider, {}).values() for i in ids]
        found = [i.instance_id for i in provider.instances(name)]
        provider.terminate(name, sorted({*recorded, *found}))
        provider.teardown(name)
        self.store.remove(name)
        remove_cluster_key(name)

    def ensure_up(self, name: str, task: Task, placement: Any,
                  retry_until_up: bool = False, blocklist: Any = None) -> ClusterRecord:
        record = self.store.get(name)
        self.check_files(task, placement.provider if placement is not None else None,
                         record.provider if record is not None else None)
        if record is None:
            return self.provision(name, task, placement, retry_until_up, blocklist)
        if record.status == INIT:
            if owner_alive(record.owner):  # another launch is creating it right now
                record = self._wait_for(name)
            else:  # an interrupted launch: start over
                self.teardown(name)
                return self.provision(name, task, placement, retry_until_up, blocklist)
        misfit = why_not_fits(record, task)
        if misfit:
            raise UserError(f"cluster {name!r} cannot run this task: {misfit}",
                            hint="launch on a new cluster name, or `skyhop down` this one")
        if record.status == STOPPED:
            self.start(record)
            record = self.store.get(name)
        assert record is not None
        self.reporter.stage("provision", f"{name}: reusing ({record.infra}, "
                            f"{record.instance_type})")
        return record

    def start(self, record: ClusterRecord) -> None:
        provider = registry.get(record.provider)
        self.reporter.stage("provision", f"{record.name}: starting")
        started = provider.start(record.name, [n.instance_id for n in record.nodes])
        if started:  # a restarted VM may come back with new addresses
            self.store.set_nodes(record.name, [Node(i.rank, i.instance_id, i.address, i.info)
                                               for i in started])
            record = self.store.get(record.name) or record
        self._start_agent(record)
        self.store.update(record.name, status=UP)
        fresh = self.store.get(record.name)
        assert fresh is not None
        self.store.open_usage(fresh)

    # -- running -------------------------------------------------------------------------
    @staticmethod
    def check_files(task: Task, *provider_names: str | None) -> None:
        """Workdir and mount sources exist and mount targets suit the providers: found
        before anything is provisioned."""
        sync.check_task_files(task, [registry.get(p) for p in provider_names if p])

    def sync(self, record: ClusterRecord, task: Task) -> None:
        runners = self.runners(record)[:task.num_nodes]
        if not (task.workdir or task.file_mounts):
            return
        self.reporter.stage("sync", f"workdir {task.workdir or '-'}, "
                            f"{len(task.file_mounts)} file mount(s)")

        def one(runner: Runner) -> list[sync.SyncResult | None]:
            return [sync.sync_workdir(runner, task.workdir),
                    sync.sync_file_mounts(runner, task.file_mounts)]

        with ThreadPoolExecutor(max_workers=len(runners)) as pool:
            results = [r for rs in pool.map(one, runners) for r in rs if r is not None]
        self.reporter.stage("sync", f"{sum(r.copied for r in results)} file(s) sent, "
                            f"{sum(r.unchanged for r in results)} unchanged, "
                            f"{sum(r.removed for r in results)} removed")

    def setup(self, record: ClusterRecord, task: Task, env: dict[str, str]) -> int:
        """Run `setup` on every node in parallel, unless it already ran unchanged."""
        if not task.setup:
            return 0
        digest = sync.content_hash(task.setup, json.dumps(sorted(env)),
                                   workdir=task.workdir)
        if record.setup_hash == digest:
            self.reporter.stage("setup", "unchanged; skipped")
            return 0
        self.reporter.stage("setup", f"on {task.num_nodes} node(s)")
        runners = self.runners(record)[:task.num_nodes]
        multi = len(runners) > 1

        ips = "\n".join(n.address or "127.0.0.1" for n in record.nodes[:len(runners)])

        def one(rank: int) -> int:
            prefix = f"(node-{rank}) " if multi else ""
            node_env = {**env, "SKYHOP_NODE_RANK": str(rank), "SKYHOP_NODE_IPS": ips,
                        "SKYHOP_NUM_NODES": str(len(runners)),
                        # SkyPilot's names for these during setup
                        "SKYPILOT_SETUP_NODE_RANK": str(rank),
                        "SKYPILOT_SETUP_NODE_IPS": ips,
                        "SKYPILOT_NUM_NODES": str(len(runners))}
            return runners[rank].run(task.setup, env=node_env,
                                     output=lambda line: self.reporter.output(prefix + line))

        with ThreadPoolExecutor(max_workers=len(runners)) as pool:
            codes = list(pool.map(one, range(len(runners))))
        failed = next((c for c in codes if c != 0), 0)
        if failed == 0:
            self.store.update(record.name, setup_hash=digest)
        return failed

    def submit(self, record: ClusterRecord, task: Task, envs: dict[str, str],
               secret_values: dict[str, str], detach: bool, *, job_name: str | None = None,
               task_id: str | None = None) -> LaunchResult:
        client = self.agent(record)
        gpus = max((c for _, c in (task.resources.accelerators or [])), default=0)
        cpus = task.resources.cpus.value if task.resources.cpus else None
        job_id = client.submit({"name": job_name or task.name, "run": task.run or "true",
                                "envs": envs, "secrets": secret_values,
                                "num_nodes": task.num_nodes, "gpus": gpus, "cpus": cpus,
                                "task_id": task_id})
        self.reporter.stage("run", f"job {job_id} on {record.name}")
        if detach:
            return LaunchResult(record.name, job_id, None)
        return self.follow(record, job_id)

    def follow(self, record: ClusterRecord, job_id: int) -> LaunchResult:
        """Stream a queued job's output until it ends (Ctrl-C cancels it)."""
        client = self.agent(record)
        try:
            job = client.logs(job_id, follow=True, output=self.reporter.output)
        except KeyboardInterrupt:
            self.reporter.stage("run", f"interrupted: cancelling job {job_id}")
            client.cancel([job_id])
            raise
        self.reporter.stage("run", f"job {job_id} {job['status'].lower()}"
                            f" (exit code {job['exit_code']})")
        return LaunchResult(record.name, job_id, job["exit_code"])

    def launch_task(self, task: Task, placement: Any, cluster: str | None,
                    env_overrides: dict[str, str], detach: bool,
                    retry_until_up: bool = False, autostop: Any = None) -> LaunchResult:
        """`autostop` (an `Autostop`) overrides the task's `resources.autostop`; it is armed
        once the job is queued (or setup failed), so it cannot fire before the job."""
        envs, secret_values = resolve_env(task, env_overrides)
        name = cluster or new_cluster_name()
        record = self.ensure_up(name, task, placement, retry_until_up)
        autostop = autostop or task.resources.autostop
        self.sync(record, task)
        code = self.setup(record, task, {**envs, **secret_values})
        if code != 0:
            self.reporter.stage("setup", f"failed with exit code {code}")
            if autostop is not None:
                self.set_autostop(record, autostop.idle_minutes, autostop.down,
                                  autostop.wait_for)
            return LaunchResult(name, None, code, placement)
        if autostop is None:
            result = self.submit(record, task, envs, secret_values, detach)
        else:  # queue the job, arm autostop, then follow the job's output
            result = self.submit(record, task, envs, secret_values, True)
            self.set_autostop(record, autostop.idle_minutes, autostop.down, autostop.wait_for)
            if not detach:
                result = self.follow(record, result.job_id)
        result.placement = placement
        return result

    def set_autostop(self, record: ClusterRecord, idle_minutes: int | None,
                     down: bool, wait_for: str = "jobs_and_ssh") -> None:
        """Arm (with None: disarm) autostop; the cluster's agent enforces it, so it works
        after the client exits. On the local machine the agent runs `skyhop stop|down`;
        elsewhere the head has neither skyhop's state nor credentials, so the provider arms
        the nodes to stop (or terminate) on their own OS shutdown, which the agent runs.
        `wait_for`: what counts as activity (`fields.AUTOSTOP_WAIT_FOR`)."""
        if idle_minutes is not None and idle_minutes < 0:
            raise UserError("autostop idle minutes must be >= 0")
        try:
            check_wait_for(wait_for)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        command = None
        if record.provider == "local" and wait_for == "jobs_and_ssh":
            wait_for = "jobs"  # the user's own SSH sessions into this machine are not the cluster's
        if record.provider != "local":
            provider = registry.get(record.provider)
            arm = getattr(provider, "arm_autostop", None)
            if arm is None and idle_minutes is not None:
                raise UserError(f"autostop is not supported on {record.provider} clusters "
                                "(their machines cannot stop themselves)",
                                hint=f"`skyhop down {record.name}` when done; managed jobs "
                                     "tear down their clusters themselves")
            if arm is not None:
                command = arm(record.name, provider.instances(record.name),
                              None if idle_minutes is None else down)
        self.store.update(record.name, autostop_minutes=idle_minutes, autostop_down=down,
                          handle={**record.handle, "autostop_command": command,
                                  "autostop_wait_for": wait_for})
        self.agent(record).set_autostop(idle_minutes, down, command, wait_for)
        if idle_minutes is not None:
            self.reporter.stage("autostop", f"{record.name}: "
                                f"{'down' if down else 'stop'} after {idle_minutes} idle min")

    def exec(self, name: str, task: Task, env_overrides: dict[str, str],
             detach: bool) -> LaunchResult:
        """Queue a task on an existing cluster (sync the workdir, no setup)."""
        check_name(name, "cluster")
        record = self.store.get(name)
        if record is None:
            raise UserError(f"no cluster named {name!r}", hint="see `skyhop status`")
        if record.status != UP:
            raise UserError(f"cluster {name!r} is {record.status}",
                            hint=f"`skyhop start {name}` first")
        if task.num_nodes > record.num_nodes:
            raise UserError(f"the task needs {task.num_nodes} nodes; cluster {name!r} has "
                            f"{record.num_nodes}")
        envs, secret_values = resolve_env(task, env_overrides)
        self.check_files(task, record.provider)
        self.sync(record, task)
        return self.submit(record, task, envs, secret_values, detach)
