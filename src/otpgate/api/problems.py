"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

``type`` is ``https://otpgate.dev/problems/<slug>``: the ``OtpgateError.slug`` for our own
errors, a slug per HTTP status for the framework's (unknown route, wrong method, body too
large, malformed JSON). Anything unexpected is logged and answered with a generic 500 that
reveals nothing; a store or bus that cannot be used is a 503 with ``Retry-After`` whose
detail is generic too (the internal error is logged, never answered).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from otpgate.api.schemas import Problem
from otpgate.errors import (
    BusError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    OtpgateError,
    RateLimited,
    StoreError,
    Unauthorized,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://otpgate.dev/problems/"

_STATUS: tuple[tuple[type[OtpgateError], int], ...] = (
    (InvalidRequest, 422),  # InvalidRecipient included
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Conflict, 422),
    (RateLimited, 429),
    (StoreError, 503),
    (BusError, 503),
)
_TITLES: dict[str, str] = {
    "invalid-request": "Invalid request",
    "invalid-recipient": "Invalid recipient",
    "not-found": "Not found",
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
    "idempotency-key-reused": "Idempotency-Key reused with another request",
    "rate-limited": "Too many requests",
    "pumping": "Number range blocked for SMS pumping",
    "budget": "Spend budget reached",
    "geo-blocked": "Country not allowed",
    "number-type": "Number type not allowed",
    "store-unavailable": "Store unavailable",
    "bus-unavailable": "Event bus unavailable",
    "sends-late": "Sends are late",
    "malformed-request": "Malformed request",
    "method-not-allowed": "Method not allowed",
    "payload-too-large": "Request body too large",
    "unsupported-media-type": "Unsupported media type",
    "cross-origin-refused": "Cross-origin request refused",
    "misdirected-request": "Misdirected request",
    "request-timeout": "Request timeout",
    "headers-too-large": "Request header fields too large",
    "client-disconnected": "Client disconnected",
    "internal": "Internal error",
}
_HTTP_SLUGS: dict[int, str] = {
    400: "malformed-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    499: "client-disconnected",
}
_HTTP_DETAILS: dict[int, str] = {
    404: "no such resource",
    413: "request body is too large",
}
_UNAVAILABLE: dict[str, str] = {
    "store-unavailable": "the store cannot be used right now; try again shortly",
    "bus-unavailable": "the event bus cannot be used right now; try again shortly",
}
UNAVAILABLE_RETRY_AFTER = 1
_ENCODER = msgspec.json.Encoder()


def title_of(slug: str) -> str:
    """The title a problem of type ``slug`` carries."""
    return _TITLES.get(slug, slug.replace("-", " "))


def status_of(error: OtpgateError) -> int:
    """The HTTP status an error answers with (500 for errors the caller cannot cause)."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def title(slug: str) -> str:
    return _TITLES.get(slug, slug.replace("-", " "))


def encode(status: int, slug: str, detail: str, *, field: str | None = None,
           retry_after: int | None = None, rule: str | None = None) -> bytes:
    """The problem+json body of a problem."""
    return _ENCODER.encode(Problem(
        type=TYPE_BASE + slug, title=title(slug),
        status=status, detail=detail, field=field, retry_after=retry_after, rule=rule))


def problem(status: int, slug: str, detail: str, *, field: str | None = None,
            retry_after: int | None = None, rule: str | None = None,
            headers: Mapping[str, str] | None = None) -> Response[bytes]:
    """A problem+json response."""
    return Response(encode(status, slug, detail, field=field, retry_after=retry_after,
                           rule=rule),
                    status_code=status, media_type=MEDIA_TYPE,
                    headers=dict(headers) if headers else None)


def from_error(error: OtpgateError) -> Response[bytes]:
    status = status_of(error)
    if status == 500:
        log.error("unexpected %s: %s", type(error).__name__, error.detail)
        return _internal()
    if isinstance(error, RateLimited):
        return problem(status, error.slug, error.detail, retry_after=error.retry_after,
                       rule=error.rule, headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, Unauthorized):
        return problem(status, error.slug, error.detail, headers={"WWW-Authenticate": "Bearer"})
    if status == 503:
        log.warning("dependency unavailable: %s", error.detail)
        retry = UNAVAILABLE_RETRY_AFTER
        return problem(status, error.slug, _UNAVAILABLE.get(error.slug, "try again shortly"),
                       retry_after=retry, headers={"Retry-After": str(retry)})
    field = error.field if isinstance(error, InvalidRequest) else None
    return problem(status, error.slug, error.detail, field=field,
                   rule=getattr(error, "rule", None))


def from_http(error: HTTPException) -> Response[bytes]:
    status = error.status_code
    if status >= 500:
        log.error("server error %d: %s", status, error.detail)
        return _internal()
    slug = _HTTP_SLUGS.get(status, f"http-{status}")
    detail = _HTTP_DETAILS.get(status, error.detail)
    headers = dict(error.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem(status, slug, detail, headers=headers)


def _internal() -> Response[bytes]:
    return problem(500, "internal", "the server could not handle this request; it is logged")


def _on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, OtpgateError):
        return from_error(exc)
    if isinstance(exc, HTTPException):
        return from_http(exc)
    log.error("unhandled error on %s %s", request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return _internal()


def exception_handlers() -> ExceptionHandlersMap:
    """Handlers turning every exception into a problem response."""
    return {Exception: _on_error}
