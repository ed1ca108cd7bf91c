"""Providers by name, imported lazily (an unused provider costs nothing, fsspec-style)."""

from __future__ import annotations

import functools
import importlib

from skyhop.errors import UserError
from skyhop.provision.base import Provider

# name -> "module:Class"
_PROVIDERS: dict[str, str] = {
    "local": "skyhop.provision.providers.local:LocalProvider",
}


def known() -> list[str]:
    return sorted(_PROVIDERS)


@functools.cache
def get(name: str) -> Provider:
    try:
        target = _PROVIDERS[name]
    except KeyError:
        raise UserError(f"provider {name!r} cannot launch yet",
                        hint=f"launchable providers: {', '.join(known())}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()


def enabled() -> list[str]:
    """Providers that can launch here and now."""
    return [name for name in known() if get(name).is_enabled()[0]]
