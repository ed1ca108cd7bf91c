"""`skyhop launch --infra aws` end to end, for real: moto's EC2 server (over HTTP, with
fault injection) decides what exists, and a test "hypervisor" turns every running moto
instance into a real OpenSSH host in a network namespace at the private IP moto gave it
(and removes it when the instance stops or terminates). So plan -> provision -> SSH ->
setup -> run -> down all run against real servers; only the machines are small."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import sshhosts
from conftest import ROOT
from moto_ec2 import MotoEC2

pytestmark = pytest.mark.skipif(sshhosts.unavailable_reason() is not None,
                                reason=str(sshhosts.unavailable_reason()))

REGION = "us-east-1"
POWERED_OFF = ".powered-off"  # written by a test host's `sudo shutdown`


class Hypervisor:
    """Plays EC2's data plane: a running instance is an SSH host at its private IP."""

    def __init__(self, ec2, hosts: sshhosts.SSHHosts, public_key: str):
        self.ec2, self.hosts, self.public_key = ec2, hosts, public_key
        self.running: dict[str, str] = {}  # instance id -> address
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Hypervisor":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep playing; the test sees the effects
                print("hypervisor:", exc, file=sys.stderr)
            self._stop.wait(0.1)

    def sync(self) -> None:
        seen = {}
        for reservation in self.ec2.describe_instances()["Reservations"]:
            for inst in reservation["Instances"]:
                if inst["State"]["Name"] in ("pending", "running"):
                    seen[inst["InstanceId"]] = inst["PrivateIpAddress"]
        for instance_id, address in seen.items():
            if instance_id not in self.running:
                self._boot(address, instance_id)
                self.running[instance_id] = address
            elif (self.hosts.hosts[address].home / POWERED_OFF).exists():
                self._os_shutdown(instance_id)
        for instance_id in [i for i in self.running if i not in seen]:
            self.hosts.remove(self.running.pop(instance_id))

    def _boot(self, address: str, instance_id: str) -> None:
        """Start the instance's machine: its disk (home, host key) survives a stop and
        start, as an EBS root volume does; its `sudo -n shutdown -h now` powers it off
        (for EC2 to notice)."""
        disk = self.hosts.base / "disks" / instance_id
        (disk / "home" / POWERED_OFF).unlink(missing_ok=True)
        host = self.hosts.add(address, [self.public_key], disk=disk,
                              path=f"/home/{sshhosts.USER}/.bin:/usr/local/bin:/usr/bin:/bin")
        fake = host.home / ".bin" / "sudo"
        fake.parent.mkdir(exist_ok=True)
        fake.write_text(f"""#!/bin/sh
# test stand-in for sudo: only a shutdown is allowed (it powers the machine off)
[ "$1" = -n ] && shift
if [ "$1" = shutdown ]; then touch ~/{POWERED_OFF}; exit 0; fi
echo "sudo: a password is required" >&2; exit 1
""")
        fake.chmod(0o755)

    def _os_shutdown(self, instance_id: str) -> None:
        """What EC2 does when an instance's OS shuts down: stop it, or terminate it if its
        InstanceInitiatedShutdownBehavior says so."""
        behavior = self.ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior",
        )["InstanceInitiatedShutdownBehavior"]["Value"]
        if behavior == "terminate":
            self.ec2.terminate_instances(InstanceIds=[instance_id])
        else:
            self.ec2.stop_instances(InstanceIds=[instance_id])


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """moto + SSH hosts + a VPC whose subnets hold the hosts' addresses."""
    import boto3

    base = tmp_path_factory.mktemp("aws")
    home = base / "home"
    env = {"SKYHOP_HOME": str(home), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    old = {k: os.environ.get(k) for k in [*env, "AWS_ENDPOINT_URL", "SKYHOP_CONFIG",
                                          "SKYHOP_DB_URL"]}
    with MotoEC2() as server, sshhosts.SSHHosts(base / "ssh") as hosts:
        os.environ.update(env, AWS_ENDPOINT_URL=server.url)
        os.environ.pop("SKYHOP_CONFIG", None)
        os.environ.pop("SKYHOP_DB_URL", None)
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=server.url)
        vpc = ec2.create_vpc(CidrBlock="10.213.0.0/16")["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc], Tags=[{"Key": "skyhop", "Value": "true"}])
        zones = ec2.describe_availability_zones()["AvailabilityZones"]
        for i, zone in enumerate(zones):
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.213.{20 + i}.0/24",
                              AvailabilityZone=zone["ZoneName"])
        image = ec2.describe_images()["Images"][0]["ImageId"]
        from skyhop.provision.keys import ensure_key

        _, public_key = ensure_key()
        hypervisor = Hypervisor(ec2, hosts, public_key).start()
        try:
            yield {"home": home, "server": server, "ec2": ec2, "image": image,
                   "zones": {z["ZoneId"]: z["ZoneName"] for z in zones}, "hosts": hosts}
        finally:
            hypervisor.stop()
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def aws(cloud):
    """A fresh state for each test (the cloud and its key stay)."""
    home = cloud["home"]
    for name in ("state.db", "known_hosts.d"):
        path = home / name
        if path.is_file():
            path.unlink()
    (home / "config.yaml").write_text(json.dumps({"aws": {
        "use_internal_ips": True, "ssh_user": sshhosts.USER, "image_id": cloud["image"],
        "regions": [REGION], "ssh_timeout_s": 60, "boot_timeout_s": 60}}))
    cloud["server"].set_faults([])
    yield cloud
    for cluster in json.loads(sky("status", "--json").stdout or "[]"):
        sky("down", cluster["name"], "-y")
    sky("gc")
    assert running_tagged(cloud["ec2"]) == []


def sky(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "SKYHOP_AWS_POLL_S": "0.2"}
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def running_tagged(ec2) -> list[tuple[str, str]]:
    """(cluster tag, instance id) of every skyhop-tagged instance not terminated."""
    out = []
    for reservation in ec2.describe_instances(Filters=[
            {"Name": "tag-key", "Values": ["skyhop-cluster"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping",
                                                       "stopped"]}])["Reservations"]:
        for inst in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
            out.append((tags["skyhop-cluster"], inst["InstanceId"]))
    return sorted(out)


TASK = """
name: hello-aws
resources: {infra: aws/us-east-1, cpus: 2+}
setup: echo "setup ran" > ~/setup-marker
run: |
  echo "hello from $(hostname) rank $SKYHOP_NODE_RANK"
  cat ~/setup-marker
"""


def test_launch_on_aws_runs_and_down_leaves_nothing(aws, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    result = sky("launch", str(task), "-c", "web")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "hello from sh-" in result.stdout and "setup ran" in result.stdout
    [cluster] = json.loads(sky("status", "--json").stdout)
    assert cluster["provider"] == "aws" and cluster["status"] == "UP"
    assert [c for c, _ in running_tagged(aws["ec2"])] == ["web"]
    again = sky("exec", "web", "echo second job")
    assert again.returncode == 0 and "second job" in again.stdout
    assert sky("down", "web", "-y").returncode == 0
    assert running_tagged(aws["ec2"]) == []
    groups = aws["ec2"].describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["skyhop-web"]}])["SecurityGroups"]
    assert groups == []


def _zone_order(n: int) -> list[str]:
    """The zones (AZ IDs) the optimizer tries first for TASK, cheapest first."""
    from skyhop.catalog.blocklist import Blocklist, BlockRule
    from skyhop.catalog.catalog import load_catalog
    from skyhop.optimizer import optimize
    from skyhop.spec import parse_dag

    task = parse_dag(TASK).tasks[0]
    order: list[str] = []
    blocked = Blocklist()
    for _ in range(n):
        placement = optimize(task, load_catalog(), blocklist=blocked).tasks[0]
        order.append(placement.zone)
        blocked = blocked + Blocklist((BlockRule("aws", REGION, placement.zone,
                                                 placement.instance_type),))
    return order


def test_capacity_faults_in_two_zones_fail_over_to_the_third(aws, tmp_path):
    first, second, third = _zone_order(3)
    aws["server"].set_faults([
        {"action": "RunInstances", "code": "InsufficientInstanceCapacity", "status": 500,
         "match": {"Placement.AvailabilityZone": aws["zones"][zone]}} for zone in (first,
                                                                                    second)])
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    result = sky("launch", str(task), "-c", "failover")
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stderr.count("InsufficientInstanceCapacity") >= 2, result.stderr
    [cluster] = json.loads(sky("status", "--json").stdout)
    assert cluster["zone"] == third
    shown = json.loads(sky("tracker", "show", "--json").stdout)
    outcomes = {(r["zone"], r["last_outcome"]) for r in shown}
    assert {(first, "capacity"), (second, "capacity"), (third, "ok")} <= outcomes


def test_every_zone_failing_prints_the_attempt_history(aws, tmp_path):
    aws["server"].set_faults([{"action": "RunInstances", "code": "VcpuLimitExceeded",
                               "status": 400}])
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    result = sky("launch", str(task), "-c", "nope")
    assert result.returncode == 2, result.stderr
    assert "could not provision 'nope'" in result.stderr and "attempts:" in result.stderr
    assert "VcpuLimitExceeded" in result.stderr and "Traceback" not in result.stderr
    # quota blocks the region: one attempt for the whole of us-east-1
    history = result.stderr.split("attempts:", 1)[1]
    assert "  1. aws/us-east-1/" in history and "  2. " not in history, result.stderr
    assert json.loads(sky("status", "--json").stdout) == []
    assert running_tagged(aws["ec2"]) == []


def test_chaos_sigkill_while_launching_leaves_no_leak(aws, tmp_path):
    """SIGKILL the launching process at 20 random points; `status --refresh` and `gc`
    then leave no instance that state does not account for, and `down` leaves none."""
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    rng = random.Random(20261201)
    env = {**os.environ, "SKYHOP_AWS_POLL_S": "0.2"}
    for i in range(20):
        process = subprocess.Popen([sys.executable, "-m", "skyhop.cli.main", "launch",
                                    str(task), "-c", f"chaos{i}", "-d"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(rng.uniform(0.3, 4.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = json.loads(sky("status", "--json").stdout)
    print("after the kills:", sorted((c["name"], c["status"]) for c in before),
          "running:", running_tagged(aws["ec2"]))
    refresh = sky("status", "--refresh")
    assert refresh.returncode == 0, refresh.stderr
    print(refresh.stderr)
    gc = sky("gc")
    print(gc.stdout)
    assert gc.returncode == 0, gc.stderr
    clusters = json.loads(sky("status", "--json").stdout)
    assert all(c["status"] == "UP" for c in clusters), clusters
    state_nodes = sorted((c["name"], n["instance_id"]) for c in clusters for n in c["nodes"])
    assert state_nodes == running_tagged(aws["ec2"])
    for cluster in clusters:
        assert sky("down", cluster["name"], "-y").returncode == 0
    assert running_tagged(aws["ec2"]) == []


def test_refresh_forgets_a_cluster_whose_machines_are_gone_and_gc_collects_orphans(aws,
                                                                                  tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    assert sky("launch", str(task), "-c", "gone", "-d").returncode == 0
    assert sky("launch", str(task), "-c", "orphan", "-d").returncode == 0
    ids = dict(running_tagged(aws["ec2"]))
    # Someone terminates `gone` behind skyhop's back (or spot takes it back).
    aws["ec2"].terminate_instances(InstanceIds=[ids["gone"]])
    refresh = sky("status", "--refresh", "--json")
    assert refresh.returncode == 0, refresh.stderr
    assert "gone: its machines are gone" in refresh.stderr
    assert [c["name"] for c in json.loads(refresh.stdout)] == ["orphan"]
    # The state loses `orphan` (a deleted state file, another machine's launch...).
    import sqlite3

    with sqlite3.connect(aws["home"] / "state.db") as db:
        db.execute("DELETE FROM nodes WHERE cluster='orphan'")
        db.execute("DELETE FROM clusters WHERE name='orphan'")
    gc = sky("gc", "--json")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["terminated"] == {"orphan": [ids["orphan"]]}
    assert running_tagged(aws["ec2"]) == []


def test_a_provider_that_refuses_fails_over_to_the_next_providers_own_api(aws, tmp_path):
    """AWS rejects the credentials: the provider is blocked, and the launch goes to the next
    choice, an SSH pool, through the pool's own provider."""
    pool_host = "10.213.0.61"
    aws["hosts"].add(pool_host)
    try:
        config = json.loads((aws["home"] / "config.yaml").read_text())
        config["ssh_pools"] = {"lab": {"hosts": [pool_host], "user": sshhosts.USER,
                                       "identity_file": str(aws["hosts"].client_key)}}
        (aws["home"] / "config.yaml").write_text(json.dumps(config))
        aws["server"].set_faults([{"action": "RunInstances", "code": "AuthFailure",
                                   "status": 401}])
        task = tmp_path / "task.yaml"
        task.write_text("""
resources:
  ordered:
    - {infra: aws/us-east-1, cpus: 2+}
    - {infra: ssh/lab}
run: echo "ran on $(hostname)"
""")
        result = sky("launch", str(task), "-c", "either")
        assert result.returncode == 0, result.stderr + result.stdout
        assert "AuthFailure" in result.stderr
        assert f"ran on {aws['hosts'].hosts[pool_host].namespace}" in result.stdout
        [cluster] = json.loads(sky("status", "--json").stdout)
        assert cluster["provider"] == "ssh"
        assert running_tagged(aws["ec2"]) == []
    finally:
        sky("down", "either", "-y")
        aws["hosts"].remove(pool_host)


def _states(ec2, cluster: str) -> list[str]:
    """The states of the cluster's instances that are not terminated (a launch that failed
    over may have left terminated ones behind)."""
    return sorted(i["State"]["Name"] for r in ec2.describe_instances(Filters=[
        {"Name": "tag:skyhop-cluster", "Values": [cluster]}])["Reservations"]
        for i in r["Instances"] if i["State"]["Name"] != "terminated")


def _wait_states(ec2, cluster: str, wanted: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _states(ec2, cluster) != wanted:
        assert time.monotonic() < deadline, _states(ec2, cluster)
        time.sleep(0.3)


def test_autostop_stops_an_idle_cluster_from_its_own_nodes(aws, tmp_path):
    """The client is gone; the head's agent shuts every node down (workers first) and EC2
    stops them; refresh then sees STOPPED; start brings it back (autostop still armed);
    down still cleans up."""
    task = tmp_path / "task.yaml"
    task.write_text(TASK.replace("name: hello-aws", "name: hello-aws\nnum_nodes: 2"))
    assert sky("launch", str(task), "-c", "idle").returncode == 0
    result = sky("autostop", "idle", "-i", "0")
    assert result.returncode == 0, result.stderr
    _wait_states(aws["ec2"], "idle", ["stopped", "stopped"])
    assert "idle: may have stopped itself (autostop)" in sky("status").stderr
    refreshed = sky("status", "--refresh", "--json")
    assert refreshed.returncode == 0, refreshed.stderr
    [cluster] = json.loads(refreshed.stdout)
    assert cluster["status"] == "STOPPED" and "stopped (autostop)" in refreshed.stderr
    # Started again (same disks and host keys), its agent comes back with autostop still
    # armed: idle at once (0 minutes), it stops itself again.
    started = sky("start", "idle")
    assert started.returncode == 0, started.stderr
    assert "idle: starting" in started.stderr
    _wait_states(aws["ec2"], "idle", ["stopped", "stopped"])
    assert sky("down", "idle", "-y").returncode == 0
    assert running_tagged(aws["ec2"]) == []


def test_autostop_down_terminates_and_refresh_forgets_the_cluster(aws, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    assert sky("launch", str(task), "-c", "gone").returncode == 0
    for instance_id in [i for c, i in running_tagged(aws["ec2"]) if c == "gone"]:
        attribute = aws["ec2"].describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior")
        assert attribute["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    assert sky("autostop", "gone", "-i", "0", "--down").returncode == 0
    _wait_states(aws["ec2"], "gone", [])  # terminated by its own shutdown
    refreshed = sky("status", "--refresh", "--json")
    assert json.loads(refreshed.stdout) == [] and "autostop --down" in refreshed.stderr


def test_an_interactive_ssh_session_keeps_the_cluster_up(aws, tmp_path):
    """`skyhop ssh` logs in with skyhop's key. `wait_for: jobs_and_ssh` (the default):
    someone logged in on the head (a terminal under its sshd) is activity; `--wait-for
    jobs` stops it all the same."""
    task = tmp_path / "task.yaml"
    task.write_text(TASK.replace("name: hello-aws", "name: hello-aws\nnum_nodes: 2"))
    assert sky("launch", str(task), "-c", "busy").returncode == 0
    [cluster] = json.loads(sky("status", "--json").stdout)
    on_worker = sky("ssh", "busy", "--node", "1", "--", "echo $SSH_CONNECTION")
    assert on_worker.returncode == 0, on_worker.stderr
    assert on_worker.stdout.split()[2] == cluster["nodes"][1]["address"]  # the server's
    assert sky("ssh", "busy", "--", "exit 3").returncode == 3
    session = subprocess.Popen(
        [sys.executable, "-m", "skyhop.cli.main", "ssh", "busy", "--tty", "--",
         "echo logged-in on $(tty); sleep 600"], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = session.stdout.readline()
        assert "logged-in on" in line
        if "/dev/pts/" not in line:
            pytest.skip(f"the test host gave no pseudo-terminal ({line.strip()})")
        assert sky("autostop", "busy", "-i", "0").returncode == 0
        # Idle at once (0 minutes) but for the session: the agent checks every second, so
        # without it the node would be shutting down well within this wait.
        time.sleep(6)
        assert _states(aws["ec2"], "busy") == ["running", "running"]
        result = sky("autostop", "busy", "-i", "0", "--wait-for", "jobs")
        assert result.returncode == 0, result.stderr
        _wait_states(aws["ec2"], "busy", ["stopped", "stopped"])
    finally:
        session.kill()
        session.wait()
    assert sky("down", "busy", "-y").returncode == 0


def test_autostop_cannot_stop_spot_nodes():
    from skyhop.errors import UserError
    from skyhop.provision.base import Instance
    from skyhop.provision.providers.aws import AwsProvider

    spot = Instance("i-1", 0, "10.213.20.5", {"spot": True, "region": REGION})
    with pytest.raises(UserError) as err:
        AwsProvider().arm_autostop("c", [spot], down=False)  # refused before any API call
    assert "cannot be stopped" in err.value.message and "--down" in err.value.hint


def test_stop_then_start_runs_jobs_again_on_the_same_machines(aws, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    assert sky("launch", str(task), "-c", "pause").returncode == 0
    assert sky("stop", "pause", "-y").returncode == 0
    _wait_states(aws["ec2"], "pause", ["stopped"])
    started = sky("start", "pause")
    assert started.returncode == 0, started.stderr
    again = sky("exec", "pause", "cat ~/setup-marker")  # the disk survived the stop
    assert again.returncode == 0 and "setup ran" in again.stdout, again.stderr
