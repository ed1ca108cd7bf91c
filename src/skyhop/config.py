"""The user's skyhop config: `$SKYHOP_HOME/config.yaml`, or the file `SKYHOP_CONFIG` names.

    ssh_pools:
      lab: {hosts: [10.0.0.5, {host: 10.0.0.6, port: 2222}], user: me, identity_file: ~/.ssh/id}
    aws:
      use_internal_ips: true       # connect to private IPs (a VPN or a bastion reaches them)
      ssh_user: ubuntu
      image_id: {us-east-1: ami-...}  # or one id for every region

Read once per process; a section is validated by the part of skyhop that uses it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from skyhop import paths
from skyhop.errors import UserError


def path() -> Path:
    return Path(os.environ.get("SKYHOP_CONFIG") or paths.home() / "config.yaml").expanduser()


@functools.cache
def _load(file: str) -> dict[str, Any]:
    p = Path(file)
    if not p.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise UserError(f"the skyhop config is not valid YAML: {exc}", where=where) from None
    if not isinstance(data, dict):
        raise UserError("the skyhop config must be a mapping of sections", where=str(p),
                        hint="e.g. `ssh_pools: {lab: {hosts: [...]}}`")
    return data


def section(name: str) -> Any:
    """One top-level section of the config (None when absent)."""
    return _load(str(path())).get(name)


def reload() -> None:
    _load.cache_clear()
