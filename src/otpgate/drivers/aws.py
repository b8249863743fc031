"""What every AWS driver shares (``pip install 'otpgate[aws]'``): the ``region=``,
``endpoint_url=`` and ``timeout=`` options, one aiobotocore client per driver, and the
mapping of transport failures and AWS-wide error codes onto the outcomes of
``otpgate.errors``.

Credentials come from the standard AWS chain — ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` and the shared
config files, web identity, the ECS container role or the EC2 instance role — never from
the driver URL. ``region=`` names the region (else ``AWS_DEFAULT_REGION`` / the profile's);
``endpoint_url=`` replaces the service's endpoint (a VPC endpoint, a proxy, a local
stand-in for tests).

Why aiobotocore rather than boto3 in a thread pool: a send is one signed HTTPS request
that waits 50–500 ms on the network, and a dispatcher keeps hundreds in flight. With
aiobotocore the waiting costs a coroutine and a pooled connection (up to 200 per driver);
boto3 would hold a thread for each send in flight, and its work — the same botocore code
either way — would contend for the GIL with the event loop that serves the API. Measured
on loopback against a server answering after 50 ms, 2,000 SNS ``Publish`` calls with 200
in flight cost 1.0–1.2 ms of CPU each through aiobotocore against 1.5–1.8 ms through boto3
in 200 threads (0.6–0.7 times the CPU, same runs); on the shared, loaded 2-core machine of
those runs the threads got through 1.2–1.4 times as many calls per second, as 200 runnable
threads draw a larger share of contended cores, but the CPU each send costs is what
bounds a dispatcher that shares its process with the API.

The SDK logs whole requests and answers — the number, the text, the code — at DEBUG:
opening an AWS driver holds the ``botocore`` and ``aiobotocore`` loggers at INFO, unless
a level was set on them on purpose.

The SDK's own retries are off (one attempt): the dispatcher retries with backoff, may
fail over to the next driver, and bounds each call by its lease.

Failures every AWS driver maps the same way (each driver's own table comes first):

- temporary: no connection (refused, DNS, connect timeout, TLS); HTTP 429 or 5xx;
  ``Throttling``, ``ThrottlingException``, ``TooManyRequestsException``,
  ``RequestLimitExceeded``, ``ServiceUnavailable``, ``InternalFailure``, ...
- unknown: the request was sent and no (whole) answer came (read timeout, connection
  closed).
- broken: HTTP 401 or 403; ``InvalidClientTokenId``, ``UnrecognizedClientException``,
  ``SignatureDoesNotMatch``, ``AccessDenied(Exception)``, ``ExpiredToken``,
  ``RequestExpired``, ...; no credentials or no region found.
- permanent: any other 4xx; parameters the SDK refuses.

Error texts name the driver, the operation, the status and AWS's error code — never
AWS's message, which may quote the number or the address.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Literal, TypeVar

import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from otpgate.drivers.base import COMMON_OPTIONS
from otpgate.drivers.http import MAX_CONNECTIONS, timeout_of
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from otpgate.urls import Url

AWS_OPTIONS = frozenset({"region", "endpoint_url", "timeout"})
"""Options every AWS driver takes (with ``COMMON_OPTIONS``)."""
Kind = Literal["temporary", "permanent", "broken"]
Codes = Mapping[str, Kind]
"""A driver's table: an AWS error code — or ``Code.Reason`` where the error names a
reason — to its outcome."""
_SDK_LOGGERS = ("botocore", "aiobotocore")
C = TypeVar("C")
T = TypeVar("T")

_SHARED: dict[str, Kind] = {
    **dict.fromkeys((
        "Throttling", "ThrottlingException", "ThrottledException", "Throttled",
        "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled",
        "RequestThrottledException", "SlowDown", "ServiceUnavailable",
        "ServiceUnavailableException", "InternalError", "InternalFailure",
        "InternalServerError", "InternalServerException", "RequestTimeout",
        "RequestTimeoutException"), "temporary"),
    **dict.fromkeys((
        "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
        "IncompleteSignature", "InvalidSignatureException", "MissingAuthenticationToken",
        "AccessDenied", "AccessDeniedException", "AuthFailure", "AuthorizationError",
        "ExpiredToken", "ExpiredTokenException", "RequestExpired", "OptInRequired",
        "InvalidSecurity"), "broken"),
}


def aws_options(url: Url, own: frozenset[str], usage: str) -> dict[str, str]:
    """The driver's options, once the URL is checked: no credentials or host (they come
    from the AWS chain), only ``own``, the AWS and the common options."""
    if url.user is not None or url.host or url.path not in ("", "/"):
        raise ConfigurationError(
            f"{url.scheme}:// takes its credentials from the AWS chain, not the URL; {usage}")
    url.check_options(own | AWS_OPTIONS | COMMON_OPTIONS, usage)
    options = {k: v for k, v in url.query.items() if k not in COMMON_OPTIONS}
    endpoint = options.get("endpoint_url")
    if endpoint is not None and not endpoint.startswith(("https://", "http://")):
        raise ConfigurationError(f"{url.scheme}:// endpoint_url must be an http(s) URL")
    region = options.get("region")
    if region is not None and not _region_like(region):
        raise ConfigurationError(f"{url.scheme}:// region= is a region name like us-east-1")
    return options


def _region_like(region: str) -> bool:
    return region.isascii() and 0 < len(region) <= 32 and all(
        c.isalnum() or c == "-" for c in region)


def price(options: Mapping[str, str], scheme: str) -> str | None:
    """``max_price=``: a price in USD as AWS takes it (a decimal string), if given."""
    raw = options.get("max_price")
    if raw is None:
        return None
    try:
        valid = decimal.Decimal(raw).is_finite() and decimal.Decimal(raw) > 0
    except decimal.InvalidOperation:
        valid = False
    if not valid:
        raise ConfigurationError(f"{scheme}:// max_price= is a price in USD, like 0.50")
    return raw


def session(options: Mapping[str, str], scheme: str) -> AioSession:
    """The driver's AWS session (its credential chain); ``ConfigurationError`` when
    neither ``region=`` nor the chain's configuration names a region."""
    for name in _SDK_LOGGERS:
        sdk = logging.getLogger(name)
        if sdk.level == logging.NOTSET:
            sdk.setLevel(logging.INFO)
    made = get_session()
    if not options.get("region") and not made.get_config_variable("region"):
        raise ConfigurationError(
            f"{scheme}:// needs region= (or AWS_DEFAULT_REGION, or a region in the AWS profile)")
    return made


def config(options: Mapping[str, str]) -> AioConfig:
    """The client's settings: ``timeout=`` for connecting and for each answer, a pool
    for hundreds of sends in flight, and no retries of the SDK's own."""
    seconds = timeout_of(options)
    return AioConfig(connect_timeout=seconds, read_timeout=seconds,
                     max_pool_connections=MAX_CONNECTIONS,
                     retries={"total_max_attempts": 1, "mode": "standard"})


class Lazy(Generic[C]):
    """One client per driver, made on first use (clients are opened inside the event
    loop) and closed by ``close``."""

    def __init__(self, make: Callable[[], AbstractAsyncContextManager[C]]) -> None:
        self._make = make
        self._context: AbstractAsyncContextManager[C] | None = None
        self._client: C | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> C:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                context = self._make()
                self._client = await context.__aenter__()
                self._context = context
            return self._client

    async def close(self) -> None:
        async with self._lock:
            context, self._context, self._client = self._context, None, None
            if context is not None:
                await context.__aexit__(None, None, None)


async def call(provider: str, operation: str, client: Lazy[C],
               make: Callable[[C], Awaitable[T]], codes: Codes) -> T:
    """Make one AWS call on the driver's client; its failure becomes an outcome by
    ``codes``, then by the shared table (see the module docstring)."""
    try:
        return await make(await client.get())
    except botocore.exceptions.ClientError as exc:
        raise failure(provider, operation, exc, codes) from None
    except (botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.CredentialRetrievalError,
            botocore.exceptions.NoRegionError) as exc:
        raise BrokenDriverError(f"{provider}: {type(exc).__name__}: the AWS credential "
                                "chain or region is not set up") from None
    except botocore.exceptions.ConnectionError as exc:
        raise TemporaryDeliveryError(
            f"{provider}: cannot connect to AWS ({type(exc).__name__})") from None
    except botocore.exceptions.HTTPClientError as exc:
        raise UnknownOutcomeError(
            f"{provider}: no answer from AWS after {operation} was sent "
            f"({type(exc).__name__}); the outcome is unknown") from None
    except botocore.exceptions.ParamValidationError:
        raise PermanentDeliveryError(
            f"{provider}: AWS {operation} refuses these parameters") from None


def failure(provider: str, operation: str, exc: botocore.exceptions.ClientError,
            codes: Codes) -> DeliveryError:
    """The outcome of an AWS error answer."""
    response: Mapping[str, Any] = exc.response
    error: Mapping[str, Any] = response.get("Error") or {}
    code = str(error.get("Code") or "")
    reason = response.get("Reason") or error.get("Reason")
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    label = f"{code}.{reason}" if reason else code
    kind = codes.get(label) if reason else None
    kind = kind or codes.get(code) or _SHARED.get(code) or _by_status(status)
    detail = f"{provider}: AWS {operation} HTTP {status} {label or '(no code)'}"
    if kind == "temporary":
        return TemporaryDeliveryError(f"{detail}: try again later", label or None)
    if kind == "broken":
        return BrokenDriverError(f"{detail}: AWS refuses this driver (credentials, "
                                 "permissions, account or sender)", label or None)
    return PermanentDeliveryError(f"{detail}: refused for this message", label or None)


def _by_status(status: int) -> Kind:
    if status == 429 or status >= 500 or status == 0:
        return "temporary"
    if status in (401, 403):
        return "broken"
    return "permanent"
