"""What every HTTP provider driver shares: one pooled ``httpx.AsyncClient`` per driver, the
``base_url=`` and ``timeout=`` options, and the mapping of transport failures and HTTP
statuses onto the outcomes of ``otpgate.errors``.

Transport failures:

| what happened                                   | outcome                              |
|-------------------------------------------------|--------------------------------------|
| no connection (refused, DNS, connect timeout)   | temporary: nothing reached the provider |
| the pool had no free connection in time         | temporary                            |
| the request was written, no (whole) answer came | unknown: the provider may have it    |

Statuses that mean the same at every provider (``status_outcome``): 429 and 5xx are
temporary (``Retry-After`` honoured), 401 and 403 mean the driver is broken (credentials).
Other 4xx answers are for each driver's own table of documented error codes.

Error texts name the provider, the status and the provider's code — never the request's
URL, body or the provider's message, which may quote the number or the text.

Receipts: ``callback_fields`` reads a callback's form body (or, for a GET, its query), and
``check_fresh`` refuses a signed timestamp too far from now (a replayed callback).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from otpgate import urls
from otpgate.drivers.base import COMMON_OPTIONS, ReceiptRequest
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    DeliveryError,
    Forbidden,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from otpgate.urls import Url

DEFAULT_TIMEOUT = 10.0
FRESH_SECONDS = 300
"""How far a signed callback's timestamp may be from now (either way)."""
HTTP_OPTIONS = frozenset({"base_url", "timeout"})
"""Options every HTTP driver takes (with ``COMMON_OPTIONS``)."""
MAX_CONNECTIONS = 200
"""Connections per driver: enough for hundreds of sends in flight."""


def http_options(url: Url, own: frozenset[str], usage: str) -> dict[str, str]:
    """The driver's own options, once the URL is checked against ``own``, the HTTP and
    the common options."""
    url.check_options(own | HTTP_OPTIONS | COMMON_OPTIONS, usage)
    return {k: v for k, v in url.query.items() if k not in COMMON_OPTIONS}


def timeout_of(options: Mapping[str, str]) -> float:
    raw = options.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigurationError(f"timeout must be a number of seconds, not {raw!r}") from None
    if not 0 < seconds <= 120 or math.isnan(seconds):
        raise ConfigurationError("timeout must be between 0 and 120 seconds")
    return seconds


def base_url_of(options: Mapping[str, str], default: str | None) -> str:
    """``base_url=`` (the provider's origin; its documented paths are kept under it), or
    ``default``; ``ConfigurationError`` when the driver has no default and none is given."""
    raw = options.get("base_url") or default
    if not raw:
        raise ConfigurationError("this driver needs base_url= (its origin is per account)")
    if not raw.startswith(("https://", "http://")):
        raise ConfigurationError(f"base_url must be an http(s) URL, not {urls.mask(raw)!r}")
    if raw.startswith("http://") and not urls.is_loopback(urlsplit(raw).hostname or ""):
        raise ConfigurationError(
            f"base_url {urls.mask(raw)!r} would send the credentials in clear: plain http "
            "is for loopback only (tests, a local proxy); use https")
    return raw.rstrip("/")



def client(base_url: str, timeout: float, *, auth: httpx.Auth | tuple[str, str] | None = None,
           headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """The driver's one client: a pool of keep-alive HTTP/1.1 connections to ``base_url``.

    The connections are aiohttp's, behind httpx's API (``httpx_aiohttp``): with hundreds of
    sends in flight, httpcore's own pool costs several milliseconds of CPU a request, while
    aiohttp's stays under half a millisecond (``benchmarks/README.md``, "HTTP drivers")."""
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS,
                          max_keepalive_connections=MAX_CONNECTIONS, keepalive_expiry=30.0)
    return httpx.AsyncClient(
        base_url=base_url, auth=auth, headers=dict(headers or {}),
        timeout=httpx.Timeout(timeout, pool=timeout), limits=limits,
        transport=AiohttpTransport(limits=limits, trust_env=False),
        follow_redirects=False, trust_env=False)


async def request(http: httpx.AsyncClient, provider: str, method: str, path: str,
                  **kwargs: Any) -> httpx.Response:
    """Send one request; transport failures become outcomes (see the module docstring)."""
    try:
        return await http.request(method, path, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        if isinstance(exc.__cause__, aiohttp.ServerDisconnectedError):
            raise UnknownOutcomeError(
                f"{provider}: the connection closed after the request was sent; the outcome "
                "is unknown") from None
        raise TemporaryDeliveryError(f"{provider}: cannot connect ({type(exc).__name__})") \
            from None
    except httpx.PoolTimeout:
        raise TemporaryDeliveryError(f"{provider}: no free connection in time") from None
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError,
            httpx.ReadError, httpx.WriteError) as exc:
        raise UnknownOutcomeError(
            f"{provider}: no answer after the request was sent ({type(exc).__name__}); "
            "the outcome is unknown") from None
    except httpx.HTTPError as exc:
        raise TemporaryDeliveryError(f"{provider}: {type(exc).__name__}") from None


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), if the answer has one."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_outcome(provider: str, response: httpx.Response,
                   code: str | None = None) -> DeliveryError | None:
    """The outcome every provider shares for this status, or ``None`` when it is for the
    driver's own table (2xx, and 4xx other than 401, 403 and 429)."""
    status = response.status_code
    label = f"{provider}: HTTP {status}" + (f" (code {code})" if code else "")
    if status == 429:
        return TemporaryDeliveryError(f"{label}: throttled", code,
                                      retry_after=retry_after(response))
    if status >= 500:
        return TemporaryDeliveryError(f"{label}: provider error", code,
                                      retry_after=retry_after(response))
    if status in (401, 403):
        return BrokenDriverError(f"{label}: the provider refuses these credentials", code)
    return None


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def callback_fields(request: ReceiptRequest) -> dict[str, list[str]]:
    """A callback's fields, each with its values: the form body of a POST, the query of a
    GET. Blank values are kept (signatures cover them)."""
    if request.method == "GET":
        return {name: [value] for name, value in request.query.items()}
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)


def check_fresh(raw: str | None, now: float, provider: str,
                tolerance: float = FRESH_SECONDS) -> None:
    """``Forbidden`` unless ``raw`` is a Unix time within ``tolerance`` seconds of ``now``:
    a signature over an old timestamp is a replay."""
    try:
        when = float(raw) if raw is not None else math.nan
    except ValueError:
        when = math.nan
    if not abs(now - when) <= tolerance:  # NaN compares false: missing or malformed
        raise Forbidden(f"the {provider} callback's timestamp is missing or not recent")
