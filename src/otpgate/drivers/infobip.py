"""``infobip://`` — SMS through Infobip's SMS API (``/sms/3/messages``).

Credentials: in the Infobip web interface (portal.infobip.com), Developer Tools → API keys
creates a key (it needs the ``sms:message:send`` scope); the account's own API origin, the
*Base URL* ``https://XXXX.api.infobip.com``, is shown on the same pages and on the API
documentation's landing page once signed in. It is per account, so ``base_url=`` is
required. The sender is a number or alphanumeric sender registered for the destinations
(``InfoSMS`` on a free trial)::

    infobip://API_KEY@Acme?base_url=https://XXXX.api.infobip.com&callback_token=LONG_RANDOM
    infobip://API_KEY@447491163443?base_url=https://XXXX.api.infobip.com

Call: ``POST {base}/sms/3/messages`` with ``Authorization: App API_KEY`` and JSON
``messages: [{sender, destinations: [{to, messageId}], content: {text}, webhooks:
{delivery: {url}, contentType}}]``; ``to`` is the number in digits without ``+``, the
``messageId`` is derived from the send's idempotency key (a retried send carries the same
one, and Infobip refuses a duplicate with ``REJECTED_DUPLICATE_MESSAGE_ID``: the first one
went out, so that answer counts as sent).

Receipts: Infobip posts delivery reports (``results[]`` with ``messageId``,
``status.groupName``, ``error``) to the ``webhooks.delivery.url`` of each message. It does
not sign per-message delivery reports (the HMAC security settings of its Subscriptions API
apply to subscription webhooks, not to this URL), so the URL carries ``?token=…`` from
``callback_token=``, compared in constant time. Without a token no URL is passed.

Answers → outcomes (infobip.com/docs/essentials/api-essentials/response-status-and-error-codes).
A 200 can carry a failure in ``messages[].status``:

- ``PENDING_*`` (group 1), ``DELIVERED_*`` (group 3): sent; ``REJECTED_DUPLICATE_MESSAGE_ID``:
  sent (the first attempt with this message id was taken).
- broken: ``REJECTED_NOT_ENOUGH_CREDITS``, ``REJECTED_SOURCE`` (sender not registered),
  ``REJECTED_SENDER`` (sender blocked), ``REJECTED_PREPAID_PACKAGE_EXPIRED``; 401, 403, 404
  (a wrong ``base_url``).
- temporary: ``REJECTED_SYSTEM_ERROR``, ``REJECTED_FLOODING_FILTER`` (too many messages
  to this number for now); 429 (``Retry-After`` honoured), 5xx.
- permanent: ``REJECTED_DESTINATION``, ``REJECTED_PREFIX_MISSING``,
  ``REJECTED_INVALID_DESTINATION``, ``REJECTED_NETWORK``, ``REJECTED_DND``,
  ``REJECTED_DESTINATION_NOT_REGISTERED``, ``REJECTED_ROUTE_NOT_AVAILABLE``, ``MISSING_TO``,
  any other ``REJECTED_*``, ``UNDELIVERABLE_*``, ``EXPIRED_*``; 400 and any other 4xx
  (``errorCode`` or ``requestError.serviceException.messageId`` kept as the code).

Delivery reports → receipts: ``DELIVERED`` → delivered; ``UNDELIVERABLE``, ``EXPIRED``,
``REJECTED`` → failed (the ``error.name``, e.g. ``EC_UNKNOWN_SUBSCRIBER``, else the
status name); ``PENDING`` → sent.
"""

from __future__ import annotations

from typing import Any, Final

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

CHANNELS: Final = frozenset({"sms"})
_OPTIONS = frozenset({"from", callbacks.OPTION})
_USAGE = "infobip://API_KEY@SENDER?base_url=https://XXXX.api.infobip.com[&callback_token=…]"
_BROKEN = frozenset({"REJECTED_NOT_ENOUGH_CREDITS", "REJECTED_SOURCE", "REJECTED_SENDER",
                     "REJECTED_PREPAID_PACKAGE_EXPIRED"})
_TEMPORARY = frozenset({"REJECTED_SYSTEM_ERROR", "REJECTED_FLOODING_FILTER"})
_DUPLICATE = "REJECTED_DUPLICATE_MESSAGE_ID"
_REPORT: dict[str, ReceiptStatus] = {"PENDING": "sent", "DELIVERED": "delivered",
                                     "UNDELIVERABLE": "failed", "EXPIRED": "failed",
                                     "REJECTED": "failed"}


class InfobipDriver:
    """Sends through one Infobip account and sender; reads its delivery reports."""

    channels = CHANNELS

    def __init__(self, *, name: str, api_key: str, sender: str, base_url: str,
                 timeout: float, callback: str | None, token: str | None,
                 raw_url: Url) -> None:
        self.name = name
        self._sender = sender
        self._callback = callback
        self._token = token
        self._raw = raw_url
        self._http = http.client(base_url, timeout, headers={
            "Authorization": f"App {api_key}", "Accept": "application/json"})

    async def send(self, message: Message) -> SendReceipt:
        message_id = stable_id("ib", f"{self.name}:{message.idempotency_key}")
        sms: dict[str, Any] = {
            "sender": self._sender,
            "destinations": [{"to": message.to.removeprefix("+"), "messageId": message_id}],
            "content": {"text": message.body},
        }
        if self._callback:
            sms["webhooks"] = {"delivery": {"url": self._callback},
                               "contentType": "application/json"}
        response = await http.request(self._http, self.name, "POST", "/sms/3/messages",
                                      json={"messages": [sms]})
        if not 200 <= response.status_code < 300:
            raise self._failure(response)
        answer = http.json_body(response)
        sent = answer.get("messages") if isinstance(answer, dict) else None
        first = sent[0] if isinstance(sent, list) and sent else None
        if not isinstance(first, dict):
            raise TemporaryDeliveryError(f"{self.name}: answer without a message status")
        status = _object(first.get("status"))
        outcome = self._status_outcome(str(status.get("groupName", "")),
                                       str(status.get("name", "")))
        if outcome is not None:
            raise outcome
        provider_id = first.get("messageId")
        return SendReceipt(provider_id if isinstance(provider_id, str) and provider_id
                           else message_id)

    def _status_outcome(self, group: str, name: str) -> DeliveryError | None:
        """``None`` for a message Infobip took (a 2xx without a status too), else its
        outcome."""
        if (group in ("", "PENDING", "DELIVERED") and not name.startswith("REJECTED")) \
                or name == _DUPLICATE:
            return None
        label = f"{self.name}: Infobip status {name or group}"
        code = name or group or None
        if name in _BROKEN:
            return BrokenDriverError(f"{label} (account or sender)", code)
        if name in _TEMPORARY:
            return TemporaryDeliveryError(label, code)
        return PermanentDeliveryError(label, code)

    def _failure(self, response: httpx.Response) -> DeliveryError:
        code = _error_code(http.json_body(response))
        shared = http.status_outcome(self.name, response, code)
        if shared is not None:
            return shared
        if response.status_code == 404:
            return BrokenDriverError(f"{self.name}: HTTP 404 (check base_url)", code)
        return PermanentDeliveryError(
            f"{self.name}: Infobip refused the message (HTTP {response.status_code}, "
            f"code {code})", code)

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        callbacks.check_token(request, self._token, self.name)
        report = callbacks.json_object(request.body, "an Infobip delivery report")
        results = report.get("results")
        if not isinstance(results, list):
            raise InvalidRequest("an Infobip delivery report holds results[]")
        receipts = []
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("messageId"), str):
                raise InvalidRequest("each Infobip delivery report names its messageId")
            status = _object(result.get("status"))
            seen = _REPORT.get(str(status.get("groupName", "")).upper())
            if seen is None:
                continue
            receipts.append(Receipt(provider_id=result["messageId"], status=seen,
                                    error_code=_report_error(result, status)
                                    if seen == "failed" else None))
        return receipts

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error_code(body: Any) -> str | None:
    """The code of an Infobip error body (``errorCode``, or the older
    ``requestError.serviceException.messageId``)."""
    if not isinstance(body, dict):
        return None
    code = body.get("errorCode")
    if code is None:
        request_error = body.get("requestError")
        exception = request_error.get("serviceException") \
            if isinstance(request_error, dict) else None
        code = exception.get("messageId") if isinstance(exception, dict) else None
    return str(code)[:64] if code is not None else None


def _report_error(result: dict[str, Any], status: dict[str, Any]) -> str | None:
    error = result.get("error")
    if isinstance(error, dict) and error.get("id") not in (0, None) and error.get("name"):
        return str(error["name"])[:64]
    name = status.get("name")
    return str(name)[:64] if name else None


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    sender = options.get("from") or url.host
    if not url.user or url.password is not None or not sender:
        raise ConfigurationError(f"the infobip driver's URL is {_USAGE}")
    if not options.get("base_url"):
        raise ConfigurationError("infobip needs base_url= (the account's own "
                                 "https://XXXX.api.infobip.com)")
    token = callbacks.token_of(options)
    return InfobipDriver(
        name=ctx.name, api_key=url.user, sender=sender,
        base_url=http.base_url_of(options, None), timeout=http.timeout_of(options),
        callback=callbacks.with_token(ctx.receipt_url, token), token=token, raw_url=url)
