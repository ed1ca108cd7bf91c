"""skyhop: an intercloud broker. The public Python API (imported lazily, so `import skyhop`
stays cheap):

    skyhop.Task, skyhop.Resources, skyhop.Dag          the task language
    skyhop.optimize(dag)                                 plan by cost or time
    skyhop.launch / exec / status / down / cost_report   run on clusters
    skyhop.function, Compute, Spec, gather, instance_info  Python functions on pools
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Task": "skyhop.spec",
    "Resources": "skyhop.spec",
    "Dag": "skyhop.spec",
    "load_dag": "skyhop.spec",
    "optimize": "skyhop.optimizer",
    "launch": "skyhop.sdk",
    "exec": "skyhop.sdk",
    "status": "skyhop.sdk",
    "down": "skyhop.sdk",
    "cost_report": "skyhop.sdk",
    "UserError": "skyhop.errors",
    "function": "skyhop.functions.function",
    "gather": "skyhop.functions.function",
    "Compute": "skyhop.functions.compute",
    "Spec": "skyhop.functions.compute",
    "instance_info": "skyhop.functions.info",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skyhop' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
