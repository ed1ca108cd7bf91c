"""The AWS provider against a real moto EC2 server over HTTP, with injected EC2 errors."""

from __future__ import annotations

import socket
import subprocess
import sys

import boto3
import pytest
import yaml

from moto_ec2 import MotoEC2
from skyhop import config
from skyhop.optimizer.plan import Placement
from skyhop.provision.base import ClusterSpec, Instance
from skyhop.provision.errors import (
    NOWHERE,
    PROVIDER,
    REGION,
    ZONE,
    AuthError,
    CapacityError,
    InvalidRequestError,
    QuotaError,
    ThrottledError,
    TransientError,
)
from skyhop.provision.providers import aws
from skyhop.provision.providers.aws import AwsProvider
from skyhop.provision.providers.aws_errors import ZoneUnusableError, class_for_code
from skyhop.provision.providers.aws_images import arch

REGION_NAME = "us-east-1"
OLD_JAMMY, NEW_JAMMY, ARM_JAMMY = "ami-0a11c0de00000001", "ami-0a11c0de00000002", "ami-0a11c0de0003"


def _ami(ami_id: str, name: str, date: str, machine: str = "x86_64") -> dict:
    return {"ami_id": ami_id, "name": name, "owner_id": "099720109477", "state": "available",
            "public": True, "architecture": machine, "creation_date": date,
            "root_device_type": "ebs", "root_device_name": "/dev/sda1",
            "virtualization_type": "hvm", "hypervisor": "xen", "image_type": "machine",
            "description": "Canonical, Ubuntu, 22.04 LTS"}


# Replaces moto's built-in AMIs: two Ubuntu 22.04 amd64 builds (the newer must win), one
# arm64, and no Deep Learning AMI (so the GPU default resolves to nothing).
AMIS = [
    _ami(OLD_JAMMY, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20230101",
         "2023-01-01T00:00:00.000Z"),
    _ami(NEW_JAMMY, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240601",
         "2024-06-01T00:00:00.000Z"),
    _ami(ARM_JAMMY, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-20240601",
         "2024-06-01T00:00:00.000Z", "arm64"),
]
LIVE = ("pending", "running", "stopping", "stopped")
NO_SUBNET_ZONE = "use1-az5"  # us-east-1f in moto: the test VPC has no subnet there


@pytest.fixture(scope="module")
def server():
    with MotoEC2(amis=AMIS) as srv:
        yield srv


def _client(url: str):
    return boto3.client("ec2", region_name=REGION_NAME, endpoint_url=url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def vpc(server):
    """A VPC tagged skyhop=true (preferred over moto's default VPC), a subnet per AZ but one."""
    ec2 = _client(server.url)
    vpc_id = ec2.create_vpc(CidrBlock="10.213.0.0/16", TagSpecifications=[{
        "ResourceType": "vpc", "Tags": [{"Key": "skyhop", "Value": "true"}]}])["Vpc"]["VpcId"]
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    for n, zone in enumerate(zones):
        if zone["ZoneId"] != NO_SUBNET_ZONE:
            ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.213.{n}.0/24",
                              AvailabilityZoneId=zone["ZoneId"])
    return vpc_id


@pytest.fixture
def ec2(server):
    return _client(server.url)


@pytest.fixture
def env(server, vpc, tmp_path, monkeypatch):
    """Credentials for moto, a temp skyhop home and config; returns a config writer."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_EC2", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION_NAME)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))  # not the user's ~/.aws
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
    monkeypatch.setenv("SKYHOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SKYHOP_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("SKYHOP_AWS_POLL_S", "0.05")

    def write(**aws_section):
        # No SSH server stands behind moto's fake addresses: skip the port-22 wait.
        settings = {"wait_for_ssh": False, "api_max_attempts": 2, "image_id": NEW_JAMMY,
                    "backoff_attempts": 3, "backoff_base_s": 0.01, "cleanup_timeout_s": 5}
        settings.update(aws_section)
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(
            {"aws": {k: v for k, v in settings.items() if v is not None}}))
        config.reload()

    write()
    yield write
    server.set_faults([])
    config.reload()


def placement(zone: str | None = "use1-az2", instance_type: str = "g5.xlarge",
              accelerators: dict | None = None, use_spot: bool = False,
              num_nodes: int = 2) -> Placement:
    if accelerators is None and instance_type.startswith("g5."):
        accelerators = {"A10G": 1}
    return Placement(name="train", provider="aws", region=REGION_NAME, zone=zone,
                     instance_type=instance_type, accelerators=accelerators or None,
                     use_spot=use_spot, num_nodes=num_nodes, hourly_price=1.0, est_hours=1.0,
                     est_cost=2.0)


def described(ec2, cluster: str, states=("pending", "running")) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "tag:skyhop-cluster", "Values": [cluster]},
        {"Name": "instance-state-name", "Values": list(states)}])
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


# --- launching ----------------------------------------------------------------------------


def test_provision_lands_in_planned_zone_with_tags(env, ec2, vpc):
    provider = AwsProvider()
    nodes = provider.provision(ClusterSpec("c-prov", 2, tags={"team": "ml"}), placement(), 2)

    assert [n.rank for n in nodes] == [0, 1]
    for node in nodes:
        assert node.info["zone"] == "use1-az2" and node.info["zone_name"] == "us-east-1c"
        assert node.info["region"] == REGION_NAME and node.info["user"] == "ubuntu"
        assert node.address == node.info["public_ip"] and node.info["private_ip"]
        assert node.info["spot"] is False
    raw = {i["InstanceId"]: i for i in described(ec2, "c-prov")}
    assert set(raw) == {n.instance_id for n in nodes}
    for node in nodes:
        inst = raw[node.instance_id]
        assert inst["Placement"]["AvailabilityZone"] == "us-east-1c"
        assert inst["VpcId"] == vpc and inst["ImageId"] == NEW_JAMMY
        assert inst["InstanceType"] == "g5.xlarge" and inst["KeyName"].startswith("skyhop-")
        assert tags_of(inst) == {"team": "ml", "skyhop-cluster": "c-prov",
                                 "skyhop-rank": str(node.rank), "Name": f"c-prov-{node.rank}"}
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag:skyhop-cluster",
                                             "Values": ["c-prov"]}])["Volumes"]
    assert len(volumes) == 2 and {v["Size"] for v in volumes} == {256}
    assert all(tags_of(v)["team"] == "ml" for v in volumes)
    group = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["skyhop-c-prov"]}])["SecurityGroups"][0]
    assert group["VpcId"] == vpc and tags_of(group)["skyhop-cluster"] == "c-prov"
    assert any(p.get("FromPort") == 22 for p in group["IpPermissions"])

    # Found again by tag: with the region, from memory, from config `aws.regions`.
    ids = [n.instance_id for n in nodes]
    assert [n.instance_id for n in provider.instances("c-prov", region=REGION_NAME)] == ids
    assert [n.instance_id for n in provider.instances("c-prov")] == ids
    env(regions=[REGION_NAME])
    fresh = AwsProvider()
    assert [(n.instance_id, n.rank) for n in fresh.instances("c-prov")] == [
        (n.instance_id, n.rank) for n in nodes]
    tagged = {t["instance_id"]: t for t in fresh.all_tagged([REGION_NAME])}
    assert {tagged[i]["cluster"] for i in ids} == {"c-prov"}
    assert tagged[ids[0]]["state"] == "running" and tagged[ids[0]]["region"] == REGION_NAME


def test_prepare_is_idempotent_and_provision_reuses_resources(env, ec2):
    provider = AwsProvider()
    cluster = ClusterSpec("c-idem", 1)
    provider.prepare(cluster)
    provider.prepare(cluster)
    provider.provision(cluster, placement(num_nodes=1), 1)
    AwsProvider().provision(cluster, placement(num_nodes=1), 1)  # a second process, same key
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["skyhop-c-idem"]}])["SecurityGroups"]
    assert len(groups) == 1
    assert len({i["KeyName"] for i in described(ec2, "c-idem")}) == 1


def test_spot_request(env, ec2):
    nodes = AwsProvider().provision(ClusterSpec("c-spot", 1), placement(use_spot=True), 1)
    assert nodes[0].info["spot"] is True
    assert described(ec2, "c-spot")[0]["InstanceLifecycle"] == "spot"


def test_internal_ips_and_ssh_user(env):
    env(use_internal_ips=True, ssh_user="ec2-user")
    node = AwsProvider().provision(ClusterSpec("c-internal", 1), placement(), 1)[0]
    assert node.address == node.info["private_ip"] and node.address.startswith("10.213.")
    assert node.info["user"] == "ec2-user"


# --- error classification -----------------------------------------------------------------


def test_insufficient_capacity_is_a_zone_error_and_nothing_runs(env, ec2, server):
    server.set_faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                        "status": 500, "times": 10,
                        "match": {"Placement.AvailabilityZone": "us-east-1c"}}])
    with pytest.raises(CapacityError) as info:
        AwsProvider().provision(ClusterSpec("c-ice", 2), placement(), 2)
    err = info.value
    assert err.scope == ZONE and not err.retry_same
    assert (err.provider, err.region, err.zone, err.instance_type) == (
        "aws", REGION_NAME, "use1-az2", "g5.xlarge")
    assert "InsufficientInstanceCapacity" in err.message and "g5.xlarge capacity" in err.message
    assert server.faults()[0]["hits"] == 2  # a 5xx: botocore tried api_max_attempts times
    assert described(ec2, "c-ice", LIVE) == []


def test_capacity_in_another_zone_is_unaffected(env, server):
    server.set_faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                        "status": 500, "match": {"Placement.AvailabilityZone": "us-east-1c"}}])
    nodes = AwsProvider().provision(ClusterSpec("c-other-az", 1), placement("use1-az4"), 1)
    assert nodes[0].info["zone_name"] == "us-east-1d"


def test_one_retry_recovers_from_a_single_capacity_blip(env, server):
    server.set_faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                        "status": 500, "times": 1}])
    assert len(AwsProvider().provision(ClusterSpec("c-blip", 1), placement(), 1)) == 1
    assert server.faults()[0]["hits"] == 1


def test_failure_after_launch_terminates_the_whole_gang(env, ec2, server):
    server.set_faults([{"action": "CreateTags", "code": "UnauthorizedOperation",
                        "status": 403}])
    with pytest.raises(AuthError):
        AwsProvider().provision(ClusterSpec("c-gang", 3), placement(), 3)
    assert described(ec2, "c-gang", LIVE) == []
    assert len(described(ec2, "c-gang", ("shutting-down", "terminated"))) == 3


def test_failed_cleanup_is_reported_on_the_error(env, ec2, server):
    server.set_faults([{"action": "CreateTags", "code": "UnauthorizedOperation", "status": 403},
                       {"action": "TerminateInstances", "code": "UnauthorizedOperation",
                        "status": 403}])
    with pytest.raises(AuthError) as info:
        AwsProvider().provision(ClusterSpec("c-leak", 1), placement(), 1)
    leaked = described(ec2, "c-leak")
    assert len(leaked) == 1 and leaked[0]["InstanceId"] in " ".join(info.value.__notes__)
    server.set_faults([])
    AwsProvider().terminate("c-leak", [leaked[0]["InstanceId"]], region=REGION_NAME)


@pytest.mark.parametrize(("code", "status", "cls", "scope"), [
    ("VcpuLimitExceeded", 400, QuotaError, REGION),
    ("MaxSpotInstanceCountExceeded", 400, QuotaError, REGION),
    ("AuthFailure", 401, AuthError, PROVIDER),
    ("Unsupported", 400, ZoneUnusableError, ZONE),
    ("InvalidParameterValue", 400, InvalidRequestError, REGION),
    ("RequestLimitExceeded", 503, ThrottledError, NOWHERE),  # blocks no zone
])
def test_ec2_errors_are_classified(env, ec2, server, code, status, cls, scope):
    server.set_faults([{"action": "RunInstances", "code": code, "status": status,
                        "message": f"AWS says {code}"}])
    with pytest.raises(cls) as info:
        AwsProvider().provision(ClusterSpec(f"c-{code.lower()}", 1), placement(), 1)
    err = info.value
    assert err.scope == scope and err.retry_same == issubclass(cls, TransientError)
    assert code in err.message and f"AWS says {code}" in err.message
    assert (err.region, err.zone, err.instance_type) == (REGION_NAME, "use1-az2", "g5.xlarge")
    expected_hits = 2 if status >= 500 else 1  # botocore retries 5xx/throttling only
    if issubclass(cls, TransientError):  # then skyhop backs off and tries again (backoff_attempts)
        expected_hits *= 3
    assert server.faults()[0]["hits"] == expected_hits
    assert described(ec2, f"c-{code.lower()}", LIVE) == []


def test_real_moto_error_unknown_image(env):
    env(image_id={REGION_NAME: "ami-00000000deadbeef"})
    with pytest.raises(InvalidRequestError) as info:
        AwsProvider().provision(ClusterSpec("c-badami", 1), placement(), 1)
    assert "InvalidAMIID" in info.value.message and info.value.scope == REGION


def test_missing_credentials_are_an_auth_error(env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AuthError) as info:
        AwsProvider().provision(ClusterSpec("c-nocreds", 1), placement(), 1)
    assert "aws configure" in info.value.message and info.value.scope == PROVIDER


def test_unreachable_endpoint_is_transient(env, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError) as info:
        AwsProvider().provision(ClusterSpec("c-down", 1), placement(), 1)
    assert info.value.retry_same and "unreachable" in info.value.message


def test_error_table():
    assert class_for_code("InvalidAMIID.Malformed") is InvalidRequestError
    assert class_for_code("InsufficientHostCapacity") is CapacityError
    assert class_for_code("InstanceLimitExceeded") is QuotaError
    assert class_for_code("SomethingNew", 503) is TransientError
    assert class_for_code("SomethingNew", 400) is InvalidRequestError


# --- zones, networks, images --------------------------------------------------------------


def test_zone_without_subnet_blocks_only_that_zone(env):
    with pytest.raises(ZoneUnusableError) as info:
        AwsProvider().provision(ClusterSpec("c-nosubnet", 1), placement(NO_SUBNET_ZONE), 1)
    assert info.value.scope == ZONE and info.value.zone == NO_SUBNET_ZONE
    assert "no subnet in us-east-1f" in info.value.message


def test_unknown_zone_id(env):
    with pytest.raises(ZoneUnusableError, match="use1-az99"):
        AwsProvider().provision(ClusterSpec("c-nozone", 1), placement("use1-az99"), 1)


def test_configured_vpc_wins(env, ec2):
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default",
                                              "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    env(vpc_id={REGION_NAME: default_vpc})
    AwsProvider().provision(ClusterSpec("c-defvpc", 1), placement(), 1)
    assert described(ec2, "c-defvpc")[0]["VpcId"] == default_vpc


def test_default_image_resolves_to_newest_by_name(env, ec2):
    env(image_id=None)
    AwsProvider().provision(ClusterSpec("c-cpu", 1), placement(instance_type="m5.large"), 1)
    AwsProvider().provision(ClusterSpec("c-arm", 1), placement(instance_type="m7g.large"), 1)
    assert described(ec2, "c-cpu")[0]["ImageId"] == NEW_JAMMY
    assert described(ec2, "c-arm")[0]["ImageId"] == ARM_JAMMY


def test_no_default_image_says_how_to_set_one(env):
    env(image_id=None)  # the server has no Deep Learning AMI for GPU types
    with pytest.raises(InvalidRequestError) as info:
        AwsProvider().provision(ClusterSpec("c-noimg", 1), placement(), 1)
    assert info.value.scope == REGION and REGION_NAME in info.value.message
    assert "image_id" in info.value.message and "Deep Learning" in info.value.message


def test_image_override_per_region_and_global(env, ec2):
    env(image_id=OLD_JAMMY)
    AwsProvider().provision(ClusterSpec("c-img1", 1), placement(), 1)
    env(image_id={"eu-west-1": NEW_JAMMY})  # another region's override: default applies here
    AwsProvider().provision(ClusterSpec("c-img2", 1), placement(instance_type="m5.large"), 1)
    assert described(ec2, "c-img1")[0]["ImageId"] == OLD_JAMMY
    assert described(ec2, "c-img2")[0]["ImageId"] == NEW_JAMMY


def test_architecture_from_instance_type():
    assert [arch(t) for t in ("m7g.large", "c6gn.xlarge", "g5g.xlarge", "a1.large",
                              "im4gn.large")] == ["arm64"] * 5
    assert [arch(t) for t in ("g5.xlarge", "p4d.24xlarge", "g4dn.xlarge", "c7i-flex.large",
                              "trn1.2xlarge")] == ["x86_64"] * 5


# --- lifecycle ------------------------------------------------------------------------------


def test_terminate_is_idempotent_and_only_touches_the_cluster(env, ec2):
    provider = AwsProvider()
    mine = provider.provision(ClusterSpec("c-term", 2), placement(), 2)
    other = provider.provision(ClusterSpec("c-keep", 1), placement(), 1)
    ids = [n.instance_id for n in mine]
    provider.terminate("c-term", [*ids, other[0].instance_id, "i-0123456789abcdef0"],
                       region=REGION_NAME)
    provider.terminate("c-term", ids, region=REGION_NAME)
    provider.terminate("c-term", ids)  # region from memory
    assert provider.instances("c-term", region=REGION_NAME) == []
    assert [n.instance_id for n in provider.instances("c-keep")] == [other[0].instance_id]


def test_region_unknown_scans_every_enabled_region(env):
    nodes = AwsProvider().provision(ClusterSpec("c-scan", 1), placement(), 1)
    found = AwsProvider().instances("c-scan")  # a new process: no memory, no aws.regions
    assert [n.instance_id for n in found] == [nodes[0].instance_id]


def test_teardown_removes_the_security_group(env, ec2):
    provider = AwsProvider()
    nodes = provider.provision(ClusterSpec("c-down2", 1), placement(), 1)
    with pytest.raises(InvalidRequestError, match="terminate them first"):
        provider.teardown("c-down2", region=REGION_NAME)
    provider.terminate("c-down2", [n.instance_id for n in nodes], region=REGION_NAME)
    provider.teardown("c-down2", region=REGION_NAME)
    provider.teardown("c-down2", region=REGION_NAME)  # idempotent
    assert ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["skyhop-c-down2"]}])["SecurityGroups"] == []


def test_stop_and_start(env, ec2):
    provider = AwsProvider()
    nodes = provider.provision(ClusterSpec("c-stop", 2), placement(), 2)
    ids = [n.instance_id for n in nodes]
    provider.stop("c-stop", ids, region=REGION_NAME)
    assert {n.info["state"] for n in provider.instances("c-stop")} == {"stopped"}
    started = provider.start("c-stop", ids, region=REGION_NAME)
    assert [n.instance_id for n in started] == ids and [n.rank for n in started] == [0, 1]
    assert {n.info["state"] for n in started} == {"running"}


def test_open_ports(env, ec2):
    provider = AwsProvider()
    provider.provision(ClusterSpec("c-ports", 1), placement(), 1)
    provider.open_ports("c-ports", [8888, "9000-9010"], region=REGION_NAME)
    perms = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["skyhop-c-ports"]}])["SecurityGroups"][0]["IpPermissions"]
    assert {(p.get("FromPort"), p.get("ToPort")) for p in perms} >= {(8888, 8888), (9000, 9010)}


# --- enabling, SSH wait, import cost --------------------------------------------------------


def test_is_enabled_with_and_without_credentials(env, monkeypatch):
    assert AwsProvider().is_enabled() == (True, "")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ok, reason = AwsProvider().is_enabled()
    assert not ok and "aws configure" in reason and "AWS_ACCESS_KEY_ID" in reason
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "boto3" else real(name, *a))
    assert AwsProvider().is_enabled() == (False,
                                          "boto3 is not installed: pip install 'skyhop[aws]'")


def test_wait_for_ssh_port(monkeypatch):
    monkeypatch.setenv("SKYHOP_AWS_POLL_S", "0.05")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        monkeypatch.setattr(aws, "SSH_PORT", listener.getsockname()[1])
        node = Instance("i-1", 0, "127.0.0.1")
        aws._wait_for_ssh([node], timeout=5, where={})  # returns: the port answers
    with pytest.raises(TransientError, match="not reachable"):
        aws._wait_for_ssh([node], timeout=0.3, where={})  # closed now


def test_import_does_not_load_boto3():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import skyhop.provision.providers.aws"],
                         capture_output=True, text=True, check=True)
    assert "boto" not in out.stderr
