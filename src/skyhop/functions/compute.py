"""`skyhop.Compute`: an ephemeral pool of nodes that exists only inside its `with` block.

    with skyhop.Compute(accelerators="A100:1", nodes=2, pip=["transformers"]) as pool:
        loss = train(lr=3e-4) >> pool

Entering plans the pool with the same optimizer as tasks (alternatives given as
`skyhop.Spec(...)`, cheapest first unless `ordered=True`), provisions it through the
launcher with the same failover (each alternative through its own provider), prepares each
node's environment and starts one worker per node. Leaving the block, an exception, Ctrl-C
or SIGTERM tears it all down. If this process is killed outright, the pool's cluster row
says it is ephemeral and whose it is: `skyhop status --refresh` (or `skyhop gc`) reclaims
it once that process is gone (same machine) or its heartbeat lease has lapsed (another
machine), and the workers have already exited when their channel closed.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from skyhop.errors import UserError
from skyhop.execute.report import PlainReporter
from skyhop.functions import environment
from skyhop.functions.connection import WorkerConnection
from skyhop.functions.dispatch import Dispatcher
from skyhop.names import check_name

LEASE_S = 180.0  # an ephemeral pool whose client stopped beating this long is reclaimed
HEARTBEAT_S = 30.0
# Libraries whose pickles depend on their version: compared between client and nodes.
SENSITIVE = {"numpy": "numpy", "torch": "torch", "jax": "jax", "pandas": "pandas",
             "scipy": "scipy", "sklearn": "scikit-learn", "pyarrow": "pyarrow",
             "tensorflow": "tensorflow"}

_active: list[Compute] = []


class VersionMismatchWarning(UserWarning):
    """A library this client uses has another version on a node."""


@dataclass(frozen=True)
class Spec:
    """One acceptable kind of node (the same vocabulary as a task's resources)."""

    infra: str | None = None
    accelerators: str | dict | None = None
    cpus: str | int | float | None = None
    memory: str | int | float | None = None
    instance_type: str | None = None
    use_spot: bool | None = None
    disk_size: int | None = None
    image_id: str | None = None
    max_hourly_cost: float | None = None

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


class Compute:
    """An ephemeral pool: `with skyhop.Compute(...) as pool:` (see the module docstring)."""

    def __init__(self, *specs: Spec, infra: str | None = None,
                 accelerators: str | dict | None = None, cpus: str | int | None = None,
                 memory: str | int | None = None, instance_type: str | None = None,
                 use_spot: bool | None = None, nodes: int = 1, ordered: bool = False,
                 pip: Iterable[str] = (), apt: Iterable[str] = (),
                 env: dict[str, str] | None = None, include: Iterable[str | Path] = (),
                 python: str | None = None, name: str | None = None,
                 retry_until_up: bool = False, quiet: bool = False):
        for spec in specs:
            if not isinstance(spec, Spec):
                raise UserError(f"skyhop.Compute: alternatives must be skyhop.Spec(...), not "
                                f"{type(spec).__name__}",
                                hint="Compute(skyhop.Spec(infra='aws'), skyhop.Spec(infra="
                                     "'local'))")
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise UserError(f"skyhop.Compute: nodes must be a whole number >= 1, not {nodes!r}",
                            hint="e.g. skyhop.Compute(nodes=2)")
        self.specs = list(specs)
        self.shared = Spec(infra=infra, accelerators=accelerators, cpus=cpus, memory=memory,
                           instance_type=instance_type, use_spot=use_spot)
        self.num_nodes = nodes
        self.ordered = ordered
        self.environment = environment.Environment(
            pip=list(pip), apt=list(apt), env=dict(env or {}),
            include=[Path(p).expanduser() for p in include], python=python)
        self.environment.validate()
        self.name = (f"fn-{secrets.token_hex(3)}" if name is None else
                     check_name(name, "pool", where="skyhop.Compute(name=...)"))
        self.retry_until_up = retry_until_up
        self.reporter = PlainReporter(quiet=quiet)
        self.task = self._task()  # bad resources are reported here, before anything runs
        self.record: Any = None
        self.provider: str | None = None
        self.infra: str | None = None
        self.labels: list[str] = []
        self.startup_seconds: float | None = None
        self._launcher: Any = None
        self._dispatcher: Dispatcher | None = None
        self._runners: list[Any] = []
        self._setups: list[environment.NodeSetup] = []
        self._settings: list[dict[str, Any]] = []
        self._beat_stop = threading.Event()
        self._old_sigterm: Any = None
        self._open = False
        self._used = False
        self._closed = False

    # -- the implicit target ---------------------------------------------------------------
    @staticmethod
    def current() -> Compute:
        """The innermost open pool."""
        if not _active:
            raise UserError("no skyhop.Compute pool is open",
                            hint="with skyhop.Compute(...) as pool: value = fn(x) >> pool")
        return _active[-1]

    # -- spec -> task ----------------------------------------------------------------------
    def _task(self) -> Any:
        from pydantic import ValidationError

        from skyhop.spec import Resources, Task

        shared = self.shared.values()
        options = [spec.values() for spec in self.specs]
        try:
            if len(options) > 1:
                key = "ordered" if self.ordered else "any_of"
                resources = Resources(**shared, **{key: tuple(Resources(**o) for o in options)})
            else:
                resources = Resources(**{**shared, **(options[0] if options else {})})
            return Task(name=self.name, num_nodes=self.num_nodes, resources=resources)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error.get("loc", ()))
            raise UserError(f"skyhop.Compute: {where}: {error.get('msg')}",
                            hint="the same values as a task's resources, e.g. "
                                 "accelerators='A100:8', cpus='8+', infra='aws/us-*'") from None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Compute:
        if self._used:
            raise UserError("this skyhop.Compute was already used; make a new one")
        self._used = True
        started = time.perf_counter()
        try:
            self._provision()
            self._start_workers()
        except BaseException:
            self._teardown()
            raise
        self.startup_seconds = time.perf_counter() - started
        self._open = True
        _active.append(self)
        self._trap_sigterm()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and destroy the pool's machines (idempotent)."""
        if self in _active:
            _active.remove(self)
        self._open = False
        if self._closed:
            return
        self._closed = True
        self._restore_sigterm()
        with _deferred_interrupts():
            self._teardown()

    def _provision(self) -> None:
        from skyhop.execute.launcher import Launcher, plan
        from skyhop.spec import Dag

        self._launcher = Launcher(reporter=self.reporter)
        if self._launcher.store.get(self.name) is not None:
            raise UserError(f"a cluster named {self.name!r} already exists",
                            hint="a pool is ephemeral: give it a new name, or leave name out")
        placement = plan(Dag([self.task])).tasks[0]
        record = self._launcher.provision(self.name, self.task, placement,
                                          self.retry_until_up)
        # Ephemeral, with a lease: reconciliation reclaims it once this process is gone.
        self._launcher.store.update(self.name, handle={
            **record.handle, "ephemeral": True, "lease_s": LEASE_S, "heartbeat": time.time()})
        self.record = self._launcher.store.get(self.name) or record
        self.provider, self.infra = self.record.provider, self.record.infra
        threading.Thread(target=self._heartbeat, name="skyhop-lease", daemon=True).start()

    def _heartbeat(self) -> None:
        while not self._beat_stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat only shortens the lease
                handle = {**self.record.handle, "heartbeat": time.time()}
                self._launcher.store.update(self.name, handle=handle)

    def _start_workers(self) -> None:
        self._runners = self._launcher.runners(self.record)
        nodes = self.record.nodes
        self.labels = [f"node-{n.rank}" if self.provider == "local" else
                       f"node-{n.rank} ({self._runners[n.rank].label})" for n in nodes]
        env = self.environment
        pip_dir = None
        if env.pip and self.provider == "local":  # one machine: install once for all nodes
            if env.include:  # what pip may read from ~/.skyhop/functions/code
                environment.install_code(self._runners[0], env.include)
            pip_dir = environment.install_pip(
                self._runners[0], environment.python_command(self._runners[0], env.python),
                env.pip, self.labels[0])
        self.reporter.stage("functions", f"starting {len(nodes)} worker(s)")
        self._dispatcher = Dispatcher(self._restart)
        with ThreadPoolExecutor(max_workers=len(nodes)) as threads:
            self._setups = list(threads.map(
                lambda r: environment.prepare(self._runners[r], env, self.labels[r], pip_dir),
                range(len(nodes))))
            started = [threads.submit(self._connect, rank) for rank in range(len(nodes))]
            conns = [f.result() for f in started if f.exception() is None]
        for conn in conns:  # the ones that started are stopped by teardown if others failed
            self._dispatcher.add(conn)
        failed = next((f.exception() for f in started if f.exception() is not None), None)
        if failed is not None:
            raise failed
        self._check_python(conns)
        addresses = [n.info.get("private_ip") or n.address or "127.0.0.1" for n in nodes]
        head_port = int(conns[0].hello["port"])
        check = self._libraries()
        self._settings = [{
            "env": self._setups[rank].env, "sys_path": self._setups[rank].sys_path,
            "check": sorted(check),
            "info": {"rank": rank, "node_count": len(nodes), "head_addr": addresses[0],
                     "port": head_port, "addresses": addresses, "pool": self.name,
                     "provider": self.provider}} for rank in range(len(nodes))]
        with ThreadPoolExecutor(max_workers=len(nodes)) as threads:
            readies = list(threads.map(lambda c: c.initialize(self._settings[c.rank]), conns))
        self._check_libraries(check, readies)

    def _connect(self, rank: int) -> WorkerConnection:
        stream = self._runners[rank].open_process(self._setups[rank].command,
                                                  env=self._setups[rank].env)
        assert self._dispatcher is not None
        conn = WorkerConnection(rank, self.labels[rank], stream, self._dispatcher)
        try:
            conn.handshake()
        except BaseException:
            conn.kill("it did not start")
            raise
        return conn

    def _restart(self, rank: int) -> WorkerConnection:
        """A fresh worker for a rank whose worker was lost."""
        conn = self._connect(rank)
        self._check_python([conn])
        conn.initialize(self._settings[rank])
        return conn

    def _check_python(self, conns: list[WorkerConnection]) -> None:
        here = sys.version_info[:2]
        for conn in conns:
            there = tuple(conn.hello["python"][:2])
            if there != here:
                version = ".".join(map(str, conn.hello["python"]))
                raise UserError(
                    f"{conn.label} runs Python {version} ({conn.hello.get('executable')}); "
                    f"this client runs {sys.version.split()[0]}: functions are pickled by "
                    "value and need the same Python major.minor on both sides",
                    hint=f"run this client on Python {version.rsplit('.', 1)[0]}, install "
                         f"Python {here[0]}.{here[1]} on the node, or pass python='python"
                         f"{here[0]}.{here[1]}' to skyhop.Compute")

    def _libraries(self) -> dict[str, str]:
        """{distribution: version here} of version-sensitive libraries this client uses,
        and of those it asked the nodes to install."""
        from importlib import metadata

        wanted = {dist for module, dist in SENSITIVE.items() if module in sys.modules}
        for requirement in self.environment.pip:
            name = requirement.split(";")[0].strip()
            for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", " "):
                name = name.split(sep)[0]
            if name and not name.startswith(("-", ".", "/")) and name.replace(
                    "-", "_") in sys.modules:
                wanted.add(name)
        found = {}
        for dist in wanted:
            with contextlib.suppress(metadata.PackageNotFoundError):
                found[dist] = metadata.version(dist)
        return found

    def _check_libraries(self, here: dict[str, str], readies: list[dict[str, Any]]) -> None:
        def major_minor(version: str) -> str:
            return ".".join(version.split("+")[0].split(".")[:2])

        for label, ready in zip(self.labels, readies, strict=True):
            for dist, version in (ready.get("versions") or {}).items():
                if version and dist in here and major_minor(version) != major_minor(here[dist]):
                    warnings.warn(
                        f"{label} has {dist} {version}, this client {here[dist]}: values "
                        f"of {dist} may not unpickle on the other side (install the same "
                        f"version, e.g. pip=['{dist}=={here[dist]}'])",
                        VersionMismatchWarning, stacklevel=4)

    def _teardown(self) -> None:
        self._beat_stop.set()
        if self._dispatcher is not None:
            self._dispatcher.close()
            slots = self._dispatcher.slots
            with ThreadPoolExecutor(max_workers=max(1, len(slots))) as threads:
                list(threads.map(lambda s: s.conn.shutdown(), slots))
        if self.record is not None:
            self.reporter.stage("functions", f"{self.name}: tearing down")
            self._launcher.teardown(self.name)
        # (a failed provision was already cleaned up by the launcher)

    # -- SIGTERM: leave the with block as for an exception ---------------------------------
    def _trap_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            def leave(signum: int, frame: Any) -> None:
                raise SystemExit(128 + signum)

            self._old_sigterm = signal.signal(signal.SIGTERM, leave)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and (
                threading.current_thread() is threading.main_thread()):
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # -- dispatch --------------------------------------------------------------------------
    @property
    def dispatcher(self) -> Dispatcher:
        if not self._open or self._dispatcher is None:
            raise UserError("the pool is not open",
                            hint="send calls inside `with skyhop.Compute(...) as pool:`")
        return self._dispatcher

    def run(self, call: Any) -> Any:
        """`call >> pool`: run on one node and return the value."""
        return self.dispatcher.run(call)

    def broadcast(self, call: Any) -> list[Any]:
        """`call @ pool`: run on every node; the values in rank order."""
        return self.dispatcher.broadcast(call)

    def submit(self, call: Any) -> Future:
        """`call > pool`: start on one node; a Future of the value."""
        return self.dispatcher.submit(call)

    def run_group(self, group: Any) -> Any:
        return self.dispatcher.run_group(group)

    def submit_group(self, group: Any) -> Future:
        return self.dispatcher.submit_group(group)

    def broadcast_group(self, group: Any) -> tuple[list, ...]:
        return self.dispatcher.broadcast_group(group)

    def map(self, fn: Any, items: Iterable[Any], max_in_flight: int | None = None
            ) -> Iterator[Any]:
        """fn(item) for every item across the nodes, values in order, lazily: at most
        `max_in_flight` calls are sent and not yet consumed (default 64 per node)."""
        return self.dispatcher.map(fn, items, max_in_flight)

    @property
    def size(self) -> int:
        return self.num_nodes

    def __repr__(self) -> str:
        where = f" on {self.infra}" if self.infra else ""
        return f"<skyhop.Compute {self.name}: {self.num_nodes} node(s){where}>"


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Ctrl-C during teardown is held until the machines are gone, then raised."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


@atexit.register
def _close_all() -> None:
    """A pool left open when the interpreter exits (a notebook kernel) is torn down."""
    for pool in list(reversed(_active)):
        with contextlib.suppress(Exception):
            pool.close()
