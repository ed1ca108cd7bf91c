"""A blocklist of offers (provider, region, zone, instance type, market patterns) that the
optimizer must avoid: given by the user, or grown by the provisioner after failures."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from skyhop.errors import UserError
from skyhop.spec.fields import parse_infra


@dataclass(frozen=True, slots=True)
class BlockRule:
    """Offers to avoid: every field is a glob; `spot` None matches both markets."""

    provider: str = "*"
    region: str = "*"
    zone: str = "*"
    instance_type: str = "*"
    spot: bool | None = None

    def __str__(self) -> str:
        market = "" if self.spot is None else (":spot" if self.spot else ":on-demand")
        return f"{self.provider}/{self.region}/{self.zone}/{self.instance_type}{market}"

    @classmethod
    def parse(cls, text: str) -> BlockRule:
        """`provider[/region[/zone[/instance_type]]][:spot|:on-demand]`, globs allowed."""
        body, _, market = text.strip().partition(":")
        spot = {"": None, "spot": True, "on-demand": False, "ondemand": False}.get(market.lower())
        if market and spot is None:
            raise UserError(f"block rule {text!r}: market must be ':spot' or ':on-demand'")
        parts = body.split("/")
        if not body or len(parts) > 4 or any(not p for p in parts):
            raise UserError(f"block rule {text!r} is not provider[/region[/zone[/type]]]",
                            hint="e.g. --block 'aws/us-east-1/*/p4d.*:spot'")
        if parts[0] != "*":
            try:
                parts[0] = parse_infra(parts[0]).provider
            except ValueError as exc:
                raise UserError(f"block rule {text!r}: {exc}") from None
        parts += ["*"] * (4 - len(parts))
        return cls(*parts, spot=spot)

    def matches_text(self, field: str, value: str | None) -> bool:
        pattern = getattr(self, field)
        if pattern == "*":
            return True
        return value is not None and fnmatch.fnmatchcase(value, pattern)


@dataclass(frozen=True)
class Blocklist:
    rules: tuple[BlockRule, ...] = ()

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Blocklist:
        return cls(tuple(BlockRule.parse(t) for t in texts))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __add__(self, other: Blocklist) -> Blocklist:
        return Blocklist(self.rules + other.rules)
