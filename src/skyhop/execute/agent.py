"""The cluster agent: runs on the head node for the cluster's whole life.

It owns the cluster's job queue (FIFO within the nodes' resources), runs each job's command
on every node with the rank variables, keeps the logs, and enforces autostop, so all of this
keeps working after the client has exited. Clients talk to it over a Unix socket in the
agent's own folder (mode 0700: no other user can even connect), with length-prefixed JSON
messages of bounded size; every request carries the cluster's token (made at launch, kept
0600 beside the agent), so another skyhop home on the same login is refused too. See
`agent_client.py`. Job metadata is in a small SQLite file beside the logs; secret values are
only ever held in memory.

    python -m skyhop.execute.agent CLUSTER_INFO_JSON
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import shlex
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyhop.execute.runner import NODE_MARKER, LocalRunner, Runner, short_unix_path
from skyhop.execute.sessions import interactive_ssh_sessions

PENDING, RUNNING = "PENDING", "RUNNING"
SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
LOG_CHUNK = 1 << 20  # bytes of log per message: a long log never sits whole in memory
DEFAULT_CPU_DEMAND = 0.5  # a job that names no CPUs still takes a share (as SkyPilot does)


def utf8_boundary(data: bytes) -> int:
    """The length of the longest prefix of `data` that does not end inside a UTF-8
    character (invalid bytes count as whole characters)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII (then any bytes after it are stray): nothing is cut
            return len(data)
        if byte >= 0xC0:  # the lead byte of the last character
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


SOCKET_FILE = "agent.sock"  # in the agent's folder
TOKEN_FILE = "token"  # in the agent's folder: the secret every request must carry
MAX_MESSAGE = 64 << 20  # bytes of one message (a request, or one reply frame)
_HEADER = struct.Struct(">I")  # each message: its length, then that much JSON
HEADER_SIZE = _HEADER.size
# What exec(2) takes: one "NAME=value" at most 128 KiB (MAX_ARG_STRLEN), and all of
# argv + environment at most a quarter of the stack limit (2 MiB by default), so a job's
# variables are held well under that (the node's own environment comes on top).
ENV_ENTRY_LIMIT = (128 << 10) - 1
ENV_TOTAL_LIMIT = 1 << 20
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def socket_path(agent_dir: str) -> str:
    """The agent's socket: a file in its owner-only folder."""
    return f"{agent_dir.rstrip('/')}/{SOCKET_FILE}"


class MessageTooLarge(ValueError):
    pass


def encode_message(message: Any) -> bytes:
    body = json.dumps(message).encode()
    if len(body) > MAX_MESSAGE:
        raise MessageTooLarge(f"the message is {mib(len(body))}; the agent takes at most "
                              f"{mib(MAX_MESSAGE)}")
    return _HEADER.pack(len(body)) + body


def message_size(header: bytes) -> int:
    """The body length a header announces (MessageTooLarge beyond the bound)."""
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise MessageTooLarge(f"a message of {mib(size)} is over the agent's limit of "
                              f"{mib(MAX_MESSAGE)}")
    return size


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def check_env(envs: Any, what: str = "envs") -> dict[str, str]:
    """`envs` as a job's environment: POSIX names, string values without NUL bytes, and
    sizes exec(2) accepts (ValueError saying which otherwise)."""
    if envs is None:
        return {}
    if not isinstance(envs, dict):
        raise ValueError(f"{what} must be a mapping of names to strings")
    for key, value in envs.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            raise ValueError(f"{what}: {str(key)[:80]!r} is not a valid variable name "
                             "(a letter or _, then letters, digits or _)")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"{what}: the value of {key} must be a string without NUL bytes")
        if len(key.encode()) + len(value.encode()) + 1 > ENV_ENTRY_LIMIT:
            raise ValueError(f"{what}: {key} is {mib(len(value.encode()))}; one variable "
                             f"can hold at most {ENV_ENTRY_LIMIT // 1024} KiB (pass larger "
                             "data in a file: workdir or file_mounts)")
    return envs


def env_size(envs: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) + 2 for k, v in envs.items())


def check_job(job: Any) -> dict[str, Any]:
    """A submitted job, checked field by field (ValueError with what is wrong)."""
    if not isinstance(job, dict):
        raise ValueError("the job must be a mapping")
    if not isinstance(job.get("run"), str):
        raise ValueError("the job's run must be a string")
    for key in ("name", "task_id"):
        if job.get(key) is not None and not isinstance(job[key], str):
            raise ValueError(f"the job's {key} must be a string")
    for key in ("num_nodes", "gpus", "cpus"):
        value = job.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float)) or not value >= 0):
            raise ValueError(f"the job's {key} must be a number >= 0")
    envs = check_env(job.get("envs"), "envs")
    secrets = check_env(job.get("secrets"), "secrets")
    total = env_size({**envs, **secrets})
    if total > ENV_TOTAL_LIMIT:
        raise ValueError(f"the job's envs and secrets take {mib(total)}; a job's environment "
                         f"can hold at most {mib(ENV_TOTAL_LIMIT)} (pass larger data in a "
                         "file: workdir or file_mounts)")
    return job


@dataclass
class Running:
    job_id: int
    gpu_ids: list[int] = field(default_factory=list)
    processes: list[Any] = field(default_factory=list)
    exit_codes: dict[int, int] = field(default_factory=dict)
    cancelled: bool = False


class Agent:
    def __init__(self, info: dict[str, Any]):
        self.info = info
        self.name: str = info["name"]
        self.dir = Path(info["agent_dir"])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodes: list[dict[str, Any]] = info["nodes"]
        self.runners: list[Runner] = [_node_runner(n) for n in self.nodes]
        self.capacity = {"gpus": float(info.get("gpus_per_node", 0)),
                         "cpus": float(info.get("cpus_per_node", 1))}
        self.db = sqlite3.connect(self.dir / "jobs.db", check_same_thread=False)
        self.db.execute("""CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, status TEXT NOT NULL,
            submitted_at REAL, started_at REAL, ended_at REAL, exit_code INTEGER,
            num_nodes INTEGER, gpus REAL, cpus REAL, run TEXT, envs TEXT, task_id TEXT)""")
        self.db.commit()
        self.db_lock = threading.Lock()
        token_file = self.dir / TOKEN_FILE
        # No token file: every request is refused (nothing to compare with).
        self.token = token_file.read_text().strip() if token_file.exists() else ""
        self.secrets: dict[int, dict[str, str]] = {}
        self.finished: dict[int, list[asyncio.Event]] = {}  # log streams waiting on a job
        # Whole GPUs are handed to jobs by index (CUDA_VISIBLE_DEVICES), so two jobs on one
        # node never share a GPU they did not ask to share.
        self.free_gpus = list(range(int(self.capacity["gpus"])))
        self.running: dict[int, Running] = {}
        self.last_active = time.time()
        self.followers = 0  # clients following a job's output now
        self.autostop: dict[str, Any] = info.get("autostop") or {}
        self.autostop_armed_at = time.time()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.changed = asyncio.Event()
        # Jobs left RUNNING by a previous agent died with it (their nodes were stopped).
        self._sql("UPDATE jobs SET status=?, ended_at=? WHERE status=?",
                  (FAILED, time.time(), RUNNING))

    # -- storage -------------------------------------------------------------------------
    def _sql(self, query: str, args: tuple = ()) -> list[tuple]:
        with self.db_lock:
            rows = self.db.execute(query, args).fetchall()
            self.db.commit()
            return rows

    def job(self, job_id: int) -> dict[str, Any] | None:
        rows = self._sql("SELECT id, name, status, submitted_at, started_at, ended_at, "
                         "exit_code, num_nodes, gpus, cpus, task_id FROM jobs WHERE id=?",
                         (job_id,))
        return _job_dict(rows[0]) if rows else None

    def jobs(self) -> list[dict[str, Any]]:
        return [_job_dict(r) for r in self._sql(
            "SELECT id, name, status, submitted_at, started_at, ended_at, exit_code, "
            "num_nodes, gpus, cpus, task_id FROM jobs ORDER BY id")]

    def log_path(self, job_id: int) -> Path:
        return self.dir / "jobs" / str(job_id) / "run.log"

    # -- requests ------------------------------------------------------------------------
    def submit(self, job: dict[str, Any]) -> int:
        job = check_job(job)
        num_nodes = int(job.get("num_nodes") or len(self.nodes))
        if num_nodes > len(self.nodes):
            raise ValueError(f"the job needs {num_nodes} nodes; the cluster has "
                             f"{len(self.nodes)}")
        gpus = float(job.get("gpus") or 0)
        cpus = float(job.get("cpus") or DEFAULT_CPU_DEMAND)
        if gpus > self.capacity["gpus"] or cpus > max(self.capacity["cpus"], DEFAULT_CPU_DEMAND):
            raise ValueError(f"the job needs {gpus:g} GPUs and {cpus:g} CPUs per node; a node "
                             f"has {self.capacity['gpus']:g} and {self.capacity['cpus']:g}")
        with self.db_lock:
            cur = self.db.execute(
                "INSERT INTO jobs (name, status, submitted_at, num_nodes, gpus, cpus, run, "
                "envs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.get("name"), PENDING, time.time(), num_nodes, gpus, cpus, job["run"],
                 json.dumps(job.get("envs") or {})))
            job_id = int(cur.lastrowid)
            # A managed job keeps one task id across recoveries (checkpoints key on it).
            task_id = job.get("task_id") or (
                f"skyhop-{time.strftime('%Y-%m-%d-%H-%M-%S')}_{self.name}_{job_id}")
            self.db.execute("UPDATE jobs SET task_id=? WHERE id=?", (task_id, job_id))
            self.db.commit()
        if job.get("secrets"):
            self.secrets[job_id] = dict(job["secrets"])
        self.last_active = time.time()
        self.changed.set()
        return job_id

    def cancel(self, job_ids: list[int] | None) -> list[int]:
        targets = job_ids if job_ids is not None else [
            j["id"] for j in self.jobs() if j["status"] in (PENDING, RUNNING)]
        done = []
        for job_id in targets:
            job = self.job(job_id)
            if job is None or job["status"] in FINISHED:
                continue
            if job["status"] == PENDING:
                self._finish(job_id, CANCELLED, None)
            else:
                running = self.running.get(job_id)
                if running is not None:
                    running.cancelled = True
                    threading.Thread(target=self._kill_job, args=(running,)).start()
            done.append(job_id)
        return done

    def _kill_job(self, running: Running) -> None:
        for runner, process in zip(self.runners, running.processes, strict=False):
            runner.kill(process)

    # -- scheduling ----------------------------------------------------------------------
    def _free(self) -> tuple[float, float]:
        used_gpus = used_cpus = 0.0
        for job_id in self.running:
            job = self.job(job_id)
            used_gpus += job["gpus"]
            used_cpus += job["cpus"]
        return self.capacity["gpus"] - used_gpus, max(self.capacity["cpus"],
                                                     DEFAULT_CPU_DEMAND) - used_cpus

    def schedule(self) -> None:
        """Start pending jobs in submission order while the head of the queue fits."""
        for row in self._sql("SELECT id FROM jobs WHERE status=? ORDER BY id", (PENDING,)):
            job = self.job(row[0])
            free_gpus, free_cpus = self._free()
            if job["gpus"] > free_gpus + 1e-9 or job["cpus"] > free_cpus + 1e-9:
                return  # FIFO: later jobs wait behind the head
            try:
                self._start(job)
            except Exception as exc:  # that job fails; the agent goes on serving
                self._start_failed(job["id"], exc)

    def _start_failed(self, job_id: int, exc: Exception) -> None:
        running = self.running.get(job_id)
        if running is not None:
            for runner, process in zip(self.runners, running.processes, strict=False):
                with contextlib.suppress(Exception):
                    runner.kill(process)
        log = self.log_path(job_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"skyhop: the job could not start: {type(exc).__name__}: {exc}\n")
        self._job_done(job_id, FAILED, 127)

    def _start(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        run, envs = self._sql("SELECT run, envs FROM jobs WHERE id=?", (job_id,))[0]
        env = json.loads(envs)
        env.update(self.secrets.pop(job_id, {}))
        log = self.log_path(job_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._sql("UPDATE jobs SET status=?, started_at=? WHERE id=?",
                  (RUNNING, time.time(), job_id))
        running = Running(job_id)
        if job["gpus"] >= 1 and float(job["gpus"]).is_integer():
            count = int(job["gpus"])
            running.gpu_ids, self.free_gpus = self.free_gpus[:count], self.free_gpus[count:]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, running.gpu_ids))
        self.running[job_id] = running
        n = job["num_nodes"]
        ips = [node.get("address") or "127.0.0.1" for node in self.nodes[:n]]
        # A local node's command line is an exec(2) argument (at most 128 KiB): the run
        # goes in a file that the shell reads instead (a remote node's goes on stdin).
        script = log.parent / "run.sh"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(run)
        for rank in range(n):
            node_env = {**env, **rank_env(self.name, job, rank, ips,
                                          self.capacity["gpus"], self.nodes)}
            runner = self.runners[rank]
            command = f". {shlex.quote(str(script))}" if isinstance(runner, LocalRunner) \
                else run
            running.processes.append(runner.spawn(command, env=node_env))
        threading.Thread(target=self._pump, args=(running, log, n), daemon=True).start()

    def _pump(self, running: Running, log: Path, n: int) -> None:
        """Copy every node's output into the job log (prefixed by node when multi-node)."""
        lock = threading.Lock()
        with log.open("ab", buffering=0) as out:
            def copy(rank: int, process: Any) -> None:
                prefix = f"(node-{rank}) ".encode() if n > 1 else b""
                for line in process.stdout:
                    with lock:
                        out.write(prefix + line)
                running.exit_codes[rank] = process.wait()

            threads = [threading.Thread(target=copy, args=(r, p))
                       for r, p in enumerate(running.processes)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        codes = [running.exit_codes[r] for r in range(n)]
        exit_code = next((c for c in codes if c != 0), 0)
        status = CANCELLED if running.cancelled else (SUCCEEDED if exit_code == 0 else FAILED)
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._job_done, running.job_id, status, exit_code)

    def _job_done(self, job_id: int, status: str, exit_code: int) -> None:
        running = self.running.pop(job_id, None)
        if running is not None:
            self.free_gpus = sorted(self.free_gpus + running.gpu_ids)
        self._finish(job_id, status, exit_code)

    def _finish(self, job_id: int, status: str, exit_code: int | None) -> None:
        self._sql("UPDATE jobs SET status=?, ended_at=?, exit_code=? WHERE id=?",
                  (status, time.time(), exit_code, job_id))
        self.secrets.pop(job_id, None)
        self.last_active = time.time()
        self.changed.set()
        for waiter in self.finished.pop(job_id, []):
            waiter.set()

    # -- autostop ------------------------------------------------------------------------
    def _busy(self) -> bool:
        """Busy as autostop's `wait_for` counts: `jobs_and_ssh` (the default, as SkyPilot's)
        waits for jobs, followed logs and interactive SSH sessions; `jobs` for jobs and
        followed logs; `none` for nothing (it stops that long after being armed)."""
        wait_for = self.autostop.get("wait_for") or "jobs_and_ssh"
        if wait_for == "none":
            return False
        if self.running or self.followers or self._sql(
                "SELECT 1 FROM jobs WHERE status=? LIMIT 1", (PENDING,)):
            return True
        # ~5 ms per scan of ~200 processes, once a second at most (the serve loop's tick)
        if wait_for == "jobs_and_ssh" and interactive_ssh_sessions():
            self.last_active = time.time()  # idle time counts from the session's end
            return True
        return False

    def _idle_since(self) -> float:
        none = self.autostop.get("wait_for") == "none"
        return self.autostop_armed_at if none else self.last_active

    def idle_for(self) -> float:
        """Seconds idle; 0 while busy."""
        return 0.0 if self._busy() else time.time() - self._idle_since()

    def _autostop_due(self) -> bool:
        # Not `idle_for() >= minutes`: with 0 minutes a busy cluster (0 s idle) would be due.
        minutes = self.autostop.get("idle_minutes")
        return (minutes is not None and not self._busy()
                and time.time() - self._idle_since() >= float(minutes) * 60)

    def _trigger_autostop(self) -> None:
        """Stop or tear down the cluster: through the normal CLI path, detached from us, or,
        with a shutdown command (a cloud's nodes), by shutting every node down, this one
        last."""
        setting, self.autostop = self.autostop, {}  # once
        if setting.get("command"):
            threading.Thread(target=self._shut_down_nodes, args=(setting["command"],),
                             daemon=True, name="autostop").start()
            return
        action = "down" if setting.get("down") else "stop"
        env = {k: v for k, v in os.environ.items() if k != NODE_MARKER}
        with open(self.dir / "autostop.log", "ab") as log:
            subprocess.Popen([sys.executable, "-m", "skyhop.cli.main", action, self.name,
                              "--yes"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log, start_new_session=True)

    def _shut_down_nodes(self, command: str) -> None:
        with open(self.dir / "autostop.log", "a") as log:
            for rank in [*range(1, len(self.runners)), 0]:
                log.write(f"{time.ctime()}: node {rank}: {command}\n")
                log.flush()
                try:
                    code = self.runners[rank].run(command, output=log.write)
                except Exception as exc:  # go on: the other nodes still cost money
                    code = f"{type(exc).__name__}: {exc}"
                log.write(f"{time.ctime()}: node {rank}: exit {code}\n")
                log.flush()

    # -- server --------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection. Whatever a client sends, it gets an error reply at
        worst: the agent itself never stops because of a request."""
        try:
            try:
                request = await _read_message(reader)
            except ValueError as exc:  # too large, not JSON, not UTF-8
                await _send(writer, {"ok": False, "error": f"bad request: {exc}"})
                return
            if request is None:
                return
            if not isinstance(request, dict):
                await _send(writer, {"ok": False, "error": "bad request: not a mapping"})
                return
            refusal = self._refusal(request, writer)
            if refusal:
                await _send(writer, {"ok": False, "refused": True, "error": refusal})
                return
            if request.get("op") == "logs":
                await self._stream_logs(request, writer)
            else:
                response = self._respond(request)
                await _send(writer, response)
                if request.get("op") == "shutdown":
                    asyncio.get_running_loop().call_soon(self._shutdown)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug: logged (agent.log), an error reply, serving on
            traceback.print_exc()
            with contextlib.suppress(Exception):
                await _send(writer, {"ok": False, "error": "the agent failed on this request "
                                                           "(see agent.log on the head node)"})
        finally:
            writer.close()

    def _refusal(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> str | None:
        """Why a request is refused: another user (the socket's folder already keeps them
        out; this holds if it were opened up), or not this cluster's token (another skyhop
        home on the same login, or a stale client)."""
        sock = writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "SO_PEERCRED"):
            _, uid, _ = struct.unpack("3i", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            if uid != os.getuid():
                return "refused: not the cluster's owner"
        token = request.pop("token", None)
        if not self.token or not isinstance(token, str) or not hmac.compare_digest(token.encode(),
                                                                 self.token.encode()):
            return "refused: wrong or missing cluster token"
        return None

    def _respond(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "idle_seconds": self.idle_for()}
            if op == "submit":
                return {"ok": True, "job_id": self.submit(request["job"])}
            if op == "queue":
                return {"ok": True, "jobs": self.jobs()}
            if op == "cancel":
                return {"ok": True, "cancelled": self.cancel(request.get("job_ids"))}
            if op == "autostop":
                _check_autostop(request)
                self.autostop = {"idle_minutes": request.get("idle_minutes"),
                                 "down": bool(request.get("down")),
                                 "wait_for": request.get("wait_for"),
                                 "command": request.get("command")}
                self.last_active = self.autostop_armed_at = time.time()
                return {"ok": True}
            if op == "shutdown":
                self.cancel(None)
                return {"ok": True}
            return {"ok": False, "error": f"unknown request {str(op)[:80]!r}"}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}

    async def _stream_logs(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        """A client following a job's output counts as activity (autostop waits for it to
        see the end, instead of cutting the stream)."""
        following = bool(request.get("follow"))
        self.followers += following
        try:
            await self._send_logs(request, writer)
        finally:
            self.followers -= following
            if following:
                self.last_active = time.time()

    async def _send_logs(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        job_id = request.get("job_id") or (self.jobs()[-1]["id"] if self.jobs() else None)
        job = self.job(job_id) if job_id is not None else None
        if job is None:
            await _send(writer, {"ok": False, "error": f"no job {job_id}"})
            return
        path = self.log_path(job_id)
        offset = int(request.get("offset") or 0)  # bytes the client already has
        done = asyncio.Event()
        self.finished.setdefault(job_id, []).append(done)
        while True:
            job = self.job(job_id)
            # (decided before reading: all output of a finished job is in the file by then)
            ended = job["status"] in FINISHED and job_id not in self.running
            offset = await self._send_log(path, offset, ended, writer)
            if ended or not request.get("follow"):
                break
            with contextlib.suppress(TimeoutError):  # new output is polled; the end is not
                await asyncio.wait_for(done.wait(), timeout=0.05)
        await _send(writer, {"end": True, "job": job, "offset": offset})

    @staticmethod
    async def _send_log(path: Path, offset: int, final: bool,
                        writer: asyncio.StreamWriter) -> int:
        """Send the log from `offset` in bounded chunks cut on character boundaries (a
        character split by a read waits for the next one); returns the new offset."""
        if not path.exists():
            return offset
        with path.open("rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(LOG_CHUNK):
                keep = utf8_boundary(chunk)
                if keep < len(chunk) and final and len(chunk) < LOG_CHUNK:
                    keep = len(chunk)  # the very end: nothing more will complete it
                if keep == 0:
                    break
                offset += keep
                fh.seek(offset)
                await _send(writer, {"data": chunk[:keep].decode(errors="replace"),
                                     "offset": offset})
        return offset

    def _listen(self) -> socket.socket:
        """The listening socket, in the agent's folder, which only its owner can enter."""
        os.umask(0o077)
        self.dir.chmod(0o700)
        path = socket_path(str(self.dir))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a previous agent's (it is gone: a cluster has one agent)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with short_unix_path(path) as address:
            sock.bind(address)
        os.chmod(path, 0o600)
        return sock

    def _shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        self.stopping.set()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.server = await asyncio.start_unix_server(self.handle, sock=self._listen())
        (self.dir / "agent.pid").write_text(str(os.getpid()))
        while not self.stopping.is_set():
            self.changed.clear()
            self.schedule()
            if self._autostop_due():
                self._trigger_autostop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=1.0)
        while self.running:  # let cancelled jobs finish dying
            await asyncio.sleep(0.05)


def _check_autostop(request: dict[str, Any]) -> None:
    minutes = request.get("idle_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(
            minutes, (int, float)) or not minutes >= 0):
        raise ValueError("autostop: idle_minutes must be a number >= 0 or null")
    if request.get("wait_for") not in (None, "jobs_and_ssh", "jobs", "none"):
        raise ValueError("autostop: wait_for must be jobs_and_ssh, jobs or none")
    if request.get("command") is not None and not isinstance(request["command"], str):
        raise ValueError("autostop: command must be a string or null")


async def _read_message(reader: asyncio.StreamReader) -> Any:
    """One message, or None at a clean end of the stream."""
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    body = await reader.readexactly(message_size(header))
    return json.loads(body)


async def _send(writer: asyncio.StreamWriter, message: Any) -> None:
    writer.write(encode_message(message))
    await writer.drain()


def _node_runner(node: dict[str, Any]) -> Runner:
    """This machine's node directly; other machines' nodes with the OpenSSH client."""
    ssh = node.get("ssh")
    if ssh:
        from skyhop.execute.remote import OpenSSHRunner

        return OpenSSHRunner(node["address"], ssh["user"], ssh["key"], int(ssh.get("port", 22)))
    return LocalRunner(Path(node["dir"]).expanduser())


def rank_env(cluster: str, job: dict[str, Any], rank: int, ips: list[str], gpus: float,
             nodes: list[dict[str, Any]]) -> dict[str, str]:
    """The per-node variables, under skyhop's names and SkyPilot's."""
    values = {
        "NODE_RANK": str(rank),
        "NODE_IPS": "\n".join(ips),
        "NUM_NODES": str(len(ips)),
        "NUM_GPUS_PER_NODE": f"{gpus:g}",
        "TASK_ID": job["task_id"],
        "CLUSTER_INFO": json.dumps({"cluster": cluster, "num_nodes": len(ips),
                                    "ips": ips, "head_ip": ips[0], "rank": rank,
                                    "job_id": job["id"]}),
    }
    env = {f"SKYHOP_{k}": v for k, v in values.items()}
    env.update({f"SKYPILOT_{k}": v for k, v in values.items()})
    return env


def _job_dict(row: tuple) -> dict[str, Any]:
    keys = ("id", "name", "status", "submitted_at", "started_at", "ended_at", "exit_code",
            "num_nodes", "gpus", "cpus", "task_id")
    return dict(zip(keys, row, strict=True))


def main() -> None:
    info = json.loads(Path(sys.argv[1]).read_text())
    agent = Agent(info)
    agent.server = None
    asyncio.run(agent.serve())


if __name__ == "__main__":
    main()
