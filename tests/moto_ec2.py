"""A real moto EC2 server in a subprocess, behind a fault-injection middleware (test helper).

Tests talk to it over HTTP through boto3 (`AWS_ENDPOINT_URL=server.url`), so botocore's
real request signing, XML parsing, retries and error classes are exercised.

Faults: `server.set_faults([...])` (HTTP `POST /_faults`) replaces the rule list. A rule

    {"action": "RunInstances",                                # the EC2 `Action` parameter
     "match": {"Placement.AvailabilityZone": "us-east-1c"},   # exact query parameters, optional
     "code": "InsufficientInstanceCapacity", "status": 500,   # the EC2 error to answer
     "message": "...",                                        # optional
     "times": 4}                                              # how often; absent = forever

answers the first matching request with that EC2 error instead of passing it to moto; a rule
with `"reset": true` (and no code) instead drops the connection with a TCP reset, as a
flaky network or proxy does. `"action": "*"` matches every action. A rule with
`"armed_by": "RunInstances"` acts only once such a request has gone through to moto, and one
with `"for_s": 20` only for that many seconds (from being armed, or else from being set):
"20 s of connection resets right after RunInstances". Requests signed with an access key
id starting with `nofault` are never faulted (a test's own view of the cloud).

Real EC2 sends server errors (InsufficientInstanceCapacity, RequestLimitExceeded, ...) with
HTTP 5xx and client errors (VcpuLimitExceeded, AuthFailure, ...) with 4xx; botocore retries
5xx and throttling codes, so a rule meant to reach the caller needs `times` >= the client's
attempts (or no `times`). `server.faults()` (`GET /_faults`) returns the rules with the
remaining `times` and a `hits` count each, so a test can see how often botocore tried.

Run by hand: `python tests/moto_ec2.py [PORT] [--amis FILE]` prints `ready PORT`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

# --- the server side (runs in the subprocess) -------------------------------------------


class FaultMiddleware:
    """WSGI middleware: `/_faults` manages rules; matching EC2 requests get an EC2 error."""

    def __init__(self, app: Any):
        self.app = app
        self.rules: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_faults":
            return self._manage(environ, start_response)
        if self.rules and "Credential=nofault" not in environ.get("HTTP_AUTHORIZATION", ""):
            raw = _read_body(environ)
            params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            params.update({k: v[0] for k, v in
                           parse_qs(raw.decode(errors="replace")).items()})
            rule = self._take(params)
            if rule is None:
                self._arm(params.get("Action"))
            if rule is not None and rule.get("reset"):
                return _reset(environ, start_response)
            if rule is not None:
                return _ec2_error(rule, params, start_response)
        return self.app(environ, start_response)

    def _manage(self, environ: dict, start_response: Any) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        with self.lock:
            if method == "POST":
                rules = json.loads(_read_body(environ) or b"[]")
                self.rules = [{**r, "hits": 0, "set_at": time.time()} for r in rules]
            elif method == "DELETE":
                self.rules = []
            body = json.dumps(self.rules).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def _arm(self, action: str | None) -> None:
        with self.lock:
            for rule in self.rules:
                if rule.get("armed_by") == action and "armed_at" not in rule:
                    rule["armed_at"] = time.time()

    def _take(self, params: dict[str, str]) -> dict[str, Any] | None:
        with self.lock:
            for rule in self.rules:
                if rule["action"] not in ("*", params.get("Action")):
                    continue
                if rule.get("armed_by") and "armed_at" not in rule:
                    continue
                since = rule.get("armed_at", rule["set_at"])
                if rule.get("for_s") is not None and time.time() - since > rule["for_s"]:
                    continue
                if any(params.get(k) != v for k, v in rule.get("match", {}).items()):
                    continue
                if rule.get("times") is not None:
                    if rule["times"] <= 0:
                        continue
                    rule["times"] -= 1
                rule["hits"] += 1
                return dict(rule)
        return None


def _read_body(environ: dict) -> bytes:
    """Read the request body and put it back so moto can read it again."""
    n = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(n) if n else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    return raw


def _reset(environ: dict, start_response: Any) -> list[bytes]:
    """Drop the client's connection before any answer: shut down now, and reset (SO_LINGER
    0) when the server closes it."""
    import socket
    import struct

    sock = environ["werkzeug.socket"]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)
    start_response("500 Reset", [("Content-Length", "0")])
    return [b""]


def _ec2_error(rule: dict[str, Any], params: dict[str, str], start_response: Any
               ) -> list[bytes]:
    code = rule["code"]
    message = rule.get("message")
    if message is None and code.startswith("Insufficient"):
        message = (f"We currently do not have sufficient {params.get('InstanceType', '?')} "
                   "capacity in the Availability Zone you requested "
                   f"({params.get('Placement.AvailabilityZone', '?')}).")
    message = message or f"Injected {code} fault."
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()
    status = int(rule.get("status", 400))
    start_response(f"{status} Error", [("Content-Type", "text/xml"),
                                       ("Content-Length", str(len(body)))])
    return [body]


def serve(port: int) -> None:
    """Serve moto (all services) with the fault middleware on 127.0.0.1:port (0 = any)."""
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log
    app = FaultMiddleware(DomainDispatcherApplication(create_backend_app))
    srv = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"ready {srv.server_port}", flush=True)
    srv.serve_forever()


# --- the test side ------------------------------------------------------------------------


class MotoEC2:
    """Starts the server above as a child process; `with MotoEC2() as server: ...`.

    `amis`: AMI definitions in moto's JSON format (`ami_id`, `name`, `owner_id`,
    `creation_date`, ...). When given, they *replace* moto's built-in AMIs in every region
    (moto's `MOTO_AMIS_PATH`), so image lookups by name are under the test's control.
    """

    def __init__(self, amis: list[dict[str, Any]] | None = None, start_timeout_s: float = 30):
        self.amis = amis
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the moto server is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoEC2:
        self._tmp = tempfile.TemporaryDirectory(prefix="skyhop-moto-")
        tmp = Path(self._tmp.name)
        env = dict(os.environ)
        if self.amis is not None:
            (tmp / "amis.json").write_text(json.dumps(self.amis))
            env["MOTO_AMIS_PATH"] = str(tmp / "amis.json")
        self.log_path = tmp / "server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, __file__, "0"], env=env,
                                         stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True)
        try:
            self.port = self._read_port()
            self._wait_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self) -> int:
        """The child binds port 0 and prints `ready PORT`: no race for a free port."""
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline().decode().strip()
                if line.startswith("ready "):
                    return int(line.split()[1])
                if not line and self.proc.poll() is not None:
                    break
        raise RuntimeError(f"moto server did not start; log:\n{self._log_tail()}")

    def _wait_answering(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                self.faults()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _call(self, method: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(f"{self.url}/_faults", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        """Replace the fault rules ([] clears them)."""
        self._call("POST", rules)

    def faults(self) -> list[dict[str, Any]]:
        """The rules with their remaining `times` and `hits` so far."""
        return self._call("GET")

    def stop(self) -> None:
        """Terminate the child by its PID (its own session: nothing else is touched)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.port = None

    def __enter__(self) -> MotoEC2:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def moto_ec2(amis: list[dict[str, Any]] | None = None) -> Iterator[MotoEC2]:
    """`yield`-style helper for a pytest fixture."""
    with MotoEC2(amis=amis) as server:
        yield server


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--amis" in args:  # by hand: python tests/moto_ec2.py 5001 --amis amis.json
        i = args.index("--amis")
        os.environ["MOTO_AMIS_PATH"] = args[i + 1]  # read by moto at import time
        del args[i:i + 2]
    serve(int(args[0]) if args else 5001)
