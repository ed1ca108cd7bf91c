"""EC2 API errors -> skyhop's classified provision errors (what failover should block).

botocore is imported only when an error is being translated, never at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from skyhop.provision.errors import (
    ZONE,
    AuthError,
    CapacityError,
    InvalidRequestError,
    ProvisionError,
    QuotaError,
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
    # Throttling and AWS-side failures: the same place may work in a moment.
    "RequestLimitExceeded": TransientError,
    "Throttling": TransientError,
    "ThrottlingException": TransientError,
    "EC2ThrottledException": TransientError,
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
        return cls(f"AWS {code}: {err.get('Message', str(exc))}{suffix}", **where)
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(f"AWS credentials not found: {exc}; {NO_CREDENTIALS_HINT}", **where)
    if isinstance(exc, bx.CredentialRetrievalError | bx.TokenRetrievalError | bx.SSOError):
        return AuthError(f"AWS credentials could not be loaded: {exc}", **where)
    if isinstance(exc, bx.ParamValidationError):
        return InvalidRequestError(f"AWS request rejected by botocore: {exc}{suffix}", **where)
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError):
        return TransientError(f"AWS endpoint unreachable: {exc}{suffix}", **where)
    if isinstance(exc, bx.BotoCoreError):
        return TransientError(f"AWS client error: {exc}{suffix}", **where)
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
