"""The regional resources an AWS node needs: key pair, VPC, subnet, security group.

Each function takes an EC2 client and is idempotent (safe to call on every launch and from
two launches at once). botocore errors propagate; the caller classifies them.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from skyhop.provision.errors import InvalidRequestError
from skyhop.provision.providers.aws_errors import ZoneUnusableError, code_of

CLUSTER_TAG = "skyhop-cluster"
SSH_PORT = 22


def tags(items: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in items.items()]


def tag(resource: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def group_name(cluster_name: str) -> str:
    return f"skyhop-{cluster_name}"


def key_pair_name(public_key: str) -> str:
    """Derived from the key itself, so two machines' skyhop keys never clash."""
    return "skyhop-" + hashlib.sha256(public_key.encode()).hexdigest()[:8]


def ensure_key_pair(client: Any, public_key: str) -> str:
    name = key_pair_name(public_key)
    try:
        client.describe_key_pairs(KeyNames=[name])
    except Exception as exc:
        if code_of(exc) != "InvalidKeyPair.NotFound":
            raise
        try:
            client.import_key_pair(KeyName=name, PublicKeyMaterial=public_key.encode(),
                                   TagSpecifications=[{"ResourceType": "key-pair",
                                                       "Tags": tags({"skyhop": "true"})}])
        except Exception as exc2:
            if code_of(exc2) != "InvalidKeyPair.Duplicate":  # a concurrent launch won
                raise
    return name


def choose_vpc(client: Any, region: str, configured: str | None) -> str:
    """Config `aws.vpc_id`; else the VPC tagged skyhop=true (an explicit choice beats the
    implicit default; several: the lowest id); else the region's default VPC."""
    if configured:
        client.describe_vpcs(VpcIds=[configured])  # InvalidVpcID.NotFound -> region error
        return configured
    for flt in ({"Name": "tag:skyhop", "Values": ["true"]},
                {"Name": "is-default", "Values": ["true"]}):
        vpcs = client.describe_vpcs(Filters=[flt])["Vpcs"]
        if vpcs:
            return min(v["VpcId"] for v in vpcs)
    raise InvalidRequestError(
        f"no VPC to launch into in {region}: it has no default VPC and none tagged "
        f"skyhop=true; tag one, or set `aws: {{vpc_id: {{{region}: vpc-...}}}}` in the skyhop "
        "config", provider="aws", region=region)


def choose_subnet(client: Any, region: str, vpc_id: str, zone: str | None,
                  zone_name: str | None) -> str:
    """A subnet of the VPC in the planned AZ: tagged skyhop=true, else the AZ's default,
    else the one with the most free addresses."""
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}]
    if zone_name:
        filters.append({"Name": "availability-zone", "Values": [zone_name]})
    subnets = client.describe_subnets(Filters=filters)["Subnets"]
    if not subnets:
        raise ZoneUnusableError(
            f"VPC {vpc_id} has no subnet in {zone_name} ({zone}) in {region}: create one "
            "there, or let skyhop use other zones", provider="aws", region=region, zone=zone)
    return min(subnets, key=lambda s: (tag(s, "skyhop") != "true",
                                       not s.get("DefaultForAz", False),
                                       -s.get("AvailableIpAddressCount", 0),
                                       s["SubnetId"]))["SubnetId"]


def ensure_security_group(client: Any, vpc_id: str, cluster_name: str) -> str:
    """`skyhop-<cluster>` in the VPC: SSH from anywhere, all traffic between its nodes."""
    name = group_name(cluster_name)
    filters = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    found = client.describe_security_groups(Filters=filters)["SecurityGroups"]
    if found:
        group_id = found[0]["GroupId"]
    else:
        try:
            group_id = client.create_security_group(
                GroupName=name, Description=f"skyhop cluster {cluster_name}", VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group",
                                    "Tags": tags({CLUSTER_TAG: cluster_name})}])["GroupId"]
        except Exception as exc:
            if code_of(exc) != "InvalidGroup.Duplicate":  # a concurrent launch won
                raise
            group_id = client.describe_security_groups(
                Filters=filters)["SecurityGroups"][0]["GroupId"]
    # Authorized on every first use (the caller caches): a crash between create and
    # authorize cannot leave a group without its rules.
    authorize(client, group_id, {"IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT,
                                 "IpRanges": [{"CidrIp": "0.0.0.0/0",
                                               "Description": "skyhop ssh"}]})
    authorize(client, group_id, {"IpProtocol": "-1", "UserIdGroupPairs": [
        {"GroupId": group_id, "Description": "skyhop intra-cluster"}]})
    return group_id


def authorize(client: Any, group_id: str, permission: dict[str, Any]) -> None:
    """One ingress rule; one per call, since a duplicate fails the whole call."""
    try:
        client.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[permission])
    except Exception as exc:
        if code_of(exc) != "InvalidPermission.Duplicate":
            raise


def delete_security_group(client: Any, group_id: str, wait_s: float, poll_s: float) -> None:
    """Delete, waiting while terminated nodes still hold interfaces in it; gone is fine."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.delete_security_group(GroupId=group_id)
            return
        except Exception as exc:
            if code_of(exc) == "InvalidGroup.NotFound":
                return
            if code_of(exc) != "DependencyViolation" or time.monotonic() > deadline:
                raise
            time.sleep(poll_s)
