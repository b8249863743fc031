"""``plivo://`` — SMS through Plivo's Messaging API.

Credentials: the Auth ID and Auth Token on the Plivo console's overview page
(console.plivo.com), or a subaccount's. The sender is a Plivo number (required for the US
and Canada), a short code, or an alphanumeric sender id where the destination allows one;
it is sent verbatim::

    plivo://MAXXXXXXXXXXXXXXXXXX:AUTH_TOKEN@+15550001111
    plivo://SAXXXXXXXXXXXXXXXXXX:AUTH_TOKEN@AcmeInc

Calls: ``POST {base}/v1/Account/{auth_id}/Message/`` (Basic auth with the Auth ID and
Token; JSON ``src``, ``dst`` in ``+E.164``, ``text``, and ``url`` + ``method: POST`` for
the status callback). The first ``message_uuid`` of the answer is kept.

Receipts: Plivo posts message status callbacks to ``/v1/receipts/{name}`` signed with
``X-Plivo-Signature-V3`` and ``X-Plivo-Signature-V3-Nonce``: base64 of HMAC-SHA256, keyed
by the Auth Token, over the URL Plivo called, then the fields — for a POST the URL
without its query, ``?``, its query sorted (``name=value`` joined by ``&``, then ``.``
if it had one), then each form field sorted by name as ``namevalue``; for a GET the URL
with its query sorted — then ``.`` and the nonce. The header may hold several signatures
separated by commas. ``Status`` delivered, read → delivered; failed, undelivered,
rejected → failed; queued, sent → sent. ``ErrorCode`` (Plivo's message error codes) is kept.

Answers → outcomes (Plivo's API responses, plivo.com/docs/messaging/api/response): Plivo
answers with an HTTP status and an ``error`` text, and no error code.

| answer                                     | outcome   |
|--------------------------------------------|-----------|
| 202 (or 200) with a ``message_uuid``       | sent      |
| 429 too many requests, 5xx server error    | temporary |
| 401 authentication failed, 403             | broken    |
| 404 no such account (the Auth ID), 405     | broken    |
| 400 a parameter is missing or invalid (dst)| permanent |
| any other 4xx                              | permanent |
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import msgspec

from otpgate.core.messages import segments
from otpgate.drivers import http
from otpgate.drivers.base import (
    Driver,
    DriverContext,
    Message,
    Receipt,
    ReceiptRequest,
    ReceiptStatus,
    SendReceipt,
)
from otpgate.errors import (
    BrokenDriverError,
    ConfigurationError,
    DeliveryError,
    Forbidden,
    InvalidRequest,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from otpgate.urls import Url

API: Final = "https://api.plivo.com"
CHANNELS: Final = frozenset({"sms"})
_OPTIONS = frozenset({"from"})
_USAGE = "plivo://AUTH_ID:AUTH_TOKEN@FROM (see the driver table)"
_BROKEN_STATUSES = frozenset({404, 405})
_STATUS: dict[str, ReceiptStatus] = {
    "queued": "sent", "sent": "sent", "delivered": "delivered", "read": "delivered",
    "failed": "failed", "undelivered": "failed", "rejected": "failed",
}


class _Queued(msgspec.Struct):
    message_uuid: list[str]


class PlivoDriver:
    """Sends through one Plivo account and sender; verifies its V3-signed callbacks."""

    channels = CHANNELS

    def __init__(self, *, name: str, auth_id: str, auth_token: str, sender: str,
                 base_url: str, timeout: float, callback: str | None, raw_url: Url) -> None:
        self.name = name
        self._auth_id = auth_id
        self._auth_token = auth_token
        self._sender = sender
        self._callback = callback
        self._raw = raw_url
        self._http = http.client(base_url, timeout, auth=(auth_id, auth_token))

    async def send(self, message: Message) -> SendReceipt:
        payload = {"src": self._sender, "dst": message.to, "text": message.body}
        if self._callback:
            payload |= {"url": self._callback, "method": "POST"}
        response = await http.request(self._http, self.name, "POST",
                                      f"/v1/Account/{self._auth_id}/Message/", json=payload)
        if response.status_code in (200, 202):
            try:
                uuids = msgspec.json.decode(response.content, type=_Queued).message_uuid
            except msgspec.DecodeError:
                uuids = []
            if not uuids:
                raise TemporaryDeliveryError(f"{self.name}: answer without a message_uuid")
            encoding = segments(message.body)
            return SendReceipt(uuids[0], segments=encoding.parts,
                               encoding=encoding.encoding.value)
        raise self._failure(response)

    def _failure(self, response: httpx.Response) -> DeliveryError:
        shared = http.status_outcome(self.name, response)
        if shared is not None:
            return shared
        status = response.status_code
        if status in _BROKEN_STATUSES:
            return BrokenDriverError(f"{self.name}: Plivo answered HTTP {status} (the Auth ID "
                                     "or base_url)")
        return PermanentDeliveryError(f"{self.name}: Plivo refused the message (HTTP {status})")

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        signature = request.headers.get("x-plivo-signature-v3")
        nonce = request.headers.get("x-plivo-signature-v3-nonce")
        params = http.callback_fields(request) if request.method == "POST" else {}
        if not signature or not nonce or not self._signed(request.method, request.url,
                                                          params, nonce, signature):
            raise Forbidden("the X-Plivo-Signature-V3 does not verify")
        fields = ({k: v[-1] for k, v in params.items()} if request.method == "POST"
                  else dict(request.query))
        uuid = fields.get("MessageUUID")
        if not uuid:
            raise InvalidRequest("a Plivo message status callback names a MessageUUID")
        status = _STATUS.get(fields.get("Status", "").lower())
        if status is None:
            return []
        error = fields.get("ErrorCode", "").strip()
        return [Receipt(provider_id=uuid, status=status,
                        error_code=error if error.strip("0") else None)]  # "000": none

    def _signed(self, method: str, url: str, params: Mapping[str, list[str]], nonce: str,
                signature: str) -> bool:
        """Plivo's V3 scheme (see the module docstring)."""
        text = (_get_base(url, must_mark=False) if method == "GET"
                else _post_base(url, params)) + "." + nonce
        mac = hmac.new(self._auth_token.encode(), text.encode(), hashlib.sha256).digest()
        expected = base64.b64encode(mac)
        return any(hmac.compare_digest(expected, candidate.strip().encode("utf-8", "replace"))
                   for candidate in signature.split(","))

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _get_base(url: str, *, must_mark: bool) -> str:
    """The URL without its query, then ``?`` and the query sorted (``?`` even without a
    query when ``must_mark``: POST fields follow), then ``.`` when both a query and POST
    fields are signed."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    pairs = "&".join(f"{name}={value}" for name in sorted(query)
                     for value in sorted(query[name]))
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if pairs or must_mark:
        base += "?" + pairs
    if pairs and must_mark:
        base += "."
    return base


def _post_base(url: str, params: Mapping[str, list[str]]) -> str:
    fields = "".join(f"{name}{value}" for name in sorted(params)
                     for value in sorted(params[name]))
    return _get_base(url, must_mark=bool(params)) + fields


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    sender = options.get("from") or url.host
    if not url.user or not url.password or not sender:
        raise ConfigurationError(f"the plivo driver's URL is {_USAGE}")
    return PlivoDriver(
        name=ctx.name, auth_id=url.user, auth_token=url.password, sender=sender,
        base_url=http.base_url_of(options, API), timeout=http.timeout_of(options),
        callback=ctx.receipt_url, raw_url=url)
