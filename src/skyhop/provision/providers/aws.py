"""The AWS provider: EC2 instances through boto3 (imported only when AWS is actually used).

Credentials come from boto3's standard chain (env, `~/.aws`, SSO, ...); `AWS_ENDPOINT_URL`
/ `AWS_ENDPOINT_URL_EC2` are honoured by boto3 itself. Optional `aws:` config keys:

    vpc_id: vpc-...          # or {region: vpc-...}; else the VPC tagged skyhop=true, else the
                             # region's default VPC (an explicit tag beats the implicit default)
    image_id: ami-...        # or {region: ami-...}; else the newest Ubuntu 22.04 / Deep Learning
                             # Base OSS Nvidia Driver GPU AMI of that region
    use_internal_ips: false  # reach nodes on private IPs (VPN, bastion); no public IP then
    ssh_user: ubuntu
    ssh_timeout_s: 600       # wait for TCP port 22 on every node
    boot_timeout_s: 600      # wait for every node to be `running`
    disk_size_gb: 256        # root volume (gp3)
    regions: [us-east-1]     # where to look for a cluster when its region is not given
    api_max_attempts: 3      # botocore attempts per call (standard retry mode)
    backoff_attempts: 5      # while AWS throttles or cannot be reached: tries per call, ...
    backoff_base_s: 1.0      # ... waiting 1, 2, 4, 8 s (with jitter) in between
    cleanup_timeout_s: 600   # a failed launch's nodes are terminated until AWS confirms
    instance_role: false     # true: trust the EC2 instance role (is_enabled can't probe IMDS)
    wait_for_ssh: true       # false only for tests and debugging (no SSH server behind moto)

Zones: the catalog and plans name AWS zones by AZ ID (`use1-az4`, the same physical zone in
every account); the provider maps them to this account's AZ names (`us-east-1c`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyhop import config
from skyhop.errors import UserError
from skyhop.provision.base import (
    HOME_TAG,
    MULTI_NODE,
    OPEN_PORTS,
    SPOT,
    STOP,
    ClusterSpec,
    Instance,
)
from skyhop.provision.errors import (
    CapacityError,
    InvalidRequestError,
    TransientError,
)
from skyhop.provision.providers import aws_network as net
from skyhop.provision.providers.aws_errors import (
    ERROR_CLASSES,
    NO_CREDENTIALS_HINT,
    BackoffClient,
    ZoneUnusableError,
    code_of,
    translating,
    with_backoff,
)
from skyhop.provision.providers.aws_images import image_key, resolve_image
from skyhop.provision.providers.aws_network import CLUSTER_TAG, SSH_PORT, tag, tags

if TYPE_CHECKING:
    from collections.abc import Callable

    from skyhop.catalog.offer import Offer
    from skyhop.execute.ssh_runner import SSHRunner
    from skyhop.optimizer.plan import Placement

RANK_TAG = "skyhop-rank"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]  # a node that still exists
POLL_S = 3.0  # default poll interval; env SKYHOP_AWS_POLL_S overrides (tests use ~0.1)
TEARDOWN_WAIT_S = 300  # a terminated node's network interface takes a while to detach

def _settings() -> dict[str, Any]:
    data = config.section("aws") or {}
    if not isinstance(data, dict):
        raise UserError("the `aws` section of the skyhop config must be a mapping",
                        where=str(config.path()), hint="e.g. `aws: {ssh_user: ubuntu}`")
    return data


def _per_region(value: Any, region: str) -> str | None:
    """A config value given once for all regions (a string) or per region (a mapping)."""
    return value.get(region) if isinstance(value, dict) else value


def _backoff(settings: dict[str, Any]) -> tuple[int, float]:
    """(tries per call, first wait) while AWS throttles or cannot be reached."""
    return (max(1, int(settings.get("backoff_attempts", 5))),
            float(settings.get("backoff_base_s", 1.0)))


def _poll_s() -> float:
    return float(os.environ.get("SKYHOP_AWS_POLL_S") or POLL_S)


@dataclass(frozen=True)
class _Network:
    vpc_id: str
    subnet_id: str
    group_id: str
    key_name: str


def _credential_hints() -> bool:
    """Whether any source of the standard credential chain (other than instance metadata,
    which `instance_role` covers) could hold credentials."""
    env = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if any(os.environ.get(name) for name in env):
        return True
    files = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
             os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config")
    return any(Path(f).expanduser().exists() for f in files)


def touched_regions(cluster_name: str) -> list[str]:
    """The AWS regions the cluster's row says it made anything in (`handle.created`, kept
    by the launcher for every attempt, whichever provider it finally landed on)."""
    from skyhop.state.clusters import ClusterStore

    record = ClusterStore().get(cluster_name)
    if record is None:
        return []
    regions = set(((record.handle or {}).get("created") or {}).get("aws", {}))
    if record.provider == "aws" and record.region:
        regions.add(record.region)
    return sorted(regions)


def known_hosts_file(cluster_name: str) -> Path:
    from skyhop import paths

    return paths.home() / "known_hosts.d" / cluster_name


class AwsProvider:
    name = "aws"
    capabilities = frozenset({SPOT, MULTI_NODE, STOP, OPEN_PORTS})

    def __init__(self) -> None:
        self._session: Any = None  # one boto3 Session per provider object
        self._clients: dict[str, Any] = {}  # region -> EC2 client (clients are thread-safe)
        self._lock = threading.Lock()
        self._zones: dict[str, dict[str, str]] = {}  # region -> {AZ ID: AZ name}
        self._images: dict[tuple[str, str], tuple[str, str]] = {}  # -> (image, root device)
        self._networks: dict[tuple[str, str | None, str], _Network] = {}
        self._keys: dict[str, str] = {}  # region -> key pair name
        self._used: dict[str, set[str]] = {}  # cluster -> regions it was launched in here
        self._all_regions: list[str] | None = None
        self.scan_errors: list[str] = []  # regions `orphans`/`collect` could not check

    # --- Provider protocol ----------------------------------------------------------------

    def is_enabled(self) -> tuple[bool, str]:
        import importlib.util

        if importlib.util.find_spec("boto3") is None:
            return False, "boto3 is not installed: pip install 'skyhop[aws]'"
        if _settings().get("instance_role"):
            return True, ""
        if not _credential_hints():  # nowhere to look: skip botocore's ~0.3 s import
            return False, f"no AWS credentials found: {NO_CREDENTIALS_HINT}"
        try:
            import botocore.session

            resolver = botocore.session.Session().get_component("credential_provider")
            resolver.remove("iam-role")  # the instance metadata service is a network call
            found = resolver.load_credentials() is not None
        except Exception as exc:  # a broken ~/.aws/config, a failing credential_process
            return False, f"AWS credentials could not be read: {exc}"
        if not found:
            return False, f"no AWS credentials found: {NO_CREDENTIALS_HINT}"
        return True, ""

    def offers(self, known_accelerators: list[str] | None = None) -> list[Offer]:
        return []  # AWS offers come from the shipped catalog

    def prepare(self, cluster: ClusterSpec) -> None:
        """The local key pair. Regional resources (key import, VPC, subnet, security group)
        depend on the placement, so `provision` prepares them itself, idempotently."""
        from skyhop.provision.keys import ensure_key

        ensure_key()

    def provision(self, cluster: ClusterSpec, placement: Placement, count: int
                  ) -> list[Instance]:
        """All `count` nodes or none (gang): a partial launch is terminated before raising."""
        region, zone, itype = placement.region, placement.zone, placement.instance_type
        where = dict(region=region, zone=zone, instance_type=itype)
        settings = _settings()
        zone_name = self._zone_name(region, zone)
        self._touch(cluster, region, [])  # the security group made next is cleaned up there
        network = self._prepare(region, zone, zone_name, cluster.name)
        image_id, root_device = self._image(region, placement)
        tag_list = tags({**cluster.tags, CLUSTER_TAG: cluster.name})
        request: dict[str, Any] = dict(
            # One token per attempt: RunInstances retried after a lost answer (a throttle,
            # a connection reset) returns the same instances instead of launching again.
            ClientToken=f"skyhop-{uuid.uuid4()}",
            ImageId=image_id, InstanceType=itype, MinCount=count, MaxCount=count,
            KeyName=network.key_name,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": network.subnet_id,
                                "Groups": [network.group_id], "DeleteOnTermination": True,
                                "AssociatePublicIpAddress":
                                    not settings.get("use_internal_ips", False)}],
            BlockDeviceMappings=[{"DeviceName": root_device, "Ebs": {
                "VolumeSize": int(settings.get("disk_size_gb", 256)), "VolumeType": "gp3",
                "DeleteOnTermination": True}}],
            TagSpecifications=[{"ResourceType": kind, "Tags": tag_list}
                               for kind in ("instance", "volume")])
        if zone_name:
            request["Placement"] = {"AvailabilityZone": zone_name}
        if placement.use_spot:
            request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        client = self._client(region)
        with translating(**where):
            launched = client.run_instances(**request)["Instances"]
        ids = [i["InstanceId"] for i in sorted(launched, key=lambda i: i.get("AmiLaunchIndex", 0))]
        try:
            self._touch(cluster, region, ids)  # in state before anything else can fail
            with translating(**where):
                for rank, instance_id in enumerate(ids):
                    self._retry_not_found(lambda i=instance_id, r=rank: client.create_tags(
                        Resources=[i], Tags=tags({RANK_TAG: str(r),
                                                  "Name": f"{cluster.name}-{r}"})))
            return self._wait_ready(region, ids, where)
        except BaseException as exc:  # Ctrl-C included: never leave half a gang running
            try:
                self._terminate_confirmed(region, ids)
            except Exception as cleanup:
                exc.add_note(f"terminating the partial launch failed too ({cleanup}): "
                             f"{', '.join(ids)} in {region} may still exist")
            raise

    def _touch(self, cluster: ClusterSpec, region: str, ids: list[str]) -> None:
        self._used.setdefault(cluster.name, set()).add(region)
        if cluster.created is not None:
            cluster.created(region, ids)

    def instances(self, cluster_name: str, region: str | None = None) -> list[Instance]:
        """The cluster's existing nodes (pending..stopped), found by the `skyhop-cluster` tag."""
        settings = _settings()
        filters = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_name]},
                   {"Name": "instance-state-name", "Values": LIVE_STATES}]
        found = self._scan(self._regions_for(cluster_name, region), lambda r: [
            self._to_instance(i, r, settings) for i in self._describe(r, filters)])
        return sorted(found, key=lambda i: (i.rank, i.instance_id))

    def instances_in(self, cluster_name: str, region: str) -> list[Instance]:
        return self.instances(cluster_name, region=region)

    def all_tagged(self, regions: list[str]) -> list[dict[str, Any]]:
        """Every non-terminated instance carrying a `skyhop-cluster` tag (for gc/refresh)."""
        filters = [{"Name": "tag-key", "Values": [CLUSTER_TAG]},
                   {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]}]

        def one(region: str) -> list[dict[str, Any]]:
            return [{"cluster": tag(i, CLUSTER_TAG), "instance_id": i["InstanceId"],
                     "region": region, "zone_name": i.get("Placement", {}).get("AvailabilityZone"),
                     "state": i["State"]["Name"], "instance_type": i.get("InstanceType"),
                     "rank": tag(i, RANK_TAG), "launch_time": str(i.get("LaunchTime", "")),
                     "home": tag(i, HOME_TAG)}
                    for i in self._describe(region, filters)]

        return self._scan(regions, one)

    def orphans(self, known: set[str]) -> dict[str, list[str]]:
        """{cluster: instance ids} of tagged instances whose cluster skyhop does not know,
        made by this skyhop home (another home's clusters on the same account are not ours
        to collect; instances from before the home tag count as ours)."""
        from skyhop import paths

        me = paths.home_id()
        regions = list(_settings().get("regions") or []) or self._enabled_regions()
        found: dict[str, list[str]] = {}
        self.scan_errors = []
        for item in self._scan(regions, lambda r: self.all_tagged([r]), self.scan_errors):
            if item.get("home") not in (None, me):
                continue
            if item["cluster"] not in known and item["state"] != "shutting-down":
                found.setdefault(item["cluster"], []).append(item["instance_id"])
                self._used.setdefault(item["cluster"], set()).add(item["region"])
        return found

    def sweep(self, cluster_name: str, keep_ids: list[str]) -> list[str]:
        """For a cluster that is up: delete its security groups in the regions it touched
        but runs no node in (an earlier attempt's). What was deleted, one line each."""
        done: list[str] = []
        if not keep_ids:
            return done
        for r in self._regions_for(cluster_name, None):
            if self._owned(r, cluster_name, keep_ids, [*LIVE_STATES, "shutting-down"]):
                continue
            done += self._delete_groups(r, cluster_name, wait_s=0)
        return done

    def collect(self, known: set[str], busy_regions: set[str]) -> list[str]:
        """Delete what no known cluster owns: security groups tagged `skyhop-cluster` with
        an unknown cluster (and no live node), and this home's key pair in regions where
        no known cluster made anything and no skyhop node lives. One line per deletion."""
        from skyhop.provision.keys import ensure_key

        regions = list(_settings().get("regions") or []) or self._enabled_regions()
        key_name = net.key_pair_name(ensure_key()[1])

        def one(region: str) -> list[str]:
            client = self._client(region)
            live = self._describe(region, [
                {"Name": "tag-key", "Values": [CLUSTER_TAG]},
                {"Name": "instance-state-name", "Values": LIVE_STATES}])
            used = {tag(i, CLUSTER_TAG) for i in live}
            done: list[str] = []
            with translating(region):
                groups = client.describe_security_groups(Filters=[
                    {"Name": "tag-key", "Values": [CLUSTER_TAG]}])["SecurityGroups"]
            for cluster in sorted({tag(g, CLUSTER_TAG) for g in groups} - known - used):
                done += self._delete_groups(region, cluster or "", wait_s=0)
            if region not in busy_regions and not live:
                with translating(region):
                    pairs = client.describe_key_pairs(Filters=[
                        {"Name": "key-name", "Values": [key_name]}])["KeyPairs"]
                    if pairs:
                        client.delete_key_pair(KeyName=key_name)
                        done.append(f"key pair {key_name} in {region}")
            return done

        return self._scan(regions, one, self.scan_errors)

    def _delete_groups(self, region: str, cluster_name: str, wait_s: float) -> list[str]:
        """Delete the cluster's security groups in `region` (a group still held by a
        terminating node's interface is left for the next sweep when wait_s is 0)."""
        client = self._client(region)
        done = []
        with translating(region):
            groups = client.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": [net.group_name(cluster_name)]}])
            for group in groups["SecurityGroups"]:
                try:
                    net.delete_security_group(client, group["GroupId"], wait_s, _poll_s())
                except Exception as exc:
                    if wait_s or code_of(exc) != "DependencyViolation":
                        raise
                    continue
                done.append(f"security group {group['GroupId']} ({cluster_name}) in {region}")
        return done

    def runner(self, cluster_name: str, instance: Instance) -> SSHRunner:
        from skyhop.execute.ssh_runner import SSHRunner
        from skyhop.provision.keys import ensure_key

        # Addresses are reused by new machines: trust host keys per cluster, not per address.
        return SSHRunner(host=instance.address, user=instance.info["user"],
                         key_path=ensure_key()[0], port=SSH_PORT,
                         known_hosts=known_hosts_file(cluster_name))

    def stop(self, cluster_name: str, instance_ids: list[str], region: str | None = None
             ) -> None:
        for r in self._regions_for(cluster_name, region):
            ids = self._owned(r, cluster_name, instance_ids, ["pending", "running"])
            if ids:
                with translating(r):
                    self._client(r).stop_instances(InstanceIds=ids)

    def start(self, cluster_name: str, instance_ids: list[str], region: str | None = None
              ) -> list[Instance]:
        """Start stopped nodes; wait for `running` and SSH like `provision`."""
        started: list[Instance] = []
        for r in self._regions_for(cluster_name, region):
            ids = self._owned(r, cluster_name, instance_ids, LIVE_STATES)
            if not ids:
                continue
            deadline = time.monotonic() + float(_settings().get("boot_timeout_s", 600))
            # A node still `stopping` cannot be started yet.
            while self._owned(r, cluster_name, ids, ["stopping"]) and time.monotonic() < deadline:
                time.sleep(_poll_s())
            with translating(r):
                self._client(r).start_instances(InstanceIds=ids)
            started += self._wait_ready(r, ids, dict(region=r, zone=None, instance_type=None))
        return sorted(started, key=lambda i: (i.rank, i.instance_id))

    # An OS shutdown stops an EC2 instance, or terminates it when its
    # InstanceInitiatedShutdownBehavior says so:
    # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/terminating-instances.html#Using_ChangingInstanceInitiatedShutdownBehavior
    SHUTDOWN_COMMAND = "sudo -n shutdown -h now"

    def arm_autostop(self, cluster_name: str, instances: list[Instance], down: bool | None
                     ) -> str:
        """Make the nodes' own OS shutdown stop them (or, with `down`, terminate them), so
        the head's agent can end an idle cluster with no credentials on it; `down=None`
        restores the default. Returns the command a node runs to shut itself down."""
        spot = [i.instance_id for i in instances if i.info.get("spot")]
        if spot and down is False:
            raise UserError(f"cluster {cluster_name!r} runs on spot instances, which cannot "
                            "be stopped, only terminated",
                            hint=f"`skyhop autostop {cluster_name} -i MIN --down`")
        behavior = "terminate" if down else "stop"
        for instance in instances:
            if instance.info.get("spot"):
                continue  # (one-time spot instances always terminate on shutdown)
            region = instance.info["region"]
            with translating(region):
                self._client(region).modify_instance_attribute(
                    InstanceId=instance.instance_id,
                    Attribute="instanceInitiatedShutdownBehavior", Value=behavior)
        return self.SHUTDOWN_COMMAND

    def terminate(self, cluster_name: str, instance_ids: list[str], region: str | None = None
                  ) -> None:
        """Idempotent; only instances tagged with this cluster are touched."""
        for r in self._regions_for(cluster_name, region):
            self._terminate_ids(r, self._owned(r, cluster_name, instance_ids,
                                               [*LIVE_STATES, "shutting-down"]))

    def teardown(self, cluster_name: str, region: str | None = None) -> None:
        """Delete the cluster's security group (the key pair is shared by all clusters)."""
        known_hosts_file(cluster_name).unlink(missing_ok=True)
        for r in self._regions_for(cluster_name, region):
            client = self._client(r)
            with translating(r):
                groups = client.describe_security_groups(Filters=[
                    {"Name": "group-name", "Values": [net.group_name(cluster_name)]}])
                if not groups["SecurityGroups"]:
                    continue
                live = self._describe(r, [{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_name]},
                                          {"Name": "instance-state-name", "Values": LIVE_STATES}])
                if live:
                    raise InvalidRequestError(
                        f"cluster {cluster_name} still has instances in {r} "
                        f"({', '.join(i['InstanceId'] for i in live)}): terminate them first",
                        provider=self.name, region=r)
                for group in groups["SecurityGroups"]:
                    net.delete_security_group(client, group["GroupId"], TEARDOWN_WAIT_S,
                                              _poll_s())
        self._networks = {k: v for k, v in self._networks.items() if k[2] != cluster_name}

    def open_ports(self, cluster_name: str, ports: list[int | str], region: str) -> None:
        """Open TCP ports (`8888` or `"8000-8100"`) to the world on the cluster's group."""
        client = self._client(region)
        with translating(region):
            groups = client.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": [net.group_name(cluster_name)]}])["SecurityGroups"]
            for group in groups:
                for port in ports:
                    low, _, high = str(port).partition("-")
                    net.authorize(client, group["GroupId"], {
                        "IpProtocol": "tcp", "FromPort": int(low), "ToPort": int(high or low),
                        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "skyhop port"}]})

    # --- clients, zones, regions ----------------------------------------------------------

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = boto3.session.Session()
                settings = _settings()
                attempts = int(settings.get("api_max_attempts", 3))
                raw = self._session.client("ec2", region_name=region, config=Config(
                    retries={"mode": "standard", "total_max_attempts": attempts},
                    connect_timeout=10, read_timeout=60))
                client = BackoffClient(raw, *_backoff(settings))
                self._clients[region] = client
        return client

    def _zone_names(self, region: str) -> dict[str, str]:
        if region not in self._zones:
            with translating(region):
                zones = self._client(region).describe_availability_zones()["AvailabilityZones"]
            self._zones[region] = {z["ZoneId"]: z["ZoneName"] for z in zones}
        return self._zones[region]

    def _zone_name(self, region: str, zone_id: str | None) -> str | None:
        """This account's AZ name for an AZ ID (a name is accepted as is)."""
        if zone_id is None:
            return None  # AWS picks (skyhop always plans a zone for AWS, though)
        names = self._zone_names(region)
        if zone_id in names.values():
            return zone_id
        if zone_id not in names:
            raise ZoneUnusableError(
                f"zone {zone_id} is not an available zone of {region} for this account "
                f"(available: {', '.join(sorted(names)) or 'none'}); a Local Zone must be "
                "opted in first", provider=self.name, region=region, zone=zone_id)
        return names[zone_id]

    def _regions_for(self, cluster_name: str, region: str | None) -> list[str]:
        """Where to look for a cluster: the given region; else every region this object
        or the cluster's row knows it touched (its region, and `handle.created`: each
        region an attempt made anything in); else config `aws.regions`; else every enabled
        region (slow, correct)."""
        if region:
            return [region]
        known = self._used.get(cluster_name, set()) | set(touched_regions(cluster_name))
        known = known or set(_settings().get("regions") or [])
        return sorted(known) if known else self._enabled_regions()

    def _enabled_regions(self) -> list[str]:
        if self._all_regions is None:
            home = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            with translating(home or "us-east-1"):
                regions = self._client(home or "us-east-1").describe_regions()["Regions"]
            self._all_regions = sorted(r["RegionName"] for r in regions
                                       if r.get("OptInStatus") != "not-opted-in")
        return self._all_regions

    def _scan(self, regions: list[str], fn: Callable[[str], list],
              errors: list[str] | None = None) -> list:
        """fn(region) for every region, concatenated. With `errors`, a region that fails
        is skipped and said there (`gc` goes on past it); without, its error is raised."""
        def guarded(region: str) -> list:
            try:
                return fn(region)
            except UserError as exc:
                if errors is None:
                    raise
                errors.append(f"{region}: {exc.message.splitlines()[0]}")
                return []

        if len(regions) <= 1:
            return [x for r in regions for x in guarded(r)]
        with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
            return [x for part in pool.map(guarded, regions) for x in part]

    # --- regional resources ---------------------------------------------------------------

    def _prepare(self, region: str, zone: str | None, zone_name: str | None,
                 cluster_name: str) -> _Network:
        """Key pair, VPC, subnet in the zone, security group: looked up once per process."""
        key = (region, zone_name, cluster_name)
        if key not in self._networks:
            from skyhop.provision.keys import ensure_key

            client = self._client(region)
            with translating(region, zone):
                if region not in self._keys:
                    self._keys[region] = net.ensure_key_pair(client, ensure_key()[1])
                vpc_id = net.choose_vpc(client, region,
                                        _per_region(_settings().get("vpc_id"), region))
                subnet_id = net.choose_subnet(client, region, vpc_id, zone, zone_name)
                group_id = net.ensure_security_group(client, vpc_id, cluster_name)
            self._networks[key] = _Network(vpc_id, subnet_id, group_id, self._keys[region])
        return self._networks[key]

    def _image(self, region: str, placement: Placement) -> tuple[str, str]:
        """(image id, root device name), cached per region."""
        override = _per_region(_settings().get("image_id"), region)
        gpu = bool(placement.accelerators)
        key = (region, image_key(override, gpu, placement.instance_type))
        if key not in self._images:
            with translating(region, placement.zone, placement.instance_type):
                self._images[key] = resolve_image(self._client(region), region, override, gpu,
                                                  placement.instance_type)
        return self._images[key]

    # --- instances ------------------------------------------------------------------------

    def _describe(self, region: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def listed() -> list[dict[str, Any]]:
            pages = self._client(region).get_paginator("describe_instances").paginate(
                Filters=filters)
            return [i for page in pages for res in page["Reservations"] for i in res["Instances"]]

        with translating(region):
            return with_backoff(listed, *_backoff(_settings()))

    def _owned(self, region: str, cluster_name: str, ids: list[str], states: list[str]
               ) -> list[str]:
        """Those of `ids` that exist in `region` in `states` and belong to the cluster."""
        if not ids:
            return []
        return [i["InstanceId"] for i in self._describe(region, [
            {"Name": "instance-id", "Values": list(ids)},
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_name]},
            {"Name": "instance-state-name", "Values": states}])]

    def _terminate_ids(self, region: str, ids: list[str]) -> None:
        if ids:
            with translating(region):
                self._retry_not_found(
                    lambda: self._client(region).terminate_instances(InstanceIds=ids))

    def _terminate_confirmed(self, region: str, ids: list[str]) -> None:
        """Terminate `ids` and look again until AWS shows each one shutting down or gone
        (an id not listed yet is not confirmed: EC2 is eventually consistent), backing off
        while AWS throttles or cannot be reached, for `cleanup_timeout_s`."""
        deadline = time.monotonic() + float(_settings().get("cleanup_timeout_s", 600))
        pause = _poll_s()
        while True:
            try:
                states = {i["InstanceId"]: i["State"]["Name"] for i in self._describe(
                    region, [{"Name": "instance-id", "Values": ids}])}
                left = [i for i in ids if states.get(i) not in ("shutting-down", "terminated")]
                if not left:
                    return
                self._terminate_ids(region, left)
            except TransientError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 30.0)

    def _retry_not_found(self, call: Callable[[], Any], tries: int = 8) -> Any:
        """EC2 is eventually consistent: a just-launched id may be unknown for a moment."""
        for attempt in range(tries):
            try:
                return call()
            except Exception as exc:
                if attempt == tries - 1 or not (code_of(exc) or "").endswith(".NotFound"):
                    raise
                time.sleep(_poll_s() * (attempt + 1))

    def _wait_ready(self, region: str, ids: list[str], where: dict[str, Any]) -> list[Instance]:
        """Wait until every node is `running` (and reachable on port 22), or raise."""
        settings = _settings()
        timeout = float(settings.get("boot_timeout_s", 600))
        deadline = time.monotonic() + timeout
        filters = [{"Name": "instance-id", "Values": ids}]
        while True:
            try:
                nodes = self._describe(region, filters)
            except TransientError:  # throttled or unreachable a while: keep looking
                if time.monotonic() > deadline:
                    raise
                time.sleep(_poll_s())
                continue
            # (`stopped` right after StartInstances is eventual consistency, not failure)
            failed = [i for i in nodes if i["State"]["Name"] in ("shutting-down", "terminated")]
            if failed:
                reason = failed[0].get("StateReason", {})
                code = reason.get("Code", "").split(".", 1)[-1]  # Server.InsufficientIn...
                cls = ERROR_CLASSES.get(code, CapacityError)
                raise cls(f"AWS {reason.get('Code', 'launch failure')}: "
                          f"{reason.get('Message', 'a node was terminated while booting')}",
                          provider=self.name, **where)
            if len(nodes) == len(ids) and all(i["State"]["Name"] == "running" for i in nodes):
                break
            if time.monotonic() > deadline:
                states = ", ".join(f"{i['InstanceId']}={i['State']['Name']}" for i in nodes)
                raise CapacityError(f"nodes not running after {timeout:.0f}s ({states})",
                                    provider=self.name, **where)
            time.sleep(_poll_s())
        instances = sorted((self._to_instance(i, region, settings) for i in nodes),
                           key=lambda i: (i.rank, i.instance_id))
        if settings.get("wait_for_ssh", True):
            _wait_for_ssh(instances, float(settings.get("ssh_timeout_s", 600)), where)
        return instances

    def _to_instance(self, inst: dict[str, Any], region: str, settings: dict[str, Any]
                     ) -> Instance:
        private, public = inst.get("PrivateIpAddress"), inst.get("PublicIpAddress")
        address = private if settings.get("use_internal_ips") else (public or private)
        zone_name = inst.get("Placement", {}).get("AvailabilityZone")
        zone_id = next((k for k, v in self._zone_names(region).items() if v == zone_name), None)
        rank = tag(inst, RANK_TAG)
        return Instance(
            instance_id=inst["InstanceId"],
            rank=int(rank) if rank and rank.isdigit() else int(inst.get("AmiLaunchIndex", 0)),
            address=address,
            info={"region": region, "zone": zone_id, "zone_name": zone_name,
                  "user": settings.get("ssh_user", "ubuntu"), "private_ip": private,
                  "public_ip": public, "instance_type": inst.get("InstanceType"),
                  "spot": inst.get("InstanceLifecycle") == "spot",
                  "state": inst["State"]["Name"]})


def _wait_for_ssh(instances: list[Instance], timeout: float, where: dict[str, Any]) -> None:
    """Wait until every node accepts TCP connections on port 22."""
    deadline = time.monotonic() + timeout
    for inst in instances:
        while True:
            if inst.address:
                try:
                    with socket.create_connection((inst.address, SSH_PORT), timeout=5):
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise TransientError(
                    f"node {inst.instance_id} ({inst.address or 'no address'}) not reachable "
                    f"on port {SSH_PORT} after {timeout:.0f}s; check the security group, the "
                    "subnet's route to the internet, or config aws.use_internal_ips",
                    provider="aws", **where)
            time.sleep(_poll_s())
