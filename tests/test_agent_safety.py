"""The cluster agent answers only its owner, takes messages of any size up to a clear bound,
and survives whatever a client sends (local provider, real agents, real processes)."""

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, use_home
from skyhop.execute.runner import processes_marked


def sky(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def down_all(home: Path) -> None:
    for cluster in json.loads(sky("status", "--json").stdout or "[]"):
        sky("down", cluster["name"], "-y")
    assert processes_marked(f"{home}/") == []


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = use_home(monkeypatch, tmp_path / "home")
    yield home
    down_all(home)


def record(name: str):
    from skyhop.state.clusters import ClusterStore

    return ClusterStore().get(name)


def client(name: str):
    from skyhop.execute.launcher import Launcher
    from skyhop.state.clusters import ClusterStore

    return Launcher(ClusterStore()).agent(ClusterStore().get(name))


def launch(name: str, run: str = "true") -> None:
    result = sky("launch", run, "-c", name)
    assert result.returncode == 0, result.stderr


def raw_request(agent_dir: str, data: bytes) -> dict:
    """Send raw bytes to the agent; its first reply frame."""
    from skyhop.execute.agent import socket_path
    from skyhop.execute.runner import connect_unix

    with connect_unix(socket_path(agent_dir)) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    (size,) = struct.unpack(">I", reply[:4])
    return json.loads(reply[4:4 + size])


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


# -- owner only --------------------------------------------------------------------------

ATTACK = r"""
import json, socket, struct, sys
path, abstract, token, marker = sys.argv[1:5]
job = {"run": "touch " + marker}
reached = []
for address, data in [
        (path, None),
        ("\0" + abstract, (json.dumps({"op": "submit", "job": job}) + "\n").encode())]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(address)
    except OSError as exc:
        continue
    reached.append(address.lstrip("\0"))
    if data is None:  # the framed protocol, with the cluster's token (as if stolen)
        body = json.dumps({"op": "submit", "job": job, "token": token}).encode()
        data = struct.pack(">I", len(body)) + body
    s.sendall(data)
    s.recv(65536)
print(json.dumps(reached))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as `nobody`")
def test_another_user_cannot_reach_the_agent(monkeypatch):
    """Even with the home opened to everyone (as homes made before 0700 were) and the token
    in hand, another uid cannot connect: nothing is queued and nothing runs."""
    from skyhop.execute.agent import TOKEN_FILE, socket_path

    root = Path(tempfile.mkdtemp(prefix="skyhop-agent-"))
    try:
        root.chmod(0o755)
        home = use_home(monkeypatch, root / "home")
        launch("mine")
        home.chmod(0o755)
        agent_dir = record("mine").handle["agent_dir"]
        for parent in Path(agent_dir).parents:  # everything up to the agent's own folder
            if str(parent).startswith(str(home)):
                parent.chmod(0o755)
        marker = root / "pwned"
        abstract = "skyhop-agent-" + hashlib.sha256(agent_dir.encode()).hexdigest()[:24]
        token = (Path(agent_dir) / TOKEN_FILE).read_text() if (
            Path(agent_dir) / TOKEN_FILE).exists() else ""
        attack = subprocess.run(
            ["/usr/bin/python3", "-c", ATTACK, socket_path(agent_dir), abstract, token,
             str(marker)], user="nobody", capture_output=True, text=True, timeout=30,
            cwd="/")
        assert attack.returncode == 0, attack.stderr
        assert json.loads(attack.stdout) == [], "another user reached the agent"
        assert [j["id"] for j in client("mine").queue()] == [1]
        assert not marker.exists()
        assert os.stat(agent_dir).st_mode & 0o777 == 0o700
        assert os.stat(socket_path(agent_dir)).st_mode & 0o777 == 0o600
    finally:
        down_all(root / "home")
        subprocess.run(["rm", "-rf", str(root)])


def test_a_client_without_the_clusters_token_is_refused(home):
    from skyhop.errors import UserError
    from skyhop.execute.agent import TOKEN_FILE
    from skyhop.execute.agent_client import AgentClient, AgentRefused

    launch("tok")
    agent_dir = record("tok").handle["agent_dir"]
    assert os.stat(Path(agent_dir) / TOKEN_FILE).st_mode & 0o777 == 0o600
    assert "token" not in json.dumps(record("tok").handle).replace("agent_nonce", "")
    job = {"run": f"touch {home}/pwned"}
    for token in ["wrong", "", None]:
        reply = raw_request(agent_dir, frame({"op": "submit", "job": job, "token": token}))
        assert reply["ok"] is False and "refused" in reply["error"]
    reply = raw_request(agent_dir, frame({"op": "submit", "job": job}))
    assert reply["ok"] is False and "refused" in reply["error"]
    with pytest.raises(AgentRefused):
        AgentClient("tok", agent_dir, token="wrong").submit(job)
    # a cluster recorded before agents had tokens: a clear error saying to relaunch
    with pytest.raises(UserError, match="relaunch"):
        AgentClient("tok", agent_dir, token=None).queue()
    assert [j["id"] for j in client("tok").queue()] == [1]
    assert not (home / "pwned").exists()


def test_two_homes_with_one_cluster_name_have_distinct_agents(tmp_path, monkeypatch):
    from skyhop.execute.agent_client import AgentClient, AgentRefused, agent_token

    homes, seen = [tmp_path / "a", tmp_path / "b"], []
    try:
        for home in homes:
            use_home(monkeypatch, home)
            launch("twin", f"echo from-{home.name}")
            rec = record("twin")
            seen.append((rec.handle["agent_dir"], agent_token(rec.handle["agent_nonce"])))
        assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]
        # home b's client (its token) pointed at home a's agent: refused
        with pytest.raises(AgentRefused):
            AgentClient("twin", seen[0][0], token=seen[1][1]).queue()
        assert [j["id"] for j in AgentClient("twin", seen[0][0], token=seen[0][1]).queue()] \
            == [1]
    finally:
        for home in homes:
            use_home(monkeypatch, home)
            down_all(home)


# -- framing and bad requests ------------------------------------------------------------

def test_a_1mb_run_and_large_envs_work_end_to_end(home, tmp_path):
    """Over the old line reader's 64 KiB and exec's 128 KiB argument limit."""
    filler = "# " + "x" * 1000 + "\n"
    run = filler * 1024 + 'echo "run ok ${#BIG_A} ${#BIG_B}"\n'
    envs = {f"BIG_{c}": c * 100_000 for c in "ABCDEF"}  # 600 KB of variables
    task = tmp_path / "big.yaml"
    task.write_text(json.dumps({"run": run, "envs": envs}))
    result = sky("launch", str(task), "-c", "big")
    assert result.returncode == 0, result.stderr
    assert "run ok 100000 100000" in result.stdout
    result = sky("exec", "big", str(task))
    assert result.returncode == 0 and "run ok 100000 100000" in result.stdout, result.stderr


def test_too_large_envs_are_refused_before_anything_starts(home, tmp_path):
    task = tmp_path / "huge.yaml"
    task.write_text(json.dumps({"run": "true",
                                "envs": {f"V{i}": "v" * 100_000 for i in range(100)}}))
    result = sky("launch", str(task), "-c", "huge")
    assert result.returncode == 2, result.stderr
    assert "MiB" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(sky("status", "--json").stdout or "[]") == []
    one = tmp_path / "one.yaml"
    one.write_text(json.dumps({"run": "true", "envs": {"ONE": "v" * 200_000}}))
    result = sky("launch", str(one), "-c", "huge")
    assert result.returncode == 2 and "ONE" in result.stderr, result.stderr
    assert json.loads(sky("status", "--json").stdout or "[]") == []


def test_an_oversize_request_gets_a_clear_error_and_the_agent_serves_on(home):
    from skyhop.errors import UserError
    from skyhop.execute.agent import MAX_MESSAGE

    launch("big2")
    agent = client("big2")
    with pytest.raises(UserError, match="too large"):
        agent.submit({"run": "x" * (MAX_MESSAGE + 1)})
    # a client that announces more than the bound gets an error reply, not a hang
    agent_dir = record("big2").handle["agent_dir"]
    reply = raw_request(agent_dir, struct.pack(">I", MAX_MESSAGE + 1) + b"{")
    assert reply["ok"] is False and "limit" in reply["error"]
    assert agent.ping() and [j["id"] for j in agent.queue()] == [1]


BAD_JOBS = [
    {"run": "true", "envs": {"A=B": "x"}},
    {"run": "true", "envs": {"1BAD": "x"}},
    {"run": "true", "envs": {"A": "nul\0byte"}},
    {"run": "true", "envs": ["A", "B"]},
    {"run": "true", "envs": {"A": 5}},
    {"run": "true", "secrets": {"A B": "x"}},
    {"run": 5},
    {"envs": {}},
    {"run": "true", "num_nodes": "two"},
    {"run": "true", "gpus": -1},
    {"run": "true", "cpus": [1]},
    {"run": "true", "name": {"x": 1}},
    "not a mapping",
]


def test_malformed_requests_get_error_replies_and_never_kill_the_agent(home):
    launch("bad")
    agent = client("bad")
    token = agent._token
    agent_dir = record("bad").handle["agent_dir"]
    for job in BAD_JOBS:
        reply = raw_request(agent_dir, frame({"op": "submit", "job": job, "token": token}))
        assert reply["ok"] is False and reply["error"], job
    for request in [{"op": "autostop", "idle_minutes": "soon"},
                    {"op": "autostop", "idle_minutes": 1, "wait_for": 3},
                    {"op": "cancel", "job_ids": 7},
                    {"op": "logs", "job_id": 1, "offset": "x"},
                    {"op": ["what"]}]:
        reply = raw_request(agent_dir, frame({**request, "token": token}))
        assert reply.get("ok") is False, request
    for data in [b"\x00\x00\x00\x05nope!", b"\x00\x00\x00\x02[]", b"\x00\x00\x00\x02\xff\xfe"]:
        assert raw_request(agent_dir, data)["ok"] is False
    assert agent.ping()
    assert [j["id"] for j in agent.queue()] == [1]  # none of them was queued
    result = sky("exec", "bad", "echo still-serving")
    assert result.returncode == 0 and "still-serving" in result.stdout, result.stderr


def test_a_bad_env_name_from_the_command_line_is_refused_before_anything_starts(home):
    result = sky("launch", "true", "-c", "envname", "--env", "1BAD=x")
    assert result.returncode == 2 and "1BAD" in result.stderr, result.stderr
    assert json.loads(sky("status", "--json").stdout or "[]") == []
