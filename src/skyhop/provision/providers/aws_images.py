"""Which machine image (AMI) an AWS node boots: config `aws.image_id`, else a default by name."""

from __future__ import annotations

from typing import Any

from skyhop.provision.errors import InvalidRequestError

# (has accelerators, architecture) -> (owner, name pattern); the newest CreationDate wins.
DEFAULT_IMAGES: dict[tuple[bool, str], tuple[str, str]] = {
    (True, "x86_64"): ("amazon", "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"),
    (True, "arm64"): ("amazon",
                      "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*"),
    (False, "x86_64"): ("099720109477", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"),
    (False, "arm64"): ("099720109477", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*"),
}


def arch(instance_type: str) -> str:
    """Graviton families carry a `g` after the generation (m7g, c6gn, g5g, im4gn); and a1."""
    family = instance_type.split(".", 1)[0]
    head = family.rstrip("abcdefghijklmnopqrstuvwxyz-")
    rest = family[len(head):]
    graviton = family == "a1" or (head[-1:].isdigit() and rest.startswith("g"))
    return "arm64" if graviton else "x86_64"


def image_key(override: str | None, gpu: bool, instance_type: str) -> str:
    """What the image choice depends on (for a per-region cache)."""
    return override or f"{'gpu' if gpu else 'cpu'}/{arch(instance_type)}"


def resolve_image(client: Any, region: str, override: str | None, gpu: bool,
                  instance_type: str) -> tuple[str, str]:
    """(image id, root device name) in `region`; InvalidRequestError when nothing fits."""
    if override:
        images = client.describe_images(ImageIds=[override])["Images"]
        what = f"image {override} (config aws.image_id)"
    else:
        machine = arch(instance_type)
        owner, pattern = DEFAULT_IMAGES[(gpu, machine)]
        images = client.describe_images(Owners=[owner], Filters=[
            {"Name": "name", "Values": [pattern]},
            {"Name": "state", "Values": ["available"]},
            {"Name": "architecture", "Values": [machine]}])["Images"]
        what = f"default image (owner {owner}, name '{pattern}')"
    if not images:
        raise InvalidRequestError(
            f"no {what} in {region}; set `aws: {{image_id: {{{region}: ami-...}}}}` in the "
            "skyhop config", provider="aws", region=region, instance_type=instance_type)
    best = max(images, key=lambda i: i.get("CreationDate", ""))
    return best["ImageId"], best.get("RootDeviceName") or "/dev/sda1"
