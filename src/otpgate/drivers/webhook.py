"""``webhook+https://`` — hand every message to a service of your own, signed as Standard
Webhooks (standardwebhooks.com), on any channel.

Credentials: a secret you generate, ``whsec_`` followed by base64 of at least 16 random
bytes (``python -c "import base64, os; print('whsec_' + base64.b64encode(os.urandom(32))
.decode())"``), shared with the receiving service, which verifies each request with a
Standard Webhooks library (``standardwebhooks`` for Python, ``svix``, …). ``webhook+http://``
is accepted only to a loopback host (a service on the same machine)::

    webhook+https://hooks.example.com/otp?secret=whsec_BASE64_OF_THE_SECRET
    webhook+http://127.0.0.1:9000/otp?secret=whsec_…&name=relay&timeout=5

Call: ``POST`` to the URL (``base_url=`` replaces its origin) with JSON ``{id, otp_id,
send_no, channel, to, body, subject, expires_at, idempotency_key}`` and the headers
``webhook-id`` (= ``id``, the same for every attempt of a send), ``webhook-timestamp``
and ``webhook-signature`` (``v1,`` base64 HMAC-SHA256 of ``id.timestamp.body``, keyed by
the secret). A user and password in the URL are sent as Basic auth.

Answers → outcomes:

- 2xx: sent; the provider id is the answer's JSON ``id`` when it has one, else ``id``.
- temporary: 429 (``Retry-After`` honoured), 5xx, no connection; unknown: no answer.
- broken: 401, 403, and 3xx (the URL has moved: the driver is misconfigured).
- permanent: any other 4xx.

Receipts: the service may report what became of a message to
``{OTPGATE_PUBLIC_URL}/v1/receipts/{name}`` (``name`` is ``webhook`` unless ``name=``
says otherwise), as a Standard Webhooks request signed with the same secret, body
``{"id": "<the provider id>", "status": "delivered" | "failed", "error_code": "…"}``
(``error_code`` optional). A request whose timestamp is more than 5 minutes away from now,
or whose signature does not verify, is refused with 403.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import msgspec
from standardwebhooks.webhooks import Webhook

from otpgate import urls
from otpgate.clock import Clock, isoformat
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
    Forbidden,
    InvalidRequest,
    PermanentDeliveryError,
)
from otpgate.urls import Url

CHANNELS: Final = frozenset({"sms", "email", "voice", "whatsapp"})
TOLERANCE: Final = 300.0
"""Seconds a signed receipt's timestamp may be away from now (as Standard Webhooks)."""
_OPTIONS = frozenset({"secret"})
_USAGE = "webhook+https://HOST/PATH?secret=whsec_… (webhook+http:// only to loopback)"
_STATUS: dict[str, ReceiptStatus] = {"sent": "sent", "delivered": "delivered",
                                     "failed": "failed"}


class _Answer(msgspec.Struct):
    id: str | None = None


class WebhookDriver:
    """POSTs each message, signed, to one endpoint; verifies the receipts it reports."""

    channels = CHANNELS

    def __init__(self, *, name: str, target: str, secret: str, clock: Clock,
                 timeout: float, auth: tuple[str, str] | None, raw_url: Url) -> None:
        self.name = name
        self._signer = _signer(secret)
        self._clock = clock
        self._raw = raw_url
        parts = urlsplit(target)
        self._path = parts.path or "/"
        self._http = http.client(f"{parts.scheme}://{parts.netloc}", timeout, auth=auth)

    async def send(self, message: Message) -> SendReceipt:
        webhook_id = stable_id("msg", f"{self.name}:{message.idempotency_key}")
        body = msgspec.json.encode({
            "id": webhook_id, "otp_id": message.otp_id, "send_no": message.send_no,
            "channel": message.channel, "to": message.to, "body": message.body,
            "subject": message.subject, "expires_at": isoformat(message.expires_at),
            "idempotency_key": message.idempotency_key,
        })
        timestamp = int(self._clock.now())
        signature = self._signer.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC),
                                      body.decode())
        response = await http.request(self._http, self.name, "POST", self._path,
                                      content=body, headers={
                                          "content-type": "application/json",
                                          "webhook-id": webhook_id,
                                          "webhook-timestamp": str(timestamp),
                                          "webhook-signature": signature})
        status = response.status_code
        if 200 <= status < 300:
            return SendReceipt(_answer_id(response.content) or webhook_id)
        shared = http.status_outcome(self.name, response)
        if shared is not None:
            raise shared
        if 300 <= status < 400:
            raise BrokenDriverError(f"{self.name}: HTTP {status}: the endpoint has moved")
        raise PermanentDeliveryError(f"{self.name}: HTTP {status}: the endpoint refused "
                                     "the message")

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        self._verify(request)
        report = callbacks.json_object(request.body, "a webhook receipt")
        provider_id, status = report.get("id"), _STATUS.get(str(report.get("status")))
        if not isinstance(provider_id, str) or not provider_id or status is None:
            raise InvalidRequest('a webhook receipt is {"id": …, "status": "delivered" | '
                                 '"failed", "error_code": …}')
        code = report.get("error_code")
        return [Receipt(provider_id=provider_id, status=status,
                        error_code=str(code)[:64] if code not in (None, "") else None)]

    def _verify(self, request: ReceiptRequest) -> None:
        """Standard Webhooks verification, against this driver's clock."""
        webhook_id = request.headers.get("webhook-id")
        raw_time = request.headers.get("webhook-timestamp", "")
        signatures = request.headers.get("webhook-signature")
        if not webhook_id or not signatures or not raw_time.isdigit():
            raise Forbidden("the receipt is not signed as a Standard Webhook")
        timestamp = int(raw_time)
        if abs(self._clock.now() - timestamp) > TOLERANCE:
            raise Forbidden("the receipt's webhook-timestamp is too far from now")
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise Forbidden("the receipt's signature does not verify") from None
        expected = self._signer.sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), text)
        for candidate in signatures.split():
            if hmac.compare_digest(candidate.encode(), expected.encode()):
                return
        raise Forbidden("the receipt's signature does not verify")

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _signer(secret: str) -> Webhook:
    if not secret.startswith("whsec_"):
        raise ConfigurationError("the webhook secret is whsec_ followed by base64")
    encoded = secret.removeprefix("whsec_").rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("the webhook secret is whsec_ followed by base64") from None
    if len(key) < 16:
        raise ConfigurationError("the webhook secret must hold at least 16 bytes")
    return Webhook(key)


def _answer_id(content: bytes) -> str | None:
    try:
        answer = msgspec.json.decode(content, type=_Answer)
    except msgspec.DecodeError:
        return None
    if answer.id and len(answer.id) <= 255:
        return answer.id
    return None



def _target(url: Url, base_url: str | None) -> str:
    """The endpoint: the URL without ``webhook+`` and its options, its origin replaced
    by ``base_url`` when given; ``http`` only to a loopback host."""
    raw = urlsplit(url.raw)
    path = raw.path or "/"
    target = f"{url.scheme.removeprefix('webhook+')}://{raw.netloc.rpartition('@')[2]}{path}"
    if base_url:
        target = base_url.rstrip("/") + path
    parts = urlsplit(target)
    if parts.scheme == "http" and not urls.is_loopback(parts.hostname or ""):
        raise ConfigurationError("webhook+http:// only to a loopback host; use "
                                 "webhook+https:// elsewhere")
    return target


def from_url(url: Url, ctx: DriverContext) -> Driver:
    if url.scheme not in ("webhook+https", "webhook+http") or not url.host:
        raise ConfigurationError(f"the webhook driver's URL is {_USAGE}")
    options = http.http_options(url, _OPTIONS, _USAGE)
    secret = options.get("secret")
    if not secret:
        raise ConfigurationError(f"the webhook driver needs secret=whsec_…; {_USAGE}")
    base = http.base_url_of(options, None) if options.get("base_url") else None
    auth = (url.user, url.password or "") if url.user else None
    return WebhookDriver(name=ctx.name, target=_target(url, base), secret=secret,
                         clock=ctx.clock, timeout=http.timeout_of(options), auth=auth,
                         raw_url=url)
