"""``otpgate.client``: a typed client for the otpgate HTTP API, sync and async.

```python
from otpgate.client import Client

with Client("https://otp.example.com", api_key="og_…") as otp:
    sent = otp.request_otp("+14155550123", purpose="login")
    result = otp.verify(sent.id, "123456")        # result.valid, result.status
```

``AsyncClient`` has the same methods, awaited. Problem answers (RFC 9457) raise
``ProblemError`` — a subclass per problem type (``RateLimited``, ``InvalidRequest``,
``NotFound``, …) with ``status``, ``type``, ``detail``, ``retry_after`` — after the client
has honoured ``Retry-After`` on 429 and 503 answers for up to ``max_retry_wait`` seconds.
Requests and answers are built and read by the same functions for both clients; only the
transport differs. ``verify_webhook`` checks an outgoing webhook's Standard Webhooks
signature.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx
import msgspec

__all__ = [
    "AsyncClient", "Channel", "Client", "Conflict", "Forbidden", "InvalidRequest",
    "NotFound", "OtpStatus", "ProblemError", "RateLimited", "Requested", "Unauthorized",
    "Unavailable", "Verification", "verify_webhook",
]

T = TypeVar("T")
_PROBLEMS = "https://otpgate.dev/problems/"


class Requested(msgspec.Struct, frozen=True):
    """``POST /v1/otp``'s answer: the code is on its way (or coalesced with one that is)."""

    id: str
    status: str
    to: str
    channels: list[str]
    expires_at: str
    resend_after: str
    send_count: int
    attempts_left: int


class Verification(msgspec.Struct, frozen=True):
    """A verify answer; ``valid`` is True once, for the right code."""

    valid: bool
    status: str
    id: str | None = None
    attempts_left: int | None = None
    token: str | None = None


class Channel(msgspec.Struct, frozen=True):
    channel: str
    driver: str
    status: str
    attempts: int
    updated_at: str


class OtpStatus(msgspec.Struct, frozen=True):
    """``GET`` / ``DELETE /v1/otp/{id}``: the OTP and one entry per channel."""

    id: str
    status: str
    to: str
    purpose: str
    channels: list[Channel]
    send_count: int
    attempts_left: int
    expires_at: str
    created_at: str
    reference: str | None = None


class ProblemError(Exception):
    """A problem answer. ``type`` is the full problem type URI; ``slug`` its last part."""

    def __init__(self, status: int, type_: str, title: str, detail: str,
                 retry_after: int | None = None, body: Mapping[str, Any] | None = None
                 ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.type = type_
        self.title = title
        self.detail = detail
        self.retry_after = retry_after
        self.body = dict(body or {})

    @property
    def slug(self) -> str:
        return self.type.removeprefix(_PROBLEMS)


class InvalidRequest(ProblemError):
    """422 (and 400): a field is wrong; ``field`` names it where the server said."""

    @property
    def field(self) -> str | None:
        value = self.body.get("field")
        return value if isinstance(value, str) else None


class Unauthorized(ProblemError):
    """401: no key, or an unknown or revoked one."""


class Forbidden(ProblemError):
    """403: this key (or this origin) may not do that."""


class NotFound(ProblemError):
    """404: no OTP with that id (for this key's tenant)."""


class Conflict(ProblemError):
    """422 ``idempotency-key-reused``: the key answered another request."""


class RateLimited(ProblemError):
    """429: a limit; ``retry_after`` says when to try again."""


class Unavailable(ProblemError):
    """503: the store or the bus cannot be reached right now."""


_BY_SLUG: dict[str, type[ProblemError]] = {"idempotency-key-reused": Conflict}
_BY_STATUS: dict[int, type[ProblemError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    422: InvalidRequest, 429: RateLimited, 503: Unavailable,
}


class _Problem(msgspec.Struct):
    type: str = "about:blank"
    title: str = ""
    status: int = 0
    detail: str = ""
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """One API call, as both clients make it."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    answer: type[Any]
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] | None = None


def _request_otp(to: str, fields: Mapping[str, Any], idempotency_key: str | None) -> _Call:
    body = {"to": to, **{k: v for k, v in fields.items() if v is not None}}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return _Call("POST", "/v1/otp", Requested, body, headers)


def _verify(otp_id: str, code: str) -> _Call:
    return _Call("POST", f"/v1/otp/{_segment(otp_id)}/verify", Verification, {"code": code})


def _verify_recipient(to: str, code: str, purpose: str) -> _Call:
    return _Call("POST", "/v1/verify", Verification,
                 {"to": to, "code": code, "purpose": purpose})


def _segment(otp_id: str) -> str:
    if not otp_id or "/" in otp_id or "?" in otp_id or "#" in otp_id:
        raise ValueError(f"not an OTP id: {otp_id!r}")
    return otp_id


def _answer(call: _Call, response: httpx.Response) -> Any:
    if response.is_success:
        return msgspec.json.decode(response.content, type=call.answer)
    raise _problem(response)


def _problem(response: httpx.Response) -> ProblemError:
    try:
        raw = msgspec.json.decode(response.content)
        problem = msgspec.convert(raw, _Problem)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raw, problem = {}, _Problem(status=response.status_code,
                                    title=response.reason_phrase, detail=response.text[:200])
    retry = problem.retry_after if problem.retry_after is not None else _retry_after(response)
    slug = problem.type.removeprefix(_PROBLEMS)
    kind = _BY_SLUG.get(slug) or _BY_STATUS.get(response.status_code, ProblemError)
    return kind(response.status_code, problem.type, problem.title, problem.detail, retry,
                raw if isinstance(raw, dict) else None)


def _retry_after(response: httpx.Response) -> int | None:
    raw = response.headers.get("retry-after", "")
    return int(raw) if raw.isdigit() else None


def _wait(response: httpx.Response, waited: float, limit: float) -> float | None:
    """Seconds to wait before trying ``response``'s call again, or ``None`` to give up."""
    if response.status_code not in (429, 503):
        return None
    delay = _retry_after(response)
    if delay is None or waited + delay > limit:
        return None
    return float(delay)


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "otpgate-client"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class Client:
    """The API over a blocking ``httpx.Client`` (see the module docstring)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 max_retry_wait: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key),
                                  timeout=timeout, transport=transport)
        self._max_wait = max_retry_wait

    def request_otp(self, to: str, *, idempotency_key: str | None = None,
                    **fields: Any) -> Requested:
        result: Requested = self._call(_request_otp(to, fields, idempotency_key))
        return result

    def verify(self, otp_id: str, code: str) -> Verification:
        result: Verification = self._call(_verify(otp_id, code))
        return result

    def verify_recipient(self, to: str, code: str, purpose: str = "default") -> Verification:
        result: Verification = self._call(_verify_recipient(to, code, purpose))
        return result

    def get(self, otp_id: str) -> OtpStatus:
        result: OtpStatus = self._call(_Call("GET", f"/v1/otp/{_segment(otp_id)}", OtpStatus))
        return result

    def cancel(self, otp_id: str) -> OtpStatus:
        result: OtpStatus = self._call(
            _Call("DELETE", f"/v1/otp/{_segment(otp_id)}", OtpStatus))
        return result

    def _call(self, call: _Call) -> Any:
        waited = 0.0
        while True:
            response = self._http.request(call.method, call.path, json=call.body,
                                          headers=call.headers)
            delay = _wait(response, waited, self._max_wait)
            if delay is None:
                return _answer(call, response)
            time.sleep(delay)
            waited += delay

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """The API over an ``httpx.AsyncClient`` (see the module docstring)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 10.0,
                 max_retry_wait: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key),
                                       timeout=timeout, transport=transport)
        self._max_wait = max_retry_wait

    async def request_otp(self, to: str, *, idempotency_key: str | None = None,
                          **fields: Any) -> Requested:
        result: Requested = await self._call(_request_otp(to, fields, idempotency_key))
        return result

    async def verify(self, otp_id: str, code: str) -> Verification:
        result: Verification = await self._call(_verify(otp_id, code))
        return result

    async def verify_recipient(self, to: str, code: str,
                               purpose: str = "default") -> Verification:
        result: Verification = await self._call(_verify_recipient(to, code, purpose))
        return result

    async def get(self, otp_id: str) -> OtpStatus:
        result: OtpStatus = await self._call(
            _Call("GET", f"/v1/otp/{_segment(otp_id)}", OtpStatus))
        return result

    async def cancel(self, otp_id: str) -> OtpStatus:
        result: OtpStatus = await self._call(
            _Call("DELETE", f"/v1/otp/{_segment(otp_id)}", OtpStatus))
        return result

    async def _call(self, call: _Call) -> Any:
        waited = 0.0
        while True:
            response = await self._http.request(call.method, call.path, json=call.body,
                                                headers=call.headers)
            delay = _wait(response, waited, self._max_wait)
            if delay is None:
                return _answer(call, response)
            await asyncio.sleep(delay)
            waited += delay

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> Any:
    """The event of an otpgate webhook whose Standard Webhooks signature (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``, keyed by ``secret``, ``whsec_…``) verifies
    and whose timestamp is recent; raises ``ValueError`` otherwise."""
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError

    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        return Webhook(secret).verify(body, lowered)
    except WebhookVerificationError as exc:
        raise ValueError(f"the webhook does not verify: {exc}") from None
