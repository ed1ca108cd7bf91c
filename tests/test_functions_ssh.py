"""The function API on an SSH pool of real OpenSSH hosts in network namespaces: a 2-node
pool (values, errors, output, code and wheels shipped to the nodes, a cross-host
rendezvous), failover from a pool that cannot serve to the local provider, a failed
environment step, and a SIGKILLed client whose pool is reclaimed."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import skyhop
import sshhosts
from conftest import ROOT, use_home
from skyhop.errors import UserError
from test_functions_local import _wait_gone, _wheel, rendezvous

pytestmark = pytest.mark.skipif(sshhosts.unavailable_reason() is not None,
                                reason=str(sshhosts.unavailable_reason()))

POOL = ["10.213.0.41", "10.213.0.42"]
SOLO = "10.213.0.43"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with sshhosts.SSHHosts(tmp_path_factory.mktemp("fnssh")) as made:
        for address in [*POOL, SOLO]:
            made.add(address)
        yield made


@pytest.fixture
def home(tmp_path, monkeypatch, hosts):
    home = tmp_path / "home"
    home.mkdir()
    pool = {"user": sshhosts.USER, "identity_file": str(hosts.client_key)}
    (home / "config.yaml").write_text(json.dumps({"ssh_pools": {
        "fn": {**pool, "hosts": POOL}, "solo": {**pool, "hosts": [SOLO]}}}))
    use_home(monkeypatch, home)
    yield home
    assert state(home, "SELECT name FROM clusters") == []
    assert state(home, "SELECT host_id FROM host_claims") == [], "every host is released"


def state(home: Path, query: str) -> list:
    db = home / "state.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(query)]


@skyhop.function
def where():
    info = skyhop.instance_info()
    print(f"rank {info.rank} here")
    return {"host": socket.gethostname(), "rank": info.rank, "head": info.head_addr,
            "provider": info.provider, "pid": os.getpid()}


@skyhop.function
def echo(value):
    return value


class Broken(Exception):
    pass


@skyhop.function
def fail():
    raise Broken("remote failure")


@skyhop.function
def uses_shipped_code():
    import helpers
    import skyhoplib

    return helpers.double(21), skyhoplib.__version__, os.environ["MODE"]


def test_a_two_node_pool_over_ssh(home, hosts, tmp_path, capfd):
    project = tmp_path / "helpers"
    project.mkdir()
    (project / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "skyhoplib", "3.1")
    with skyhop.Compute(infra="ssh/fn", nodes=2, include=[project, wheels], env={"MODE": "x"},
                        pip=["--no-index", "--find-links", "~/.skyhop/functions/code/wheels",
                             "skyhoplib"], quiet=True) as pool:
        assert pool.provider == "ssh"
        nodes = where() @ pool
        assert [n["rank"] for n in nodes] == [0, 1]
        assert {n["host"] for n in nodes} == {hosts.hosts[a].namespace for a in POOL}
        assert {n["head"] for n in nodes} == {POOL[0]}
        out = capfd.readouterr().out
        assert "(node-0) rank 0 here" in out and "(node-1) rank 1 here" in out
        assert uses_shipped_code() @ pool == [(42, "3.1", "x")] * 2
        blob = os.urandom(50 * 1024 * 1024)
        assert echo(blob) >> pool == blob
        with pytest.raises(Broken, match="remote failure") as info:
            fail() >> pool
        assert "test_functions_ssh.py" in str(info.value.__cause__)
        assert list(pool.map(echo, range(500))) == list(range(500))
        assert rendezvous() @ pool == ["head got hello from rank 1", "sent"]
    for address in POOL:  # released hosts keep nothing of the pool but the runtime cache
        home_dir = hosts.hosts[address].home
        assert not (home_dir / ".skyhop" / "functions").exists()
        assert not list((home_dir / ".skyhop" / "pids").glob("*")) if (
            home_dir / ".skyhop" / "pids").exists() else True


def test_falls_over_from_a_fully_claimed_pool_to_local(home, capfd):
    with skyhop.Compute(infra="ssh/solo", quiet=True) as holder:
        assert where() >> holder == where() >> holder  # the only host is busy here
        with skyhop.Compute(skyhop.Spec(infra="ssh/solo"), skyhop.Spec(infra="local"),
                            ordered=True) as pool:
            ran = where() >> pool
        assert pool.provider == "local"
        assert ran["provider"] == "local" and ran["host"] == socket.gethostname()
    err = capfd.readouterr().err
    assert "ssh/solo" in err and "fewer than 1 free" in err, err


def test_falls_over_from_an_unreachable_host_to_local(home, hosts, capfd):
    # Learn the host's shape while it is up (in another process: no connection is kept).
    discover = subprocess.run([sys.executable, "-c", "from skyhop.provision.providers.ssh "
                               "import SSHPoolProvider; print(SSHPoolProvider().shapes('solo'))"],
                              capture_output=True, text=True, env=os.environ, timeout=60)
    assert "vcpus" in discover.stdout, discover.stderr
    from skyhop.execute import ssh_runner

    for key in [k for k in ssh_runner._connections if k[0] == SOLO]:  # from earlier tests
        ssh_runner._connections.pop(key).close()
    hosts.partition(SOLO, down=True)
    try:
        with skyhop.Compute(skyhop.Spec(infra="ssh/solo"), skyhop.Spec(infra="local"),
                            ordered=True) as pool:
            ran = where() >> pool
    finally:
        hosts.partition(SOLO, down=False)
    assert pool.provider == "local" and ran["host"] == socket.gethostname()
    err = capfd.readouterr().err
    assert "cannot reach" in err or "unreachable" in err, err


def test_a_failed_environment_step_leaves_nothing(home):
    with pytest.raises(UserError, match="apt-get install cowsay failed"), \
            skyhop.Compute(infra="ssh/fn", apt=["cowsay"], quiet=True):
        pytest.fail("the pool must not start")
    # the home fixture checks that the hosts were released and no row is left


SCRIPT = """
import os, time
import skyhop

@skyhop.function
def pid():
    return os.getpid()

with skyhop.Compute(infra="ssh/fn", nodes=2, quiet=True) as pool:
    print("READY", pool.name, *(pid() @ pool), flush=True)
    time.sleep(300)
"""


def test_a_sigkilled_client_releases_its_pool_hosts(home, hosts, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "SKYHOP_HOME": str(home)}
    client = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = client.stdout.readline()
    assert line.startswith("READY"), line + client.stderr.read()
    name, *pids = line.split()[1:]
    assert state(home, "SELECT name FROM clusters") == [name]
    assert len(state(home, "SELECT host_id FROM host_claims")) == 2
    assert all(Path(f"/proc/{p}").exists() for p in pids), "the workers run (same PID space)"
    client.send_signal(signal.SIGKILL)
    client.wait()
    assert _wait_gone([int(p) for p in pids]), "the workers exit when their channel closes"
    refresh = subprocess.run([sys.executable, "-m", "skyhop.cli.main", "status", "--refresh"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refresh.returncode == 0, refresh.stderr
    assert "ephemeral pool whose client is gone" in refresh.stdout + refresh.stderr
    assert state(home, "SELECT name FROM clusters") == []
    assert state(home, "SELECT host_id FROM host_claims") == []
    for address in POOL:
        assert not (hosts.hosts[address].home / ".skyhop" / "agent").exists()


def test_the_heartbeat_lease_reclaims_a_pool_of_another_machine(home):
    """A pool whose client runs on another machine is reclaimed when its heartbeat stops."""
    from skyhop.execute.reconcile import lease_lapsed
    from skyhop.state.records import ClusterRecord

    def record(owner: str, beat: float) -> ClusterRecord:
        return ClusterRecord(
            name="fn-x", status="UP", provider="ssh", region="fn", zone=None,
            instance_type=None, accelerators=None, num_nodes=1, use_spot=False,
            hourly_price=0.0, resources=None, setup_hash=None, autostop_minutes=None,
            autostop_down=False, handle={"ephemeral": True, "lease_s": 180, "heartbeat": beat},
            owner=owner, launched_at=0.0, status_changed_at=0.0)

    now = time.time()
    assert not lease_lapsed(record("elsewhere:123", now - 10), now)
    assert lease_lapsed(record("elsewhere:123", now - 600), now)
    assert not lease_lapsed(record(f"{socket.gethostname()}:{os.getpid()}", now - 600), now)
