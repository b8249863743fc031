"""``vonage://`` — SMS through Vonage's SMS API (formerly Nexmo).

Credentials: the API key and API secret at the top of the Vonage API Dashboard
(dashboard.nexmo.com). Delivery receipts are verified with the account's *signature
secret* and its signing method (Dashboard → Settings → "Signature secret"; signed webhooks
are switched on by Vonage support). The sender is an alphanumeric sender id, or a Vonage
number as Vonage writes numbers (digits without ``+``); it is sent verbatim::

    vonage://API_KEY:API_SECRET@AcmeInc
    vonage://API_KEY:API_SECRET@15550001111?signature_secret=SIG_SECRET&signature_method=sha256

Calls: ``POST {base}/sms/json`` (Basic auth; form ``from``, ``to`` without ``+``, ``text``,
``type=unicode`` when the text needs UCS-2, ``callback`` — the receipt URL, when it fits
Vonage's 100 characters — and ``client-ref``, the send's idempotency key when it fits 40).
A long text is split by Vonage: the first part's ``message-id`` is kept.

Receipts: Vonage delivery receipts (GET query, POST form or POST JSON, as the dashboard
says) to ``/v1/receipts/{name}``, signed: ``sig`` is, over every other field sorted by
name as ``&name=value`` (``&`` and ``=`` in values replaced by ``_``), either the MD5 of
that text followed by the secret (``md5hash``, Vonage's default) or its HMAC keyed by the
secret (``md5``, ``sha1``, ``sha256``, ``sha512``), in hex. Its ``timestamp`` must be
within five minutes. ``status`` delivered → delivered; expired, failed, rejected → failed;
accepted, buffered, unknown → sent. ``err-code`` is kept.

Answers → outcomes (Vonage's SMS API status codes, developer.vonage.com/api-errors/sms).
Every answer is HTTP 200: the outcome is in ``messages[].status``.

| status | meaning                                          | outcome   |
|--------|--------------------------------------------------|-----------|
| 0      | accepted                                         | sent      |
| 1      | throttled                                        | temporary |
| 5      | internal error                                   | temporary |
| 10     | too many existing binds                          | temporary |
| 4      | invalid credentials                              | broken    |
| 8      | partner account barred                           | broken    |
| 9      | partner quota exceeded (no credit)               | broken    |
| 11     | account not enabled for HTTP                     | broken    |
| 14     | invalid signature                                | broken    |
| 15     | invalid sender address                           | broken    |
| 23     | invalid callback URL                             | broken    |
| 32     | signature and API secret disallowed              | broken    |
| 2, 3   | missing / invalid parameters                     | permanent |
| 6      | invalid message (e.g. an unknown number prefix)  | permanent |
| 7      | number barred                                    | permanent |
| 12     | message too long                                 | permanent |
| 22     | invalid network code                             | permanent |
| 29     | non-whitelisted destination (trial account)      | permanent |
| 33     | number de-activated                              | permanent |
| other  |                                                  | permanent |

HTTP statuses other than 200: 429 and 5xx temporary, 401 and 403 broken (``http``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any, Final

import httpx
import msgspec

from otpgate.clock import Clock
from otpgate.core.messages import Encoding, segments
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

API: Final = "https://rest.nexmo.com"
CHANNELS: Final = frozenset({"sms"})
MAX_CALLBACK: Final = 100
MAX_CLIENT_REF: Final = 40
_OPTIONS = frozenset({"from", "signature_secret", "signature_method"})
_USAGE = ("vonage://API_KEY:API_SECRET@FROM[?signature_secret=…&signature_method="
          "md5hash|md5|sha1|sha256|sha512] (see the driver table)")
_TEMPORARY = frozenset({1, 5, 10})
_BROKEN = frozenset({4, 8, 9, 11, 14, 15, 23, 32})
_METHODS: dict[str, Callable[[], Any] | None] = {
    "md5hash": None, "md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
_DLR_STATUS: dict[str, ReceiptStatus] = {
    "delivered": "delivered", "expired": "failed", "failed": "failed", "rejected": "failed",
    "accepted": "sent", "buffered": "sent", "unknown": "sent",
}


class _Part(msgspec.Struct):
    status: str | int
    message_id: str | None = msgspec.field(default=None, name="message-id")


class _Answer(msgspec.Struct):
    messages: list[_Part]


class VonageDriver:
    """Sends through one Vonage account and sender; verifies its signed delivery receipts."""

    channels = CHANNELS

    def __init__(self, *, name: str, api_key: str, api_secret: str, sender: str,
                 signature_secret: str | None, signature_method: str, base_url: str,
                 timeout: float, callback: str | None, clock: Clock, raw_url: Url) -> None:
        self.name = name
        self._sender = sender
        self._signature_secret = signature_secret
        self._hash = _METHODS[signature_method]
        self._callback = callback
        self._clock = clock
        self._raw = raw_url
        self._http = http.client(base_url, timeout, auth=(api_key, api_secret))

    async def send(self, message: Message) -> SendReceipt:
        encoding = segments(message.body)
        form = {"from": self._sender, "to": message.to.removeprefix("+"),
                "text": message.body}
        if encoding.encoding is Encoding.UCS2:
            form["type"] = "unicode"
        if self._callback:
            form["callback"] = self._callback
        if len(message.idempotency_key) <= MAX_CLIENT_REF:
            form["client-ref"] = message.idempotency_key
        response = await http.request(self._http, self.name, "POST", "/sms/json", data=form)
        if response.status_code != 200:
            raise self._http_failure(response)
        try:
            parts = msgspec.json.decode(response.content, type=_Answer).messages
        except msgspec.DecodeError:
            raise TemporaryDeliveryError(f"{self.name}: an answer Vonage does not give") \
                from None
        for part in parts:
            if str(part.status) != "0":
                raise self._failure(str(part.status))
        if not parts or not parts[0].message_id:
            raise TemporaryDeliveryError(f"{self.name}: answer without a message-id")
        return SendReceipt(parts[0].message_id, segments=len(parts),
                           encoding=encoding.encoding.value)

    def _failure(self, status: str) -> DeliveryError:
        code = int(status) if status.isdigit() else None
        if code in _TEMPORARY:
            return TemporaryDeliveryError(f"{self.name}: Vonage status {status}", status)
        if code in _BROKEN:
            return BrokenDriverError(
                f"{self.name}: Vonage status {status} (credentials, account or sender)", status)
        return PermanentDeliveryError(f"{self.name}: Vonage refused the message "
                                      f"(status {status})", status)

    def _http_failure(self, response: httpx.Response) -> DeliveryError:
        shared = http.status_outcome(self.name, response)
        if shared is not None:
            return shared
        return PermanentDeliveryError(
            f"{self.name}: Vonage refused the message (HTTP {response.status_code})")

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        if not self._signature_secret:
            raise Forbidden(f"{self.name} cannot check Vonage signatures: give "
                            "signature_secret=")
        fields = _receipt_fields(request)
        signature = fields.pop("sig", "")
        if not signature or not self._signed(fields, signature):
            raise Forbidden("the Vonage signature (sig) does not verify")
        http.check_fresh(fields.get("timestamp"), self._clock.now(), "Vonage")
        message_id = fields.get("messageId")
        if not message_id:
            raise InvalidRequest("a Vonage delivery receipt names a messageId")
        status = _DLR_STATUS.get(fields.get("status", "").lower())
        if status is None:
            return []
        error = fields.get("err-code")
        return [Receipt(provider_id=message_id, status=status,
                        error_code=error if error and error != "0" else None)]

    def _signed(self, fields: dict[str, str], signature: str) -> bool:
        """Vonage's signed callbacks (see the module docstring)."""
        if self._signature_secret is None:
            return False
        text = "".join(f"&{name}={value.replace('&', '_').replace('=', '_')}"
                       for name, value in sorted(fields.items()))
        secret = self._signature_secret.encode()
        if self._hash is None:
            digest = hashlib.md5(text.encode() + secret).hexdigest()  # noqa: S324 (Vonage's)
        else:
            digest = hmac.new(secret, text.encode(), self._hash).hexdigest()
        return hmac.compare_digest(digest.encode(), signature.strip().lower().encode())

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _receipt_fields(request: ReceiptRequest) -> dict[str, str]:
    """A receipt's fields: the query of a GET, the form or the JSON object of a POST."""
    if request.method == "POST" and request.body.lstrip().startswith(b"{"):
        try:
            data = msgspec.json.decode(request.body, type=dict[str, Any])
        except msgspec.DecodeError:
            raise InvalidRequest("a Vonage receipt's JSON body is an object") from None
        return {name: value if isinstance(value, str) else msgspec.json.encode(value).decode()
                for name, value in data.items()}
    return {name: values[-1] for name, values in http.callback_fields(request).items()}


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    sender = options.get("from") or url.host
    if not url.user or not url.password or not sender:
        raise ConfigurationError(f"the vonage driver's URL is {_USAGE}")
    method = options.get("signature_method", "md5hash").lower()
    if method not in _METHODS:
        raise ConfigurationError(
            f"vonage signature_method is one of {', '.join(_METHODS)}; {_USAGE}")
    callback = ctx.receipt_url
    if callback and not options.get("signature_secret"):
        log.warning("%s: no signature_secret=, so Vonage's receipts could not be verified; "
                    "no receipt URL is given to Vonage", ctx.name)
        callback = None
    if callback and len(callback) > MAX_CALLBACK:
        log.warning("%s: the receipt URL is longer than Vonage's %d characters; set it as "
                    "the delivery receipt webhook in the Vonage dashboard instead",
                    ctx.name, MAX_CALLBACK)
        callback = None
    return VonageDriver(
        name=ctx.name, api_key=url.user, api_secret=url.password, sender=sender,
        signature_secret=options.get("signature_secret") or None, signature_method=method,
        base_url=http.base_url_of(options, API), timeout=http.timeout_of(options),
        callback=callback, clock=ctx.clock, raw_url=url)
