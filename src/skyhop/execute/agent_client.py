"""Talking to a cluster's agent (see agent.py): one JSON request per connection."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from skyhop.errors import Unreachable, UserError
from skyhop.execute.agent import socket_name
from skyhop.execute.runner import connect_unix


class AgentUnreachable(Unreachable):
    """The agent does not answer: the cluster is stopped, or its head node is gone."""


class AgentClient:
    def __init__(self, cluster: str, agent_dir: str,
                 connect: Callable[[str, float | None], Any] | None = None):
        """`connect(address, timeout)` opens a socket-like stream to the agent: a local
        Unix socket by default, an SSH channel for a remote head node."""
        self.cluster = cluster
        self.address = socket_name(agent_dir)
        self._open = connect or connect_unix

    def _connect(self, timeout: float | None = 10.0) -> Any:
        try:
            return self._open(self.address, timeout)
        except OSError:  # (a timeout is one)
            raise AgentUnreachable(f"the agent of cluster {self.cluster!r} does not answer",
                                   hint=f"is it up? `skyhop status`; `skyhop start "
                                        f"{self.cluster}` restarts a stopped cluster") from None

    def _lines(self, request: dict[str, Any], timeout: float | None = 10.0
               ) -> Iterator[dict[str, Any]]:
        with self._connect(timeout) as sock:
            buffer = b""
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
            except OSError:
                return
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:  # reset, or no answer in time: like a closed connection
                    chunk = b""
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    yield json.loads(line)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        for response in self._lines({"op": op, **fields}):
            if not response.get("ok"):
                raise UserError(f"cluster {self.cluster!r}: {response.get('error')}")
            return response
        raise AgentUnreachable(f"the agent of cluster {self.cluster!r} closed the connection")

    def ping(self) -> bool:
        try:
            self.call("ping")
            return True
        except UserError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        raise AgentUnreachable(f"the agent of cluster {self.cluster!r} did not start within "
                               f"{timeout:g} s")

    def submit(self, job: dict[str, Any]) -> int:
        return int(self.call("submit", job=job)["job_id"])

    def queue(self) -> list[dict[str, Any]]:
        return self.call("queue")["jobs"]

    def cancel(self, job_ids: list[int] | None) -> list[int]:
        return self.call("cancel", job_ids=job_ids)["cancelled"]

    def set_autostop(self, idle_minutes: int | None, down: bool,
                     command: str | None = None, wait_for: str = "jobs_and_ssh") -> None:
        """`command`: what each node runs to shut itself down (None: `skyhop stop|down`
        on the head, which must hold skyhop's state: the local provider). `wait_for`: what
        counts as activity."""
        self.call("autostop", idle_minutes=idle_minutes, down=down, command=command,
                  wait_for=wait_for)

    def shutdown(self) -> None:
        self.call("shutdown")

    def logs(self, job_id: int | None, follow: bool, output: Callable[[str], None],
             offset: int = 0) -> dict[str, Any]:
        """Stream a job's log from byte `offset` to `output`; returns the job record once
        it is done (or, when not following, as it stands), with `log_offset`: the byte
        offset to continue from."""
        request = {"op": "logs", "job_id": job_id, "follow": follow, "offset": offset}
        for message in self._lines(request, timeout=None if follow else 30.0):
            if "data" in message:
                output(message["data"])
            elif message.get("end"):
                return {**message["job"], "log_offset": message.get("offset", offset)}
            elif message.get("ok") is False:
                raise UserError(f"cluster {self.cluster!r}: {message.get('error')}")
        raise AgentUnreachable(f"the agent of cluster {self.cluster!r} went away while "
                               "streaming logs")

