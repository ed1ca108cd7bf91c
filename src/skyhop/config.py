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
def _load(file: str) -> tuple[dict[str, Any], Any]:
    """(the config, its locator). Read with the task file's bounded loader: an alias bomb
    or a huge file is refused, and errors point at file:line:col."""
    from skyhop.spec.yaml_source import MAX_FILE_BYTES, load_documents

    p = Path(file)
    if not p.exists():
        return {}, None
    with p.open("rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    try:
        docs = load_documents(data.decode(errors="replace"), str(p))
    except UserError as exc:
        exc.message = f"the skyhop config is not valid: {exc.message}"
        exc.args = (exc.message,)
        raise
    value, locator = docs[0] if docs else ({}, None)
    if not isinstance(value, dict):
        raise UserError("the skyhop config must be a mapping of sections", where=str(p),
                        hint="e.g. `ssh_pools: {lab: {hosts: [...]}}`")
    return value, locator


def where(*keys: Any, key: bool = False) -> str:
    """`file:line:col` of a value (with `key`: of its key) in the config (the file alone
    when unknown)."""
    _, locator = _load(str(path()))
    return locator.where(keys, key=key) if locator is not None else str(path())


def section(name: str) -> Any:
    """One top-level section of the config (None when absent)."""
    return _load(str(path()))[0].get(name)


def reload() -> None:
    _load.cache_clear()
