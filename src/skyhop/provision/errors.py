"""Provider errors, classified by what they block, so failover needs no provider code.

A provider translates its own API errors into these; the provisioner blocks the error's
scope (this zone, this region, the whole provider) and re-plans. They are `UserError`s: a
provider or network failure that reaches the user is one message with a hint and exit
code 2, never an "unexpected" crash.
"""

from __future__ import annotations

from skyhop.errors import UserError

ZONE, REGION, PROVIDER = "zone", "region", "provider"
NOWHERE = "nowhere"  # blocks no place: the same place is retried (throttling)


class ProvisionError(UserError):
    """A provider could not create what was asked."""

    scope = ZONE
    retry_same = False  # worth retrying the same place after a short wait
    default_hint = "see `skyhop check` and the provider's console"

    def __init__(self, message: str, *, provider: str = "", region: str | None = None,
                 zone: str | None = None, instance_type: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint or self.default_hint)
        self.provider, self.region, self.zone = provider, region, zone
        self.instance_type = instance_type

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Error").lower()


class CapacityError(ProvisionError):
    """No capacity for this instance type here right now (try another zone)."""

    scope = ZONE
    default_hint = "retry with --retry-until-up, or allow other zones, regions or types"


class QuotaError(ProvisionError):
    """The account's quota for this region is exhausted (try another region)."""

    scope = REGION
    default_hint = "ask the provider for a higher quota, or allow other regions"


class AuthError(ProvisionError):
    """Credentials missing, expired or not allowed (try another provider)."""

    scope = PROVIDER
    default_hint = "check the provider's credentials (`skyhop check` says what is missing)"


class InvalidRequestError(ProvisionError):
    """The provider rejects this request here (unknown type, image, ...)."""

    scope = REGION
    default_hint = "check the skyhop config for this provider (image, VPC, ...)"


class TransientError(ProvisionError):
    """Timeouts, 5xx, an unreachable endpoint: the same place may work in a moment."""

    scope = ZONE
    retry_same = True
    default_hint = ("the provider's API or the network failed; try again in a moment "
                    "(check the endpoint, proxy and network if it persists)")


class ThrottledError(TransientError):
    """The provider limits the request rate (account- or region-wide): it says nothing
    about a zone, so it blocks nothing; the caller backs off on the same place, with a cap."""

    scope = NOWHERE
    default_hint = ("the provider is rate-limiting this account's API calls (another "
                    "program may share the limit); wait a few minutes and try again")
