"""Talking to a cluster's agent (see agent.py): one request per connection, each message
a length-prefixed JSON object, every request carrying the cluster's token.

The token is not stored anywhere on this side: it is an HMAC, under a key kept 0600 in the
skyhop home, of a random nonce kept in the cluster's handle. So the database holds nothing
that opens an agent, and another home (another key) cannot make this cluster's token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

from skyhop import paths
from skyhop.errors import Unreachable, UserError
from skyhop.execute.agent import (
    HEADER_SIZE,
    MAX_MESSAGE,
    MessageTooLarge,
    check_job,
    encode_message,
    message_size,
    mib,
    socket_path,
)
from skyhop.execute.runner import connect_unix

AGENT_KEY = "keys/agent.key"  # under the skyhop home


def _home_key() -> bytes:
    """This home's key for agent tokens, made once (atomically, 0600)."""
    path = paths.home() / AGENT_KEY
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".agent.key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    try:
        os.link(tmp, path)  # fails if another command made it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def new_token_nonce() -> str:
    """A fresh nonce for a cluster's handle (made at each agent start)."""
    return secrets.token_hex(16)


def agent_token(nonce: str) -> str:
    """The secret that the agent started with `nonce` accepts: only this home can make it."""
    return hmac.new(_home_key(), nonce.encode(), hashlib.sha256).hexdigest()


def check_job_fits(run: str, envs: dict[str, str], secret_values: dict[str, str]) -> None:
    """What the agent would refuse for size or form, found before anything starts."""
    try:
        check_job({"run": run, "envs": envs, "secrets": secret_values})
        size = len(json.dumps({"run": run, "envs": envs, "secrets": secret_values}))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if size > MAX_MESSAGE - 4096:
        raise UserError(f"the job's run command and envs take {mib(size)}; a job may take "
                        f"at most {mib(MAX_MESSAGE - 4096)}",
                        hint="put large scripts or data in files (workdir or file_mounts) "
                             "and run those")


class AgentUnreachable(Unreachable):
    """The agent does not answer: the cluster is stopped, or its head node is gone."""


class AgentRefused(UserError):
    """The agent answered but refused the request: not this cluster's token."""


class AgentClient:
    def __init__(self, cluster: str, agent_dir: str,
                 connect: Callable[[str, float | None], Any] | None = None,
                 token: str | None = None):
        """`connect(address, timeout)` opens a socket-like stream to the agent: a local
        Unix socket by default, an SSH channel for a remote head node. `token`: the
        cluster's (`agent_token`); None for a cluster launched before agents had one."""
        self.cluster = cluster
        self.address = socket_path(agent_dir)
        self._open = connect or connect_unix
        self._token = token

    def _connect(self, timeout: float | None = 10.0) -> Any:
        if self._token is None:
            raise UserError(f"cluster {self.cluster!r} was launched by an older skyhop whose "
                            "agent takes no authenticated requests",
                            hint=f"relaunch it: `skyhop down {self.cluster}`, then launch "
                                 "again")
        try:
            return self._open(self.address, timeout)
        except OSError:  # (a timeout is one)
            raise AgentUnreachable(f"the agent of cluster {self.cluster!r} does not answer",
                                   hint=f"is it up? `skyhop status`; `skyhop start "
                                        f"{self.cluster}` restarts a stopped cluster") from None

    def _messages(self, request: dict[str, Any], timeout: float | None = 10.0
                  ) -> Iterator[dict[str, Any]]:
        try:
            data = encode_message({**request, "token": self._token})
        except MessageTooLarge as exc:
            raise UserError(f"cluster {self.cluster!r}: {request.get('op')} request too "
                            f"large: {exc}", hint="put large scripts or data in files "
                                                  "(workdir or file_mounts)") from None
        with self._connect(timeout) as sock:
            try:
                sock.sendall(data)
            except OSError:
                return
            while True:
                header = _receive(sock, HEADER_SIZE)
                if header is None:
                    break
                try:
                    size = message_size(header)
                except MessageTooLarge as exc:
                    raise AgentUnreachable(f"the agent of cluster {self.cluster!r} sent a "
                                           f"bad reply: {exc}") from None
                body = _receive(sock, size)
                if body is None:
                    break
                yield json.loads(body)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        for response in self._messages({"op": op, **fields}):
            if response.get("refused"):
                raise AgentRefused(f"cluster {self.cluster!r}: the agent {response.get('error')}",
                                   hint="the cluster belongs to another skyhop home, or was "
                                        "restarted by one; see `skyhop status`")
            if not response.get("ok"):
                raise UserError(f"cluster {self.cluster!r}: {response.get('error')}")
            return response
        raise AgentUnreachable(f"the agent of cluster {self.cluster!r} closed the connection")

    def ping(self) -> bool:
        try:
            self.call("ping")
            return True
        except AgentRefused:
            raise
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
        for message in self._messages(request, timeout=None if follow else 30.0):
            if "data" in message:
                output(message["data"])
            elif message.get("end"):
                return {**message["job"], "log_offset": message.get("offset", offset)}
            elif message.get("ok") is False:
                raise UserError(f"cluster {self.cluster!r}: {message.get('error')}")
        raise AgentUnreachable(f"the agent of cluster {self.cluster!r} went away while "
                               "streaming logs")



def _receive(sock: Any, size: int) -> bytes | None:
    """Exactly `size` bytes, or None when the stream ends (or fails) before."""
    parts, missing = [], size
    while missing:
        try:
            chunk = sock.recv(min(missing, 1 << 20))
        except OSError:  # reset, or no answer in time: like a closed connection
            chunk = b""
        if not chunk:
            return None
        parts.append(chunk)
        missing -= len(chunk)
    return b"".join(parts)
