"""``twilio://`` — SMS, WhatsApp and voice calls through Twilio's Programmable Messaging and
Voice APIs.

Credentials: the Account SID and Auth Token on the Twilio Console's home page
(console.twilio.com), or an API key (Console → Account → API keys & tokens; its ``SK…``
sid and secret) with the account's sid in ``account_sid=``. The sender is a Twilio number
in E.164, an alphanumeric sender id, or a Messaging Service (``MG…``); WhatsApp needs a
WhatsApp-enabled sender and, outside a 24-hour session, an approved template
(``content_sid=HX…``, its first variable filled with the code)::

    twilio://ACXXXXXXXX:AUTH_TOKEN@+15550001111
    twilio://SKXXXXXXXX:KEY_SECRET@MGXXXXXXXX?account_sid=ACXXXXXXXX&auth_token=AUTH_TOKEN
    twilio://ACXXXXXXXX:AUTH_TOKEN@+15550001111?content_sid=HXXXXXXXXX&name=twilio-wa

Calls: ``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` (form ``To``,
``From`` or ``MessagingServiceSid``, ``Body`` or ``ContentSid`` + ``ContentVariables``,
``StatusCallback``) and ``…/Calls.json`` (``Twiml`` reading the code digit by digit,
twice). Receipts: Twilio posts the status callback to ``/v1/receipts/{name}`` signed with
``X-Twilio-Signature`` (HMAC-SHA1 of the public URL and the sorted form fields, keyed by
the account's Auth Token — with an API key, give it as ``auth_token=``).

Answers → outcomes (Twilio's error dictionary, twilio.com/docs/api/errors):

- 201 with a ``sid``: sent.
- temporary: 429, 5xx, 20429 (too many requests), 30001 (queue overflow), 21611 (the
  sender's queue is full).
- broken: 401, 403, 20003 (authenticate), 20005 (account not active), 20404 (no such
  account), 21212, 21606, 21659, 21660 (the sender is not valid for this account).
- permanent: 21211 (invalid 'To'), 21214 (cannot be reached), 21217, 21408 (region not
  enabled), 21610 (opted out), 21612 (not reachable by SMS), 21614 (not a mobile number),
  63003, and any other 4xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from html import escape
from typing import Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import msgspec

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

log = logging.getLogger(__name__)

API: Final = "https://api.twilio.com"
CHANNELS: Final = frozenset({"sms", "whatsapp", "voice"})
_OPTIONS = frozenset({"account_sid", "auth_token", "content_sid", "from"})
_USAGE = "twilio://ACCOUNT_SID:AUTH_TOKEN@FROM[?content_sid=HX…] (see the driver table)"
_TEMPORARY = frozenset({20429, 30001, 21611})
_BROKEN = frozenset({20003, 20005, 20404, 21212, 21606, 21659, 21660})
_MESSAGE_STATUS: dict[str, ReceiptStatus] = {
    "accepted": "sent", "scheduled": "sent", "queued": "sent", "sending": "sent",
    "sent": "sent", "delivered": "delivered", "read": "delivered",
    "undelivered": "failed", "failed": "failed", "canceled": "failed",
}
_CALL_STATUS: dict[str, ReceiptStatus] = {
    "queued": "sent", "initiated": "sent", "ringing": "sent", "in-progress": "sent",
    "completed": "delivered", "busy": "failed", "no-answer": "failed", "failed": "failed",
    "canceled": "failed",
}


class _Created(msgspec.Struct):
    sid: str


class _Error(msgspec.Struct):
    code: int | None = None


class TwilioDriver:
    """Sends through one Twilio account and sender; verifies its status callbacks."""

    channels = CHANNELS

    def __init__(self, *, name: str, account_sid: str, key_sid: str, secret: str,
                 sender: str, auth_token: str | None, content_sid: str | None,
                 base_url: str, timeout: float, callback: str | None, raw_url: Url) -> None:
        self.name = name
        self._account = account_sid
        self._sender = sender
        self._auth_token = auth_token
        self._content_sid = content_sid
        self._callback = callback
        self._raw = raw_url
        self._http = http.client(base_url, timeout, auth=(key_sid, secret))

    async def send(self, message: Message) -> SendReceipt:
        if message.channel == "voice":
            path, form = "Calls.json", self._call(message)
        else:
            path, form = "Messages.json", self._text(message)
        if self._callback:
            form["StatusCallback"] = self._callback
        response = await http.request(self._http, self.name, "POST",
                                      f"/2010-04-01/Accounts/{self._account}/{path}", data=form)
        if response.status_code in (200, 201):
            try:
                return SendReceipt(msgspec.json.decode(response.content, type=_Created).sid)
            except msgspec.DecodeError:
                raise TemporaryDeliveryError(f"{self.name}: answer without a sid") from None
        raise self._failure(response)

    def _text(self, message: Message) -> dict[str, str]:
        prefix = "whatsapp:" if message.channel == "whatsapp" else ""
        form = {"To": prefix + message.to}
        if self._sender.startswith("MG"):
            form["MessagingServiceSid"] = self._sender
        else:
            form["From"] = prefix + self._sender
        if message.channel == "whatsapp" and self._content_sid:
            form["ContentSid"] = self._content_sid
            form["ContentVariables"] = msgspec.json.encode({"1": message.code}).decode()
        else:
            form["Body"] = message.body
        return form

    def _call(self, message: Message) -> dict[str, str]:
        if self._sender.startswith("MG") or not self._sender.startswith("+"):
            raise PermanentDeliveryError(f"{self.name}: a call needs a phone number as sender")
        # The voice template reads the code digit by digit, and twice.
        twiml = (f'<Response><Say language="{escape(_voice_locale(message.locale))}">'
                 f'{escape(message.body)}</Say></Response>')
        return {"To": message.to, "From": self._sender, "Twiml": twiml}

    def _failure(self, response: httpx.Response) -> DeliveryError:
        try:
            code = msgspec.json.decode(response.content, type=_Error).code
        except msgspec.DecodeError:
            code = None
        label = str(code) if code is not None else None
        if code in _TEMPORARY:
            return TemporaryDeliveryError(f"{self.name}: Twilio error {code}", label,
                                          retry_after=http.retry_after(response))
        if code in _BROKEN:
            return BrokenDriverError(f"{self.name}: Twilio error {code} (account or sender)",
                                     label)
        shared = http.status_outcome(self.name, response, label)
        if shared is not None:
            return shared
        return PermanentDeliveryError(
            f"{self.name}: Twilio refused the message (HTTP {response.status_code}, "
            f"error {code})", label)

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        if not self._auth_token:
            raise Forbidden(f"{self.name} cannot check Twilio signatures: give auth_token=")
        params = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True) \
            if request.method == "POST" else {}
        if not self._signed(request.url, params, request.headers.get("x-twilio-signature")):
            raise Forbidden("the X-Twilio-Signature does not verify")
        fields = {k: v[-1] for k, v in params.items()} if params else dict(request.query)
        sid = fields.get("MessageSid") or fields.get("CallSid")
        if sid is None:
            raise InvalidRequest("a Twilio status callback names a MessageSid or a CallSid")
        if "MessageStatus" in fields:
            status = _MESSAGE_STATUS.get(fields["MessageStatus"])
        else:
            status = _CALL_STATUS.get(fields.get("CallStatus", ""))
        if status is None:
            return []
        return [Receipt(provider_id=sid, status=status,
                        error_code=fields.get("ErrorCode") or None)]

    def _signed(self, url: str, params: dict[str, list[str]], signature: str | None) -> bool:
        """Twilio's scheme: the URL, then each field name followed by its values, names
        and values sorted; HMAC-SHA1 with the Auth Token, base64. Twilio may have called
        the URL with or without its default port: both forms are tried."""
        if not signature or self._auth_token is None or not signature.isascii():
            return False
        text = "".join(name + value for name in sorted(params)
                       for value in sorted(set(params[name])))
        key = self._auth_token.encode()
        for candidate in _port_variants(url):
            mac = hmac.new(key, (candidate + text).encode(), hashlib.sha1).digest()
            if hmac.compare_digest(base64.b64encode(mac), signature.strip().encode()):
                return True
        return False

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _port_variants(url: str) -> list[str]:
    """``url`` as given, and with its default port added or removed."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None:
        return [url]
    if parts.port is None:
        return [url, urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))]
    if parts.port == default:
        return [url, urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]))]
    return [url]


def _voice_locale(locale: str) -> str:
    """Twilio's ``<Say>`` languages are ``en-US`` shaped; a bare language gets a default
    region."""
    if "-" in locale:
        return locale
    return {"en": "en-US", "es": "es-ES", "fr": "fr-FR", "de": "de-DE", "pt": "pt-BR",
            "hi": "hi-IN", "ar": "arb", "zh": "cmn-CN", "ja": "ja-JP", "ru": "ru-RU"}.get(
        locale, "en-US")


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    sender = options.get("from") or url.host
    if not url.user or not url.password or not sender:
        raise ConfigurationError(f"the twilio driver's URL is {_USAGE}")
    key_sid = url.user
    account = options.get("account_sid") or key_sid
    if key_sid.startswith("SK") and not options.get("account_sid"):
        raise ConfigurationError("a twilio API key (SK…) needs account_sid=AC…")
    if not account.startswith("AC"):
        raise ConfigurationError("the twilio account sid starts with AC")
    auth_token = options.get("auth_token") or (url.password if key_sid.startswith("AC")
                                              else None)
    callback = ctx.receipt_url
    if callback and auth_token is None:
        log.warning("%s: an API key without auth_token=, so Twilio's status callbacks could "
                    "not be verified; no StatusCallback is given to Twilio", ctx.name)
        callback = None
    return TwilioDriver(
        name=ctx.name, account_sid=account, key_sid=key_sid, secret=url.password,
        sender=sender, auth_token=auth_token, content_sid=options.get("content_sid"),
        base_url=http.base_url_of(options, API), timeout=http.timeout_of(options),
        callback=callback, raw_url=url)
