"""Python functions on any provider: `@skyhop.function`, dispatched with `>>`, `@` and `>`
onto an ephemeral `skyhop.Compute` pool (see docs/functions.md).

Nothing here is imported by `import skyhop`; the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "function": "skyhop.functions.function",
    "gather": "skyhop.functions.function",
    "Call": "skyhop.functions.function",
    "Group": "skyhop.functions.function",
    "RemoteFunction": "skyhop.functions.function",
    "Compute": "skyhop.functions.compute",
    "Spec": "skyhop.functions.compute",
    "VersionMismatchWarning": "skyhop.functions.compute",
    "instance_info": "skyhop.functions.info",
    "InstanceInfo": "skyhop.functions.info",
    "RemoteError": "skyhop.functions.errors",
    "WorkerLostError": "skyhop.functions.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skyhop.functions' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
