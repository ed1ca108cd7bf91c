"""EC2 API errors -> skyhop's classified provision errors (what failover should block).

botocore is imported only when an error is being translated, never at import time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from skyhop.provision.errors import (
    ZONE,
    AuthError,
    CapacityError,
    InvalidRequestError,
    ProvisionError,
    QuotaError,
    ThrottledError,
    TransientError,
)


class ZoneUnusableError(InvalidRequestError):
    """This zone cannot serve the request (no subnet, type not offered) but others may."""

    scope = ZONE


# EC2 error code -> skyhop error class. Codes and meanings:
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
# Server errors (HTTP 5xx there) such as InsufficientInstanceCapacity are retried by botocore
# before they reach this table; client errors (4xx) are not.
ERROR_CLASSES: dict[str, type[ProvisionError]] = {
    # No capacity for this instance type in this AZ right now: another zone may have it.
    "InsufficientInstanceCapacity": CapacityError,
    "InsufficientCapacity": CapacityError,
    "InsufficientHostCapacity": CapacityError,
    "InsufficientReservedInstanceCapacity": CapacityError,
    "InsufficientAddressCapacity": CapacityError,
    "InsufficientFreeAddressesInSubnet": CapacityError,  # the AZ's subnet is full
    "SpotMaxPriceTooLow": CapacityError,  # spot price in this AZ above the on-demand price
    # The type is not offered in this AZ (the catalog was stale): a zone problem, not capacity.
    "Unsupported": ZoneUnusableError,
    "InvalidAvailabilityZone": ZoneUnusableError,
    # Account limits are per region: another region has its own quota.
    "InstanceLimitExceeded": QuotaError,
    "VcpuLimitExceeded": QuotaError,
    "MaxSpotInstanceCountExceeded": QuotaError,
    "VolumeLimitExceeded": QuotaError,
    "MaxIOPSLimitExceeded": QuotaError,
    "SecurityGroupLimitExceeded": QuotaError,
    "ResourceLimitExceeded": QuotaError,
    # Credentials / account problems hold for every region of the provider.
    "AuthFailure": AuthError,
    "UnauthorizedOperation": AuthError,
    "InvalidClientTokenId": AuthError,
    "OptInRequired": AuthError,
    "SignatureDoesNotMatch": AuthError,
    "ExpiredToken": AuthError,
    "RequestExpired": AuthError,  # the local clock is off: every region sees it
    "MissingAuthenticationToken": AuthError,
    "PendingVerification": AuthError,
    "Blocked": AuthError,
    # The request is wrong for this region (image, type, parameters).
    "InvalidAMIID": InvalidRequestError,  # InvalidAMIID.NotFound/.Malformed/.Unavailable
    "InvalidParameterValue": InvalidRequestError,
    "InvalidParameterCombination": InvalidRequestError,
    "InvalidParameter": InvalidRequestError,
    "MissingParameter": InvalidRequestError,
    "InvalidInstanceType": InvalidRequestError,
    "InvalidKeyPair": InvalidRequestError,  # InvalidKeyPair.NotFound/.Format
    "InvalidSubnetID": InvalidRequestError,
    "InvalidVpcID": InvalidRequestError,
    "InvalidGroup": InvalidRequestError,
    # Throttling is account- or region-wide: it says nothing about a zone (backed off on
    # the same place, never blocked).
    "RequestLimitExceeded": ThrottledError,
    "Throttling": ThrottledError,
    "ThrottlingException": ThrottledError,
    "EC2ThrottledException": ThrottledError,
    # AWS-side failures: the same place may work in a moment.
    "InternalError": TransientError,
    "InternalFailure": TransientError,
    "ServiceUnavailable": TransientError,
    "Unavailable": TransientError,
    "RequestTimeout": TransientError,
    "DependencyViolation": TransientError,  # e.g. a group still used by detaching interfaces
}

NO_CREDENTIALS_HINT = ("configure AWS credentials: run `aws configure`, or set "
                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")


def class_for_code(code: str, http_status: int | None = None) -> type[ProvisionError]:
    """The class for an EC2 code; `InvalidAMIID.NotFound` falls back to `InvalidAMIID`."""
    for key in (code, code.split(".", 1)[0]):
        if key in ERROR_CLASSES:
            return ERROR_CLASSES[key]
    if http_status is not None and http_status >= 500:
        return TransientError
    return InvalidRequestError


def translate(exc: BaseException, *, region: str | None = None, zone: str | None = None,
              instance_type: str | None = None) -> ProvisionError | None:
    """A classified error for a botocore exception, None for anything else."""
    from botocore import exceptions as bx

    where = dict(provider="aws", region=region, zone=zone, instance_type=instance_type)
    place = ", ".join(p for p in (zone or region, instance_type) if p)
    suffix = f" ({place})" if place else ""
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        cls = class_for_code(code, status)
        return cls(f"AWS {code}: {err.get('Message', str(exc))}{suffix}"
                   f"{getattr(exc, 'skyhop_gave_up', '')}", **where)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(f"AWS credentials not found: {exc}; {NO_CREDENTIALS_HINT}", **where)
    if isinstance(exc, bx.CredentialRetrievalError | bx.TokenRetrievalError | bx.SSOError):
        return AuthError(f"AWS credentials could not be loaded: {exc}", **where)
    if isinstance(exc, bx.ParamValidationError):
        return InvalidRequestError(f"AWS request rejected by botocore: {exc}{suffix}", **where)
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
        return TransientError(f"AWS endpoint unreachable: {exc}{suffix}"
                              f"{getattr(exc, 'skyhop_gave_up', '')}", **where,
                              hint="check the network, a proxy, or AWS_ENDPOINT_URL; then "
                                   "try again")
    if isinstance(exc, bx.BotoCoreError):
        return TransientError(f"AWS client error: {exc}{suffix}", **where)
    from botocore.parsers import ResponseParserError

    if isinstance(exc, ResponseParserError):  # an HTML error page: a proxy, a wrong endpoint
        first = str(exc).splitlines()[0]
        return TransientError(f"AWS endpoint gave an answer that is not EC2's: {first}"
                              f"{suffix}", **where,
                              hint="check AWS_ENDPOINT_URL, a proxy, and the region name")
    return None


def code_of(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (without importing botocore)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


@contextmanager
def translating(region: str | None, zone: str | None = None, instance_type: str | None = None
                ) -> Iterator[None]:
    """Turn botocore errors raised inside into classified ProvisionErrors."""
    try:
        yield
    except ProvisionError:
        raise
    except Exception as exc:
        err = translate(exc, region=region, zone=zone, instance_type=instance_type)
        if err is None:
            raise
        raise err from exc


T = TypeVar("T")


def with_backoff(call: Callable[[], T], attempts: int, base_s: float, max_s: float = 30.0
                 ) -> T:
    """`call()`, tried again while AWS throttles or cannot be reached (a transient error),
    waiting base_s x 2^n with jitter (at most max_s) in between, `attempts` tries in all.
    Other errors, and the last transient one, are raised as they are; the last says how
    long it was tried (`skyhop_gave_up`, shown by `translate`)."""
    started = time.monotonic()
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            err = translate(exc)
            if not isinstance(err, TransientError) or code_of(exc) == "DependencyViolation":
                raise
            if attempt == attempts - 1:
                exc.skyhop_gave_up = (f" (still failing after {attempts} tries over "  # type: ignore[attr-defined]
                                      f"{time.monotonic() - started:.0f} s)")
                raise
            time.sleep(min(base_s * 2 ** attempt, max_s) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


class BackoffClient:
    """An EC2 client whose calls back off while AWS throttles or cannot be reached
    (`with_backoff`), on top of botocore's own few quick retries."""

    def __init__(self, client: Any, attempts: int, base_s: float):
        self._client, self._attempts, self._base_s = client, attempts, base_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith(("get_", "can_")) or name in ("meta", "exceptions") \
                or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return with_backoff(lambda: attr(*args, **kwargs), self._attempts, self._base_s)

        return call
