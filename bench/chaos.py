"""Chaos: SIGKILLed 2-node AWS launches under injected API faults; what leaks?

    python bench/chaos.py [--kills 20] [--seed S]      (root: SSH hosts in network namespaces)

moto's EC2 server (tests/moto_ec2.py, real HTTP, with fault injection) plays AWS in three
regions; a test "hypervisor" per region turns every running moto instance into a real
OpenSSH host (tests/test_aws_launch.py), so launches go all the way to SSH and the agent.
Each of `--kills` rounds sets one or two fault kinds at random, acting right after
RunInstances (throttled DescribeInstances, throttled TerminateInstances with a refused
CreateTags so the attempt must be cleaned up, 5-20 s of connection resets on every call,
capacity errors that push failover across zones and regions), starts `skyhop launch -d` of
a 2-node task that may run in any of the three regions, and SIGKILLs it at a random moment.
Then the faults are cleared, `skyhop status --refresh` and `skyhop gc` run, and it prints
what leaked: instances no cluster in state lists, security groups of no cluster (or in a
region where their cluster runs nothing), key material no cluster needs (this home's EC2
key pairs in regions without a cluster, host-key files of unknown clusters). Then every
remaining cluster is taken down, `gc` runs again, and the same counts are printed. All
should be 0. Figures only; nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

REGIONS = ["us-east-1", "us-east-2", "us-west-2"]
TASK = """
name: chaos
num_nodes: 2
resources:
  cpus: 2+
  any_of:
    - {infra: aws/us-east-1}
    - {infra: aws/us-east-2}
    - {infra: aws/us-west-2}
run: echo "hello from $(hostname)"
"""
LIVE = ["pending", "running", "stopping", "stopped"]


def fault_rules(kind: str, rng: random.Random) -> list[dict]:
    if kind == "throttled-describe":
        return [{"action": "DescribeInstances", "code": "RequestLimitExceeded", "status": 503,
                 "armed_by": "RunInstances", "times": rng.randint(5, 30)}]
    if kind == "throttled-terminate":
        return [{"action": "CreateTags", "code": "UnauthorizedOperation", "status": 403,
                 "times": 1},
                {"action": "TerminateInstances", "code": "RequestLimitExceeded",
                 "status": 503, "times": rng.randint(5, 30)}]
    if kind == "resets":
        return [{"action": "*", "reset": True, "armed_by": "RunInstances",
                 "for_s": rng.uniform(5, 20)}]
    if kind == "capacity":
        return [{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                 "status": 500, "times": rng.randint(3, 15)}]
    raise ValueError(kind)


KINDS = ["throttled-describe", "throttled-terminate", "resets", "capacity"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()

    import sshhosts

    reason = sshhosts.unavailable_reason()
    if reason:
        sys.exit(f"chaos needs SSH hosts: {reason}")
    with tempfile.TemporaryDirectory(prefix="skyhop-chaos-") as tmp:
        run(Path(tmp), args.kills, random.Random(args.seed))


def run(base: Path, kills: int, rng: random.Random) -> None:
    import boto3

    import sshhosts
    from moto_ec2 import MotoEC2
    from test_aws_launch import Hypervisor

    home = base / "home"
    env = {**os.environ, "SKYHOP_HOME": str(home), "SKYHOP_CONFIG": str(base / "config.yaml"),
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGIONS[0], "AWS_EC2_METADATA_DISABLED": "true",
           "SKYHOP_AWS_POLL_S": "0.2"}
    env.pop("SKYHOP_DB_URL", None)
    os.environ.update({k: env[k] for k in ("SKYHOP_HOME", "SKYHOP_CONFIG")})
    with MotoEC2() as server, sshhosts.SSHHosts(base / "ssh") as hosts:
        env["AWS_ENDPOINT_URL"] = server.url
        # `nofault` keys: the hypervisors and the counts see the cloud as it is.
        clients = {r: boto3.client("ec2", region_name=r, endpoint_url=server.url,
                                   aws_access_key_id="nofault-chaos",
                                   aws_secret_access_key="testing") for r in REGIONS}
        images = {}
        for k, (region, ec2) in enumerate(clients.items()):
            vpc = ec2.create_vpc(CidrBlock="10.213.0.0/16")["Vpc"]["VpcId"]
            ec2.create_tags(Resources=[vpc], Tags=[{"Key": "skyhop", "Value": "true"}])
            for j, zone in enumerate(ec2.describe_availability_zones()["AvailabilityZones"]):
                ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.213.{160 + 8 * k + j}.0/24",
                                  AvailabilityZone=zone["ZoneName"])
            images[region] = ec2.describe_images()["Images"][0]["ImageId"]
        (base / "config.yaml").write_text(json.dumps({"aws": {
            "use_internal_ips": True, "ssh_user": sshhosts.USER, "image_id": images,
            "regions": REGIONS, "ssh_timeout_s": 60, "boot_timeout_s": 60,
            "backoff_base_s": 0.5, "cleanup_timeout_s": 120}}))
        from skyhop.provision.keys import ensure_key

        public_key = ensure_key()[1]
        hypervisors = [Hypervisor(ec2, hosts, public_key).start() for ec2 in clients.values()]
        task = base / "task.yaml"
        task.write_text(TASK)
        try:
            chaos(server, env, task, kills, rng)
            server.set_faults([])
            before = sky(env, "status", "--json")
            print(f"after {kills} kills: clusters by status: "
                  f"{_by_status(json.loads(before.stdout or '[]'))}")
            report(env, clients, home, "after status --refresh and gc", reconcile=True)
            for cluster in json.loads(sky(env, "status", "--json").stdout or "[]"):
                down = sky(env, "down", cluster["name"], "-y")
                if down.returncode:
                    print(f"down {cluster['name']}: exit {down.returncode}: "
                          f"{down.stderr.strip()[-300:]}")
            report(env, clients, home, "after down of every cluster and gc", reconcile=True)
        finally:
            for hypervisor in hypervisors:
                hypervisor.stop()


def chaos(server, env: dict, task: Path, kills: int, rng: random.Random) -> None:
    started = time.monotonic()
    for i in range(kills):
        kinds = rng.sample(KINDS, rng.choice([1, 2]))
        server.set_faults([rule for kind in kinds for rule in fault_rules(kind, rng)])
        process = subprocess.Popen([sys.executable, "-m", "skyhop.cli.main", "launch",
                                    str(task), "-c", f"chaos{i}", "-d"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        wait = rng.uniform(0.5, 25.0)
        try:
            code = process.wait(timeout=wait)
            print(f"  round {i:2}: {'+'.join(kinds):40} finished by itself (exit {code})")
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            print(f"  round {i:2}: {'+'.join(kinds):40} SIGKILL after {wait:4.1f} s")
    print(f"{kills} rounds in {time.monotonic() - started:.0f} s")


def sky(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def _by_status(clusters: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in clusters:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return counts


def report(env: dict, clients: dict, home: Path, label: str, reconcile: bool) -> None:
    if reconcile:
        for command in (("status", "--refresh"), ("gc",)):
            t = time.monotonic()
            result = sky(env, *command)
            lines = [x for x in (result.stdout + result.stderr).splitlines() if x.strip()]
            print(f"`skyhop {' '.join(command)}`: exit {result.returncode}, "
                  f"{time.monotonic() - t:.1f} s, {len(lines)} line(s)")
            for line in lines:
                if "error" in line.lower() or "could not" in line:
                    print(f"    {line}")
    clusters = json.loads(sky(env, "status", "--json").stdout or "[]")
    known = {c["name"] for c in clusters}
    nodes = {(c["name"], n["instance_id"]) for c in clusters for n in c["nodes"]}
    regions_used = {(c["name"], c["region"]) for c in clusters}
    instances = groups = pairs = 0
    from skyhop.provision.keys import ensure_key
    from skyhop.provision.providers.aws_network import key_pair_name

    mine = key_pair_name(ensure_key()[1])
    for region, ec2 in clients.items():
        for reservation in ec2.describe_instances(Filters=[
                {"Name": "tag-key", "Values": ["skyhop-cluster"]},
                {"Name": "instance-state-name", "Values": LIVE}])["Reservations"]:
            for inst in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                instances += (tags["skyhop-cluster"], inst["InstanceId"]) not in nodes
        for group in ec2.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": ["skyhop-*"]}])["SecurityGroups"]:
            cluster = group["GroupName"].removeprefix("skyhop-")
            groups += (cluster, region) not in regions_used
        in_use = any(r == region for _, r in regions_used)
        pairs += sum(1 for p in ec2.describe_key_pairs()["KeyPairs"]
                     if p["KeyName"] == mine and not in_use)
    folder = home / "known_hosts.d"
    host_keys = sum(1 for p in folder.iterdir() if p.name not in known) if folder.is_dir() else 0
    print(f"{label}: clusters {len(known)} ({len(nodes)} nodes); leaked instances "
          f"{instances}, security groups {groups}, key material {pairs + host_keys} "
          f"(EC2 key pairs {pairs}, host-key files {host_keys})")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
