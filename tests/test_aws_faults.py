"""No leak under AWS API faults: moto's EC2 server over HTTP with injected throttling,
connection resets and capacity errors, driven through the real provider, provisioner,
launcher and reconciliation."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys

import pytest
import yaml

import test_aws_provider as aws_fixtures
from conftest import ROOT
from skyhop.catalog.catalog import load_catalog
from skyhop.clock import VirtualClock
from skyhop.provision import registry
from skyhop.provision.base import ClusterSpec
from skyhop.provision.errors import ProvisionError, ThrottledError
from skyhop.provision.providers.aws import AwsProvider
from skyhop.provision.provisioner import THROTTLE_RETRIES, Provisioner, ProvisionFailed
from skyhop.spec import Resources, Task
from test_aws_provider import LIVE, REGION_NAME, described, placement

# The moto server, VPC, client and environment fixtures of the provider's tests.
server, vpc, ec2, env = (aws_fixtures.server, aws_fixtures.vpc, aws_fixtures.ec2,
                         aws_fixtures.env)

OTHER_REGION = "us-west-2"


@pytest.fixture(autouse=True)
def fresh_providers():
    registry.get.cache_clear()  # providers cache clients bound to a test's endpoint
    yield
    registry.get.cache_clear()


def _reserve(name: str, region: str = REGION_NAME, num_nodes: int = 1, **fields):
    from skyhop.state.clusters import ClusterStore

    store = ClusterStore()
    assert store.reserve(name, provider="aws", num_nodes=num_nodes, hourly_price=0.1,
                         region=region, owner=f"{socket.gethostname()}:{os.getpid()}",
                         **fields)
    return store


def _groups(ec2_client, cluster: str) -> list[str]:
    return [g["GroupId"] for g in ec2_client.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [f"skyhop-{cluster}"]}])["SecurityGroups"]]


def _client(server_url: str, region: str):
    import boto3

    return boto3.client("ec2", region_name=region, endpoint_url=server_url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


# --- ids recorded at once; cleanup retried until AWS confirms ----------------------------


def test_a_failed_attempt_is_cleaned_up_through_resets_and_throttling(env, ec2, server):
    """Right after RunInstances: 2 s of connection resets on every call, TerminateInstances
    throttled 8 times, and CreateTags refused (the attempt fails). The ids reach `created`
    at once and the cleanup goes on until AWS shows both nodes terminating."""
    server.set_faults([
        {"action": "*", "reset": True, "armed_by": "RunInstances", "for_s": 2},
        {"action": "TerminateInstances", "code": "RequestLimitExceeded", "status": 503,
         "times": 8},
        {"action": "CreateTags", "code": "UnauthorizedOperation", "status": 403}])
    made: list[tuple] = []
    spec = ClusterSpec("c-faults", 2, created=lambda region, ids: made.append((region, ids)))
    with pytest.raises(ProvisionError):  # reset (CreateTags within the 2 s) or refused
        AwsProvider().provision(spec, placement(), 2)
    launched = [ids for _, ids in made if ids]
    assert len(launched) == 1 and len(launched[0]) == 2, made
    assert described(ec2, "c-faults", LIVE) == []
    gone = described(ec2, "c-faults", ("shutting-down", "terminated"))
    assert sorted(i["InstanceId"] for i in gone) == sorted(launched[0])
    hits = {f["action"]: f["hits"] for f in server.faults()}
    assert hits["*"] > 0 and hits["TerminateInstances"] == 8


def test_throttled_describe_while_booting_does_not_fail_the_launch(env, ec2, server):
    server.set_faults([{"action": "DescribeInstances", "code": "RequestLimitExceeded",
                        "status": 503, "armed_by": "RunInstances", "times": 10}])
    nodes = AwsProvider().provision(ClusterSpec("c-slow", 2), placement(), 2)
    assert len(nodes) == 2 and server.faults()[0]["hits"] == 10
    AwsProvider().terminate("c-slow", [n.instance_id for n in nodes], region=REGION_NAME)


# --- refresh and gc compare ids and collect every tagged resource ------------------------


def test_refresh_terminates_a_clusters_instances_that_state_does_not_list(env, ec2, server):
    """A cluster is UP with one node; an earlier attempt left another instance tagged with
    the cluster (the counts say nothing: 2 >= 1). Refresh terminates it by id."""
    from skyhop.execute.reconcile import gc, refresh
    from skyhop.state.records import UP, Node

    provider = AwsProvider()
    [node] = provider.provision(ClusterSpec("c-stray", 1), placement(num_nodes=1), 1)
    [stray] = provider.provision(ClusterSpec("c-stray", 1), placement(num_nodes=1), 1)
    store = _reserve("c-stray")
    store.set_nodes("c-stray", [Node(0, node.instance_id, node.address, node.info)])
    store.update("c-stray", status=UP)
    report = refresh()
    assert report.terminated == {"c-stray": [stray.instance_id]}, report
    live = [i["InstanceId"] for i in described(ec2, "c-stray", LIVE)]
    assert live == [node.instance_id]
    assert gc().errors == []
    assert [i["InstanceId"] for i in described(ec2, "c-stray", LIVE)] == [node.instance_id]


def test_security_groups_of_earlier_regions_are_deleted(env, server):
    """The first attempt fails in us-west-2 (after its security group was made), the
    second lands in us-east-1. Refresh deletes the us-west-2 group while the cluster runs;
    `down` leaves nothing in either region."""
    from skyhop.execute.launcher import Launcher
    from skyhop.execute.operations import Operations
    from skyhop.execute.reconcile import refresh
    from skyhop.state.records import UP, Node

    env(regions=[REGION_NAME])  # the config knows only us-east-1: state must know the rest
    east, west = _client(server.url, REGION_NAME), _client(server.url, OTHER_REGION)
    store = _reserve("c-regions")
    launcher = Launcher(store)
    spec = ClusterSpec("c-regions", 1, created=lambda region, ids: launcher._record_created(
        "c-regions", "aws", region, ids))
    server.set_faults([{"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                        "status": 500, "match": {"InstanceType": "m5.large"}}])
    provider = registry.get("aws")
    west_try = dataclasses.replace(placement(None, "m5.large", num_nodes=1),
                                   region=OTHER_REGION)
    with pytest.raises(ProvisionError, match="InsufficientInstanceCapacity"):
        provider.provision(spec, west_try, 1)
    assert len(_groups(west, "c-regions")) == 1
    [node] = provider.provision(spec, placement("use1-az2", "m5.xlarge", num_nodes=1), 1)
    store.set_nodes("c-regions", [Node(0, node.instance_id, node.address, node.info)])
    store.update("c-regions", status=UP)
    registry.get.cache_clear()  # a later command: only the state remembers us-west-2
    report = refresh()
    assert _groups(west, "c-regions") == [], report
    assert len(_groups(east, "c-regions")) == 1
    Operations(Launcher(store)).down("c-regions")
    assert _groups(east, "c-regions") == [] and described(east, "c-regions", LIVE) == []


def test_gc_deletes_groups_and_key_pairs_no_cluster_owns(env, ec2):
    from skyhop.execute.reconcile import gc

    provider = AwsProvider()
    [node] = provider.provision(ClusterSpec("c-lost", 1), placement(num_nodes=1), 1)
    # The state never knew it (a crash before the row, another machine's state...).
    report = gc()
    assert report.terminated.get("c-lost") == [node.instance_id], report
    assert _groups(ec2, "c-lost") == []
    from skyhop.provision.keys import ensure_key
    from skyhop.provision.providers.aws_network import key_pair_name

    mine = key_pair_name(ensure_key()[1])  # this home's (other tests' homes have theirs)
    pairs = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [mine]}])
    assert pairs["KeyPairs"] == [], report


# --- throttling backs off on the same place, then a clear error --------------------------


def test_throttling_is_retried_on_the_same_place_and_then_reported(env, server):
    server.set_faults([{"action": "RunInstances", "code": "RequestLimitExceeded",
                        "status": 503}])
    task = Task(run="true", resources=Resources(infra="aws/us-east-1",
                                                instance_type="m6i.2xlarge"))
    provisioner = Provisioner(load_catalog(), [], registry.get, clock=VirtualClock(1e6),
                              use_tracker=False)
    with pytest.raises(ProvisionFailed) as info:
        provisioner.provision("c-throttled", task)
    history = info.value.history
    assert len(history) == 1 + THROTTLE_RETRIES
    assert len({(h.placement.region, h.placement.zone) for h in history}) == 1  # no failover
    assert "throttling" in info.value.message and info.value.hint == ThrottledError.default_hint
    # bounded: botocore's 2 attempts x skyhop's 3 backed-off tries, per attempt
    assert server.faults()[0]["hits"] == len(history) * 2 * 3


# --- one error root: provider failures are user errors ----------------------------------


def _sky(*args: str, home, config_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyhop.cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SKYHOP_HOME": str(home),
                               "SKYHOP_CONFIG": str(config_path)})


def test_an_unreachable_endpoint_is_a_user_error_and_refresh_goes_on(env, tmp_path,
                                                                   monkeypatch):
    """AWS cannot be reached: `down` of an AWS cluster exits 2 with a hint (not "unexpected
    ... please report it"); `status --refresh` says which cluster/provider failed and still
    finishes the others (here a local cluster whose launch was interrupted)."""
    from skyhop.state.clusters import ClusterStore

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    config_path = tmp_path / "config.yaml"
    settings = yaml.safe_load(config_path.read_text())
    settings["aws"].update(backoff_attempts=1, regions=[REGION_NAME])
    config_path.write_text(yaml.safe_dump(settings))
    _reserve("c-far")
    ClusterStore().reserve("c-local", provider="local", num_nodes=1, hourly_price=0.0,
                           owner=f"{socket.gethostname()}:999999999")  # a dead launcher
    home = os.environ["SKYHOP_HOME"]
    down = _sky("down", "c-far", "-y", home=home, config_path=config_path)
    assert down.returncode == 2, down.stderr
    assert "unreachable" in down.stderr and "hint:" in down.stderr
    assert "please report" not in down.stderr and "Traceback" not in down.stderr
    refreshed = _sky("status", "--refresh", "--json", home=home, config_path=config_path)
    assert refreshed.returncode == 0, refreshed.stderr
    assert "c-far: could not check aws: AWS endpoint unreachable" in refreshed.stderr
    assert "c-local: its launch was interrupted" in refreshed.stderr
    assert "please report" not in refreshed.stderr


def test_gc_goes_on_past_a_region_that_fails(env, ec2):
    from skyhop.execute.reconcile import gc

    [node] = AwsProvider().provision(ClusterSpec("c-lost2", 1), placement(num_nodes=1), 1)
    env(regions=["xx-nowhere-9", REGION_NAME])  # moto knows no such region
    report = gc()
    assert report.terminated.get("c-lost2") == [node.instance_id], report
    assert any("xx-nowhere-9" in e for e in report.errors), report


def test_gc_collects_only_this_homes_instances(env, ec2):
    """Two skyhop homes on one AWS account: neither's gc may take the other's clusters."""
    from skyhop import paths
    from skyhop.execute.reconcile import gc
    from skyhop.provision.base import HOME_TAG

    provider = AwsProvider()
    [theirs] = provider.provision(ClusterSpec("c-theirs", 1, {HOME_TAG: "another-home"}),
                                  placement(num_nodes=1), 1)
    [mine] = provider.provision(ClusterSpec("c-mine", 1, {HOME_TAG: paths.home_id()}),
                                placement(num_nodes=1), 1)
    report = gc()
    assert report.terminated.get("c-mine") == [mine.instance_id], report
    assert "c-theirs" not in report.terminated
    state = ec2.describe_instances(InstanceIds=[theirs.instance_id])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"
