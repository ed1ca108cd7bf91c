"""SSH machine pools, end to end: four real OpenSSH hosts in network namespaces; skyhop
discovers them, claims hosts for a launch, syncs, sets up, runs (a 2-node gang job) and
releases and cleans them on `down`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sshhosts
from conftest import ROOT, use_home

pytestmark = pytest.mark.skipif(sshhosts.unavailable_reason() is not None,
                                reason=str(sshhosts.unavailable_reason()))

ADDRESSES = [f"10.213.0.{11 + i}" for i in range(4)]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with sshhosts.SSHHosts(tmp_path_factory.mktemp("ssh")) as pool:
        for address in ADDRESSES:
            pool.add(address)
        yield pool


@pytest.fixture
def home(tmp_path, monkeypatch, hosts):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(json.dumps({"ssh_pools": {"lab": {
        "hosts": ADDRESSES, "user": sshhosts.USER,
        "identity_file": str(hosts.client_key)}}}))
    use_home(monkeypatch, home)
    yield home
    for cluster in json.loads(sky("status", "--json").stdout or "[]"):
        sky("down", cluster["name"], "-y")
    assert claims(home) == [], "every host is released"


def sky(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def claims(home: Path) -> list[tuple[str, str]]:
    import sqlite3

    db = home / "state.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT host_id, cluster FROM host_claims ORDER BY host_id").fetchall()


def on_host(hosts, address: str, path: str) -> Path:
    return hosts.hosts[address].home / path


def test_two_node_gang_job_on_the_pool(home, hosts, tmp_path):
    workdir = tmp_path / "proj"
    workdir.mkdir()
    (workdir / "train.py").write_text("print('training')\n")
    (workdir / "big.ckpt").write_text("ignored\n")
    (workdir / ".skyignore").write_text("*.ckpt\n")
    task = tmp_path / "task.yaml"
    task.write_text(f"""
name: gang
num_nodes: 2
workdir: {workdir}
resources: {{infra: ssh/lab, cpus: 1+}}
setup: echo "setup on $(hostname)" > ~/setup-ran
run: |
  echo "rank $SKYHOP_NODE_RANK of $SKYHOP_NUM_NODES on $(hostname)"
  python3 train.py
  echo "ips $(echo $SKYHOP_NODE_IPS | tr '\\n' ' ')"
""")
    result = sky("launch", str(task), "-c", "gang")
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "(node-0) rank 0 of 2" in out and "(node-1) rank 1 of 2" in out
    assert out.count("training") == 2
    held = claims(home)
    assert len(held) == 2 and {c for _, c in held} == {"gang"}
    used = [h.split(":")[2] for h, _ in held]
    hostnames = {hosts.hosts[a].namespace for a in used}
    for name in hostnames:  # each rank ran on its own machine
        assert name in out
    for address in used:
        assert on_host(hosts, address, "sky_workdir/train.py").exists()
        assert not on_host(hosts, address, "sky_workdir/big.ckpt").exists()
        assert on_host(hosts, address, "setup-ran").exists()

    # No node holds the user's private key or skyhop's own: the head reached the worker
    # (the gang job above) with a key pair made for this cluster alone.
    secrets = {hosts.client_key.read_bytes(), (home / "keys" / "skyhop-key").read_bytes()
               if (home / "keys" / "skyhop-key").exists() else b"-"}
    for address in ADDRESSES:
        for path in hosts.hosts[address].home.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert path.read_bytes() not in secrets, f"{path} holds a user key"
    cluster_key = home / "keys" / "clusters" / "gang"
    assert cluster_key.stat().st_mode & 0o777 == 0o600
    public = cluster_key.with_name("gang.pub").read_text().strip()
    for address in used:
        assert public in on_host(hosts, address, ".ssh/authorized_keys").read_text()

    # A second job on the same cluster, queued through the agent on the head host.
    again = sky("exec", "gang", "echo again on $(hostname) rank $SKYHOP_NODE_RANK")
    assert again.returncode == 0, again.stderr
    assert "rank 0" in again.stdout
    queue = json.loads(sky("queue", "gang", "--json").stdout)
    assert [j["status"] for j in queue] == ["SUCCEEDED", "SUCCEEDED"]

    down = sky("down", "gang", "-y")
    assert down.returncode == 0, down.stderr
    assert claims(home) == []
    for address in used:
        assert not on_host(hosts, address, "sky_workdir").exists()
        assert not on_host(hosts, address, ".skyhop/agent").exists()
        # the cluster's key no longer opens the user's machines
        authorized = on_host(hosts, address, ".ssh/authorized_keys").read_text()
        assert public not in authorized and hosts.client_key.with_suffix(
            ".pub").read_text().strip() in authorized
    assert not cluster_key.exists()


def test_a_launch_takes_only_free_hosts(home):
    first = sky("launch", "echo one", "-c", "one", "--infra", "ssh/lab", "-d")
    assert first.returncode == 0, first.stderr
    task = ROOT / "examples" / "multinode.yaml"
    second = sky("launch", str(task), "-c", "two", "--infra", "ssh/lab")
    assert second.returncode == 0, second.stderr
    held = claims(home)
    assert len(held) == 3 and len({h for h, _ in held}) == 3
    # Four hosts, three held: a 2-node launch cannot fit and says why.
    third = sky("launch", str(task), "-c", "three", "--infra", "ssh/lab")
    assert third.returncode == 2
    assert "fewer than 2 free" in third.stderr and "Traceback" not in third.stderr
    assert len(claims(home)) == 3
    assert sky("status", "--json").stdout.count('"three"') == 0
    # The owner's machines cannot power themselves off for us: autostop says so.
    refused = sky("autostop", "one", "-i", "5")
    assert refused.returncode == 2 and "not supported on ssh clusters" in refused.stderr


def test_a_single_file_mount_with_another_name_lands_on_the_host(home, hosts, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "y.cfg").write_text("Y\n")
    (proj / "local.txt").write_text("L\n")
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in proj.iterdir()}
    remote_home = f"/home/{sshhosts.USER}"
    (proj / "t.yaml").write_text(f"""
resources: {{infra: ssh/lab}}
file_mounts:
  ~/x.cfg: ./y.cfg
  {remote_home}/etc dir/other.txt: {proj / 'local.txt'}
run: cat ~/x.cfg "{remote_home}/etc dir/other.txt"
""")
    result = subprocess.run([sys.executable, "-m", "skyhop.cli.main", "launch", "t.yaml",
                             "-c", "ren"], cwd=proj, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.split()[-2:] == ["Y", "L"]
    # Nothing local was renamed, moved or added.
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in proj.iterdir()
             if p.name != "t.yaml"}
    assert after == before
    address = claims(home)[0][0].split(":")[2]
    assert on_host(hosts, address, "x.cfg").read_text() == "Y\n"
    assert not on_host(hosts, address, "y.cfg").exists()
    assert sorted(p.name for p in on_host(hosts, address, "etc dir").iterdir()) == [
        "other.txt"]


def test_unreachable_host_is_a_clear_error(home, hosts):
    address = ADDRESSES[3]
    (home / "config.yaml").write_text(json.dumps({"ssh_pools": {"solo": {
        "hosts": [address], "user": sshhosts.USER,
        "identity_file": str(hosts.client_key)}}}))
    hosts.partition(address, down=True)
    try:
        result = sky("launch", "echo hi", "-c", "solo", "--infra", "ssh/solo", timeout=120)
    finally:
        hosts.partition(address, down=False)
    assert result.returncode == 2
    assert "cannot reach" in result.stderr or "unreachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert claims(home) == []


def test_check_says_which_providers_can_launch_and_what_is_missing(home, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "none"))
    rows = {r["provider"]: r for r in json.loads(sky("check", "--json").stdout)}
    assert rows["ssh"]["enabled"] and rows["local"]["enabled"]
    assert not rows["aws"]["enabled"] and "credentials" in rows["aws"]["reason"]
    (home / "config.yaml").write_text("{}")
    rows = {r["provider"]: r for r in json.loads(sky("check", "--json").stdout)}
    assert not rows["ssh"]["enabled"] and "ssh_pools" in rows["ssh"]["reason"]
    (home / "config.yaml").write_text("ssh_pools: {lab: {hosts: [10.0.0.1]}}")
    rows = {r["provider"]: r for r in json.loads(sky("check", "--json").stdout)}
    assert "needs `user` and `identity_file`" in rows["ssh"]["reason"]


def test_the_agent_on_a_pool_head_answers_only_its_owner(home, hosts):
    """On the head host, another local user cannot reach the agent (even with the folders
    above it opened), and another skyhop home on the same pool login (same uid, so the
    socket opens) is refused for want of the cluster's token, through the SSH bridge."""
    import hashlib

    from skyhop.execute.agent import TOKEN_FILE, socket_path
    from skyhop.execute.agent_client import AgentClient, AgentRefused, agent_token
    from skyhop.execute.launcher import Launcher
    from skyhop.state.clusters import ClusterStore
    from test_agent_safety import ATTACK

    assert sky("launch", "echo hi", "-c", "guarded", "--infra", "ssh/lab", "-d"
               ).returncode == 0
    launcher = Launcher(ClusterStore())
    record = ClusterStore().get("guarded")
    agent_dir = record.handle["agent_dir"]
    address = record.nodes[0].address
    assert [j["id"] for j in launcher.agent(record).queue()] == [1]
    connect = launcher.runners(record)[0].connect_agent
    for token in ["0" * 64, agent_token("another-nonce")]:
        with pytest.raises(AgentRefused):
            AgentClient("guarded", agent_dir, connect, token=token).submit(
                {"run": "touch ~/pwned"})

    host = hosts.hosts[address]
    for folder in (host.home, host.home / ".skyhop"):
        folder.chmod(0o755)
    abstract = "skyhop-agent-" + hashlib.sha256(agent_dir.encode()).hexdigest()[:24]
    token = on_host(hosts, address, f".skyhop/agent/{TOKEN_FILE}")
    attack = subprocess.run(
        ["nsenter", "-t", str(host.sshd_pid), "-m", "-n", "setpriv", "--reuid=nobody",
         "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", ATTACK,
         socket_path(agent_dir), abstract, token.read_text() if token.exists() else "",
         f"{agent_dir}/../../pwned"], capture_output=True, text=True, timeout=30, cwd="/")
    assert attack.returncode == 0, attack.stderr
    assert json.loads(attack.stdout) == [], "another user on the head reached the agent"
    assert [j["id"] for j in launcher.agent(record).queue()] == [1]
    assert not on_host(hosts, address, "pwned").exists()


def test_two_homes_on_one_pool_login_never_share_a_host(home, hosts, tmp_path, monkeypatch):
    """Each home has its own database, so only a claim made on the host itself keeps the
    second home off the first's hosts, and its `down` away from the first's cluster."""
    marks = "cat ~/.skyhop-claim/owner; sleep 300"
    first = sky("launch", marks, "-c", "mine", "--infra", "ssh/lab", "-d")
    assert first.returncode == 0, first.stderr
    (mine_host,) = [h for h, _ in claims(home)]
    other = tmp_path / "other-home"
    other.mkdir()
    (other / "config.yaml").write_text((home / "config.yaml").read_text())
    monkeypatch.setenv("SKYHOP_HOME", str(other))
    # A 4-node launch needs every host: one is the first home's, so it cannot be made.
    task = tmp_path / "four.yaml"
    task.write_text("num_nodes: 4\nrun: echo all\n")
    refused = sky("launch", str(task), "-c", "theirs", "--infra", "ssh/lab")
    assert refused.returncode == 2 and "another skyhop home" in refused.stderr, refused.stderr
    # Three nodes fit beside it; the other home's down then releases only its own hosts.
    task.write_text("num_nodes: 3\nrun: echo three\n")
    three = sky("launch", str(task), "-c", "theirs", "--infra", "ssh/lab")
    assert three.returncode == 0, three.stderr
    assert mine_host not in {h for h, _ in claims(other)}
    assert sky("down", "theirs", "-y").returncode == 0
    assert claims(other) == []
    monkeypatch.setenv("SKYHOP_HOME", str(home))
    queue = sky("queue", "mine")
    assert queue.returncode == 0 and "RUNNING" in queue.stdout, queue.stdout + queue.stderr
    owners = [on_host(hosts, a, ".skyhop-claim/owner") for a in ADDRESSES if a in mine_host]
    assert len(owners) == 1 and "cluster mine" in owners[0].read_text()
