"""``clickatell://`` — SMS through Clickatell's Platform (One API) ``/messages``.

Credentials: in the Clickatell portal (portal.clickatell.com), create an SMS integration
of type *HTTP/REST* (API type *REST*); its page shows the integration's API key. A sender
is optional (``from=``: a two-way number of the integration; one-way integrations send
from Clickatell's own numbers)::

    clickatell://API_KEY@?callback_token=LONG_RANDOM
    clickatell://API_KEY@?from=15550001111&callback_token=LONG_RANDOM

Call: ``POST {base}/messages`` (default base ``https://platform.clickatell.com``) with the
header ``Authorization: API_KEY`` and JSON ``{"to": ["…"], "content": "…"}`` (numbers in
digits without ``+``; ``clientMessageId`` from the send's idempotency key).

Receipts: Clickatell posts message status callbacks to the URL set on the integration in
its portal — there is no per-message callback and no signature. Set it to
``{OTPGATE_PUBLIC_URL}/v1/receipts/clickatell?token=…`` with the ``callback_token=`` of
the driver's URL (and the driver's ``name=`` instead of ``clickatell`` where it has one);
the token is compared in constant time. The callback (POST JSON, or GET with the same
fields as a query) carries ``messageId``, ``statusCode`` and ``status``.

Answers → outcomes (docs.clickatell.com: One API errors table). A 2xx (202, or 207 for a
partial failure) can still refuse the message: ``messages[].accepted`` false with its
``errorCode``.

- 202 with ``messages[].apiMessageId`` accepted: sent.
- broken: 1 (API key), 2 (account not active), 3 (integration not active), 7 (IP not
  approved), 20 (insufficient balance), 38, 39 (channel not active / not available on the
  integration), 41, 42 (no such resource or method: a wrong ``base_url``), 44 (the FROM
  number is suspended), 45 (the FROM number is not the integration's), 46 (demo access
  expired); HTTP 401, 402, 403.
- temporary: 18 (internal error), 19 (internal error, please retry), 43 (rate limit);
  HTTP 429 (``Retry-After`` honoured), 5xx.
- permanent: 23 (invalid or missing parameter), 25 (invalid recipient), 26 (opted out),
  27 (not available on the channel), 28 (not available on the sandbox), 100 (too many
  parts), 101 (no two-way), 110, 111 (USA limits), 21, 22, 24, 30, 40, and any other code
  or 4xx.

Status callbacks → receipts: 5 ``DEVICE_ACK``, 6 ``READ`` → delivered; 1 ``UNKNOWN``, 2
``QUEUED``, 3 ``SCHEDULED``, 4 ``SENT_TO_SUPPLIER``, 24 ``EMULATED`` → sent; every other
code (20 ``EXPIRED``, 23 ``DELIVERY_FAILURE``, 25 ``INSUFFICIENT_ACCOUNT_BALANCE``, 29
``RECIPIENT_DOES_NOT_EXIST``, 100 ``ROUTING_ERROR``, …) → failed, with the code.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qsl

import httpx

from otpgate.drivers import callbacks, http
from otpgate.drivers.base import (
    Driver,
    DriverContext,
    Message,
    Receipt,
    ReceiptRequest,
    ReceiptStatus,
    SendReceipt,
    stable_id,
)
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    DeliveryError,
    InvalidRequest,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from otpgate.urls import Url

API: Final = "https://platform.clickatell.com"
CHANNELS: Final = frozenset({"sms"})
_OPTIONS = frozenset({"from", callbacks.OPTION})
_USAGE = "clickatell://API_KEY@[?from=…&callback_token=…]"
_BROKEN = frozenset({1, 2, 3, 7, 20, 38, 39, 41, 42, 44, 45, 46})
_TEMPORARY = frozenset({18, 19, 43})
_PERMANENT = frozenset({21, 22, 23, 24, 25, 26, 27, 28, 30, 31, 32, 33, 40, 100, 101,
                        110, 111})
_SENT = frozenset({1, 2, 3, 4, 24})
_DELIVERED = frozenset({5, 6})
_BY_NAME: dict[str, int] = {"UNKNOWN": 1, "QUEUED": 2, "SCHEDULED": 3,
                            "SENT_TO_SUPPLIER": 4, "DEVICE_ACK": 5, "READ": 6,
                            "EMULATED": 24}


class ClickatellDriver:
    """Sends through one Clickatell integration; reads its status callbacks."""

    channels = CHANNELS

    def __init__(self, *, name: str, api_key: str, sender: str | None, base_url: str,
                 timeout: float, token: str | None, raw_url: Url) -> None:
        self.name = name
        self.origin = base_url
        """The API origin in use (Clickatell's, or ``base_url=``)."""
        self._sender = sender
        self._token = token
        self._raw = raw_url
        self._http = http.client(base_url, timeout, headers={
            "Authorization": api_key, "Accept": "application/json"})

    async def send(self, message: Message) -> SendReceipt:
        payload: dict[str, Any] = {
            "to": [message.to.removeprefix("+")], "content": message.body,
            "clientMessageId": stable_id("ct", f"{self.name}:{message.idempotency_key}"),
        }
        if self._sender:
            payload["from"] = self._sender
        response = await http.request(self._http, self.name, "POST", "/messages",
                                      json=payload)
        answer = http.json_body(response)
        first = _first_message(answer)
        code = _code(first.get("errorCode")) if first else None
        if code is None and isinstance(answer, dict):
            code = _code(answer.get("errorCode"))
        if 200 <= response.status_code < 300 and code is None and first is not None \
                and first.get("accepted") is not False \
                and isinstance(first.get("apiMessageId"), str) and first["apiMessageId"]:
            return SendReceipt(first["apiMessageId"])
        raise self._failure(response, code)

    def _failure(self, response: httpx.Response, code: int | None) -> DeliveryError:
        label = str(code) if code is not None else None
        where = f"{self.name}: Clickatell error {code} (HTTP {response.status_code})"
        if code in _BROKEN:
            return BrokenDriverError(f"{where}: the integration refuses this driver", label)
        if code in _TEMPORARY:
            return TemporaryDeliveryError(where, label,
                                          retry_after=http.retry_after(response))
        if code not in _PERMANENT:
            shared = http.status_outcome(self.name, response, label)
            if shared is not None:
                return shared
            if response.status_code == 402:
                return BrokenDriverError(f"{where}: insufficient balance", label)
            if code is None and 200 <= response.status_code < 300:
                return TemporaryDeliveryError(f"{self.name}: answer without a message id")
        return PermanentDeliveryError(f"{where}: the message is refused", label)

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        callbacks.check_token(request, self._token, self.name)
        receipts = []
        for update in _updates(request):
            provider_id = update.get("messageId")
            if not isinstance(provider_id, str) or not provider_id:
                raise InvalidRequest("a Clickatell status callback names its messageId")
            code = _code(update.get("statusCode"))
            if code is None:
                code = _BY_NAME.get(str(update.get("status", "")).upper())
            if code is None:
                raise InvalidRequest("a Clickatell status callback has a statusCode")
            status: ReceiptStatus = ("sent" if code in _SENT else
                                     "delivered" if code in _DELIVERED else "failed")
            receipts.append(Receipt(provider_id=provider_id, status=status,
                                    error_code=str(code) if status == "failed" else None))
        return receipts

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _first_message(answer: Any) -> dict[str, Any] | None:
    messages = answer.get("messages") if isinstance(answer, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        return messages[0]
    return None


def _code(raw: Any) -> int | None:
    """Clickatell codes come as numbers or numeric strings; ``None`` for none."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    return None


def _updates(request: ReceiptRequest) -> list[dict[str, Any]]:
    """The status updates of a callback: a JSON body, a form, or (GET) the query."""
    if request.method == "GET" or not request.body.strip():
        fields: dict[str, Any] = {k: v for k, v in request.query.items() if k != "token"}
        return [fields]
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return [dict(parse_qsl(request.body.decode("utf-8", "replace")))]
    body = callbacks.json_object(request.body, "a Clickatell status callback")
    event = body.get("event")
    if isinstance(event, dict) and isinstance(event.get("messageStatusUpdate"), list):
        return [u for u in event["messageStatusUpdate"] if isinstance(u, dict)]
    return [body]


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    if not url.user or url.password is not None or url.host or url.path not in ("", "/"):
        raise ConfigurationError(f"the clickatell driver's URL is {_USAGE}")
    return ClickatellDriver(
        name=ctx.name, api_key=url.user, sender=options.get("from") or None,
        base_url=http.base_url_of(options, API), timeout=http.timeout_of(options),
        token=callbacks.token_of(options), raw_url=url)
