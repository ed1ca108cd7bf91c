"""Providers by name, imported lazily (an unused provider costs nothing, fsspec-style)."""

from __future__ import annotations

import functools
import importlib

from skyhop.errors import UserError
from skyhop.provision.base import Provider

# name -> "module:Class"
_PROVIDERS: dict[str, str] = {
    "local": "skyhop.provision.providers.local:LocalProvider",
    "ssh": "skyhop.provision.providers.ssh:SSHPoolProvider",
    "aws": "skyhop.provision.providers.aws:AwsProvider",
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


def check(name: str, strict: bool = False) -> tuple[bool, str]:
    """(usable here and now, what is missing otherwise): no network calls, no side effects.
    A mistake in the user's config for it (a UserError) is raised when `strict`, else
    reported as the reason it is not usable."""
    try:
        provider = get(name)
    except ImportError as exc:  # a provider's own module needs a missing library
        return False, f"cannot load its module: {exc}"
    try:
        return provider.is_enabled()
    except UserError as exc:
        if strict:
            raise
        return False, str(exc)


def enabled() -> list[str]:
    """Providers that can launch here and now. A broken config section is an error here,
    not a provider silently left out."""
    return [name for name in known() if check(name, strict=True)[0]]
