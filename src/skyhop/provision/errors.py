"""Provider errors, classified by what they block, so failover needs no provider code.

A provider translates its own API errors into these; the provisioner blocks the error's
scope (this zone, this region, the whole provider) and re-plans.
"""

from __future__ import annotations

ZONE, REGION, PROVIDER = "zone", "region", "provider"


class ProvisionError(Exception):
    """A provider could not create what was asked."""

    scope = ZONE
    retry_same = False  # worth retrying the same place after a short wait

    def __init__(self, message: str, *, provider: str = "", region: str | None = None,
                 zone: str | None = None, instance_type: str | None = None):
        super().__init__(message)
        self.message = message
        self.provider, self.region, self.zone = provider, region, zone
        self.instance_type = instance_type

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Error").lower()


class CapacityError(ProvisionError):
    """No capacity for this instance type here right now (try another zone)."""

    scope = ZONE


class QuotaError(ProvisionError):
    """The account's quota for this region is exhausted (try another region)."""

    scope = REGION


class AuthError(ProvisionError):
    """Credentials missing, expired or not allowed (try another provider)."""

    scope = PROVIDER


class InvalidRequestError(ProvisionError):
    """The provider rejects this request here (unknown type, image, ...)."""

    scope = REGION


class TransientError(ProvisionError):
    """Throttling, timeouts, 5xx: the same place may work in a moment."""

    scope = ZONE
    retry_same = True
