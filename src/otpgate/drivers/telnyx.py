"""``telnyx://`` — SMS through Telnyx's Messaging API (v2).

Credentials: an API key from the Telnyx Mission Control Portal (Account → API Keys). The
sender is a Telnyx number in ``+E.164`` assigned to a messaging profile, a short code, or
an alphanumeric sender id (which needs ``messaging_profile_id=``); it is sent verbatim.
Delivery webhooks are verified with the account's public key (Portal → Keys & Credentials →
Public Key), given base64 as ``public_key=`` (percent-encode its ``+``, ``/`` and ``=``)::

    telnyx://KEYXXXXXXXX@+15550001111?public_key=BASE64_PUBLIC_KEY
    telnyx://KEYXXXXXXXX@AcmeInc?messaging_profile_id=400174af-…&public_key=…

Calls: ``POST {base}/v2/messages`` (``Authorization: Bearer API_KEY``; JSON ``from``,
``to`` in ``+E.164``, ``text``, ``webhook_url`` — the receipt URL — and
``messaging_profile_id`` when given). The answer's ``data.id`` is kept.

Receipts: Telnyx posts message webhooks (``message.sent``, ``message.finalized``) to
``/v1/receipts/{name}``, signed with Ed25519: ``telnyx-signature-ed25519`` is the base64
signature of ``{telnyx-timestamp}|{raw body}``; the timestamp must be within five minutes.
``data.payload.to[0].status`` delivered → delivered; sending_failed, delivery_failed,
expired → failed; queued, sending, sent, delivery_unconfirmed → sent. The first
``data.payload.errors[].code`` is kept.

Answers → outcomes (Telnyx's API and messaging error codes, ``errors[].code``;
developers.telnyx.com/docs/messaging/messages/error-codes):

| answer                                                          | outcome   |
|-----------------------------------------------------------------|-----------|
| 200 with ``data.id``                                            | sent      |
| 429, 5xx; 10007 unexpected error, 10008 request timeout,        | temporary |
| 10011 too many requests, 40318 message queue full               |           |
| 401, 403; 10009 authentication failed, 10010 authorization      | broken    |
| failed, 40305 invalid 'from' address                            |           |
| 10001 inactive number, 10002 invalid number, 10016 not +E.164,  | permanent |
| 40300 blocked by the recipient's STOP, 40310 invalid 'to', any  |           |
| other 4xx                                                       |           |
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Final

import httpx
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otpgate.clock import Clock
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

API: Final = "https://api.telnyx.com"
CHANNELS: Final = frozenset({"sms"})
log = logging.getLogger(__name__)

_OPTIONS = frozenset({"from", "public_key", "messaging_profile_id"})
_USAGE = ("telnyx://API_KEY@FROM[?public_key=BASE64&messaging_profile_id=…] "
          "(see the driver table)")
_TEMPORARY = frozenset({"10007", "10008", "10011", "40318"})
_BROKEN = frozenset({"10009", "10010", "40305"})
_EVENTS = frozenset({"message.sent", "message.finalized"})
_STATUS: dict[str, ReceiptStatus] = {
    "queued": "sent", "sending": "sent", "sent": "sent", "delivery_unconfirmed": "sent",
    "delivered": "delivered", "sending_failed": "failed", "delivery_failed": "failed",
    "expired": "failed",
}


class _Sent(msgspec.Struct):
    id: str
    parts: int | None = None


class _Answer(msgspec.Struct):
    data: _Sent


class _Error(msgspec.Struct):
    code: str | int | None = None


class _Errors(msgspec.Struct):
    errors: list[_Error] = msgspec.field(default_factory=list)


class _To(msgspec.Struct):
    status: str = ""


class _Payload(msgspec.Struct):
    id: str = ""
    to: list[_To] = msgspec.field(default_factory=list)
    errors: list[_Error] = msgspec.field(default_factory=list)


class _Data(msgspec.Struct):
    event_type: str = ""
    payload: _Payload | None = None


class _Event(msgspec.Struct):
    data: _Data


class TelnyxDriver:
    """Sends through one Telnyx account and sender; verifies its Ed25519-signed webhooks."""

    channels = CHANNELS

    def __init__(self, *, name: str, api_key: str, sender: str, profile: str | None,
                 public_key: Ed25519PublicKey | None, base_url: str, timeout: float,
                 callback: str | None, clock: Clock, raw_url: Url) -> None:
        self.name = name
        self._sender = sender
        self._profile = profile
        self._public_key = public_key
        self._callback = callback
        self._clock = clock
        self._raw = raw_url
        self._http = http.client(base_url, timeout,
                                 headers={"Authorization": f"Bearer {api_key}"})

    async def send(self, message: Message) -> SendReceipt:
        payload = {"from": self._sender, "to": message.to, "text": message.body}
        if self._profile:
            payload["messaging_profile_id"] = self._profile
        if self._callback:
            payload["webhook_url"] = self._callback
        response = await http.request(self._http, self.name, "POST", "/v2/messages",
                                      json=payload)
        if response.status_code in (200, 201, 202):
            try:
                sent = msgspec.json.decode(response.content, type=_Answer).data
            except msgspec.DecodeError:
                raise TemporaryDeliveryError(f"{self.name}: answer without a data.id") \
                    from None
            encoding = segments(message.body)
            return SendReceipt(sent.id, segments=sent.parts or encoding.parts,
                               encoding=encoding.encoding.value)
        raise self._failure(response)

    def _failure(self, response: httpx.Response) -> DeliveryError:
        try:
            errors = msgspec.json.decode(response.content, type=_Errors).errors
        except msgspec.DecodeError:
            errors = []
        code = str(errors[0].code) if errors and errors[0].code is not None else None
        if code in _TEMPORARY:
            return TemporaryDeliveryError(f"{self.name}: Telnyx error {code}", code,
                                          retry_after=http.retry_after(response))
        if code in _BROKEN:
            return BrokenDriverError(f"{self.name}: Telnyx error {code} (key or sender)", code)
        shared = http.status_outcome(self.name, response, code)
        if shared is not None:
            return shared
        return PermanentDeliveryError(
            f"{self.name}: Telnyx refused the message (HTTP {response.status_code}, "
            f"error {code})", code)

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        if self._public_key is None:
            raise Forbidden(f"{self.name} cannot check Telnyx signatures: give public_key=")
        timestamp = request.headers.get("telnyx-timestamp")
        if not self._signed(timestamp, request.body,
                            request.headers.get("telnyx-signature-ed25519")):
            raise Forbidden("the telnyx-signature-ed25519 does not verify")
        http.check_fresh(timestamp, self._clock.now(), "Telnyx")
        try:
            data = msgspec.json.decode(request.body, type=_Event).data
        except msgspec.DecodeError:
            raise InvalidRequest("not a Telnyx webhook (data.event_type, data.payload)") \
                from None
        if data.event_type not in _EVENTS or data.payload is None:
            return []
        payload = data.payload
        if not payload.id or not payload.to:
            raise InvalidRequest("a Telnyx message webhook names data.payload.id and .to")
        status = _STATUS.get(payload.to[0].status)
        if status is None:
            return []
        code = payload.errors[0].code if payload.errors else None
        return [Receipt(provider_id=payload.id, status=status,
                        error_code=str(code) if code is not None else None)]

    def _signed(self, timestamp: str | None, body: bytes, signature: str | None) -> bool:
        if not timestamp or not signature or self._public_key is None:
            return False
        try:
            raw = base64.b64decode(signature, validate=True)
            self._public_key.verify(raw, timestamp.encode() + b"|" + body)
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _public_key(raw: str | None) -> Ed25519PublicKey | None:
    """The account's Ed25519 public key, from its base64 (a ``+`` read from a query as a
    space is put back)."""
    if not raw:
        return None
    try:
        key = base64.b64decode(raw.strip().replace(" ", "+"), validate=True)
        return Ed25519PublicKey.from_public_bytes(key)
    except (binascii.Error, ValueError):
        raise ConfigurationError("telnyx public_key is the account's Ed25519 public key, "
                                 "32 bytes in base64") from None


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    sender = options.get("from") or url.host
    if not url.user or url.password is not None or not sender:
        raise ConfigurationError(f"the telnyx driver's URL is {_USAGE}")
    public_key = _public_key(options.get("public_key"))
    callback = ctx.receipt_url
    if callback and public_key is None:
        log.warning("%s: no public_key=, so Telnyx's webhooks could not be verified; no "
                    "webhook_url is given to Telnyx", ctx.name)
        callback = None
    return TelnyxDriver(
        name=ctx.name, api_key=url.user, sender=sender,
        profile=options.get("messaging_profile_id") or None, public_key=public_key,
        base_url=http.base_url_of(options, API), timeout=http.timeout_of(options),
        callback=callback, clock=ctx.clock, raw_url=url)
