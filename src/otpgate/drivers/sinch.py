"""``sinch://`` — SMS through the Sinch SMS REST API (XMS batches).

Credentials: in the Sinch Customer Dashboard (dashboard.sinch.com → SMS → APIs), each
*service plan* shows its Service Plan ID and API token, and the region it lives in (us,
eu, au, br, ca). The sender is a number or short code rented in that service plan, or an
alphanumeric sender where the destination allows one::

    sinch://SERVICE_PLAN_ID:API_TOKEN@+15550001111?region=eu&callback_token=LONG_RANDOM
    sinch://SERVICE_PLAN_ID:API_TOKEN@Acme?region=us&callback_secret=HMAC_SECRET

Call: ``POST {base}/xms/v1/{SERVICE_PLAN_ID}/batches`` with ``Authorization: Bearer
API_TOKEN`` and JSON ``from``, ``to: ["+E.164"]``, ``body``, ``delivery_report:
per_recipient``, ``callback_url``, ``client_reference`` (the send's idempotency key). The
base is ``https://{region}.sms.api.sinch.com`` (``region=``, default ``us``) unless
``base_url=`` is given. One recipient per batch: the batch id is the provider id.

Receipts: Sinch posts ``recipient_delivery_report_sms`` callbacks (``batch_id``,
``status``, ``code``) to ``/v1/receipts/{name}``. The SMS REST API signs callbacks only
where Sinch has enabled HMAC for the service plan (ask the account manager; the callback
URL is then the service plan's, set in the dashboard to
``{OTPGATE_PUBLIC_URL}/v1/receipts/{name}``): give that secret as ``callback_secret=`` and
the ``X-Sinch-Webhook-Signature`` (HMAC-SHA256, base64, of ``body.nonce.timestamp``) is
checked. Otherwise give ``callback_token=``: the driver passes ``callback_url`` with
``?token=…`` per batch and checks it in constant time. With neither, no delivery report is
asked for and callbacks are refused.

Answers → outcomes (developers.sinch.com/docs/sms/api-reference/status-codes; error
bodies are ``{"code": …, "text": …}``):

- 201 with an ``id``: sent.
- permanent: 400 ``syntax_invalid_parameter_format`` (a badly formatted number or sender),
  ``syntax_constraint_violation``, ``syntax_invalid_json``, and any other 4xx.
- broken: 401 ``unauthorized``, 403 (``forbidden``, ``unknown_campaign``,
  ``missing_callback_url``: the service plan refuses this driver's set-up), 404 (no such
  service plan at this region).
- temporary: 429 ``too_many_requests`` (``Retry-After`` honoured), 5xx.

Delivery reports → receipts: ``Delivered`` → delivered; ``Failed``, ``Rejected``,
``Expired``, ``Aborted``, ``Cancelled``, ``Deleted`` → failed (with Sinch's ``code``);
``Queued``, ``Dispatched``, ``Unknown`` → sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, Final

import httpx
import msgspec

from otpgate.drivers import callbacks, http
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

REGIONS: Final = ("us", "eu", "au", "br", "ca")
CHANNELS: Final = frozenset({"sms"})
_OPTIONS = frozenset({"region", "from", callbacks.OPTION, "callback_secret"})
_USAGE = ("sinch://SERVICE_PLAN_ID:API_TOKEN@FROM?region=us|eu|au|br|ca"
          "[&callback_token=…|&callback_secret=…]")
_PLAN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_STATUS: dict[str, ReceiptStatus] = {
    "queued": "sent", "dispatched": "sent", "unknown": "sent", "delivered": "delivered",
    "failed": "failed", "rejected": "failed", "expired": "failed", "aborted": "failed",
    "cancelled": "failed", "deleted": "failed",
}


class _Created(msgspec.Struct):
    id: str


class _Error(msgspec.Struct):
    code: str | int | None = None


class SinchDriver:
    """Sends through one Sinch service plan and sender; reads its delivery reports."""

    channels = CHANNELS

    def __init__(self, *, name: str, plan: str, api_token: str, sender: str, base_url: str,
                 timeout: float, callback: str | None, token: str | None,
                 secret: str | None, raw_url: Url) -> None:
        self.name = name
        self.origin = base_url
        """The API origin in use (the region's, or ``base_url=``)."""
        self._plan = plan
        self._sender = sender
        self._callback = callback
        self._token = token
        self._secret = secret
        self._raw = raw_url
        self._http = http.client(base_url, timeout,
                                 headers={"Authorization": f"Bearer {api_token}"})

    async def send(self, message: Message) -> SendReceipt:
        batch: dict[str, Any] = {
            "from": self._sender, "to": [message.to], "body": message.body,
            "client_reference": message.idempotency_key,
            "delivery_report": "per_recipient" if self._token or self._secret else "none",
        }
        if self._callback:
            batch["callback_url"] = self._callback
        response = await http.request(self._http, self.name, "POST",
                                      f"/xms/v1/{self._plan}/batches", json=batch)
        if response.status_code in (200, 201):
            try:
                return SendReceipt(msgspec.json.decode(response.content, type=_Created).id)
            except msgspec.DecodeError:
                raise TemporaryDeliveryError(f"{self.name}: answer without a batch id") \
                    from None
        raise self._failure(response)

    def _failure(self, response: httpx.Response) -> DeliveryError:
        try:
            raw = msgspec.json.decode(response.content, type=_Error).code
        except msgspec.DecodeError:
            raw = None
        code = str(raw)[:64] if raw is not None else None
        shared = http.status_outcome(self.name, response, code)
        if shared is not None:
            return shared
        if response.status_code == 404:
            return BrokenDriverError(f"{self.name}: Sinch knows no such service plan here "
                                     "(HTTP 404; check the region)", code)
        return PermanentDeliveryError(
            f"{self.name}: Sinch refused the batch (HTTP {response.status_code}, "
            f"code {code})", code)

    async def read_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        if self._secret:
            if not _signed(self._secret, request):
                raise Forbidden("the X-Sinch-Webhook-Signature does not verify")
        else:
            callbacks.check_token(request, self._token, self.name)
        report = callbacks.json_object(request.body, "a Sinch delivery report")
        kind = report.get("type")
        batch = report.get("batch_id")
        if kind in ("recipient_delivery_report_sms", "recipient_delivery_report_mms"):
            entries = [report]
        elif kind in ("delivery_report_sms", "delivery_report_mms"):
            entries = [e for e in report.get("statuses") or [] if isinstance(e, dict)]
        else:
            return []  # an inbound message or another callback: nothing to apply
        if not isinstance(batch, str) or not batch:
            raise InvalidRequest("a Sinch delivery report names its batch_id")
        receipts = []
        for entry in entries:
            status = _STATUS.get(str(entry.get("status", "")).lower())
            if status is None:
                continue
            code = entry.get("code")
            receipts.append(Receipt(
                provider_id=batch, status=status,
                error_code=str(code)[:64] if status == "failed" and code is not None
                else None))
        return receipts

    def url(self, privacy: bool = True) -> str:
        return self._raw.masked if privacy else self._raw.raw

    async def close(self) -> None:
        await self._http.aclose()


def _signed(secret: str, request: ReceiptRequest) -> bool:
    """Sinch's callback signature: HMAC-SHA256 keyed by the secret over the raw body, the
    nonce and the timestamp joined by dots, base64-encoded."""
    signature = request.headers.get("x-sinch-webhook-signature")
    nonce = request.headers.get("x-sinch-webhook-signature-nonce")
    timestamp = request.headers.get("x-sinch-webhook-signature-timestamp")
    if not signature or nonce is None or timestamp is None:
        return False
    signed = request.body + f".{nonce}.{timestamp}".encode()
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(mac), signature.strip().encode())


def from_url(url: Url, ctx: DriverContext) -> Driver:
    options = http.http_options(url, _OPTIONS, _USAGE)
    sender = options.get("from") or url.host
    if not url.user or not url.password or not sender:
        raise ConfigurationError(f"the sinch driver's URL is {_USAGE}")
    if not _PLAN.fullmatch(url.user):
        raise ConfigurationError("the sinch service plan id is letters and digits")
    region = options.get("region", "us").lower()
    if region not in REGIONS:
        raise ConfigurationError(f"sinch region must be one of {list(REGIONS)}")
    token = callbacks.token_of(options)
    secret = options.get("callback_secret") or None
    return SinchDriver(
        name=ctx.name, plan=url.user, api_token=url.password, sender=sender,
        base_url=http.base_url_of(options, f"https://{region}.sms.api.sinch.com"),
        timeout=http.timeout_of(options),
        # With HMAC the service plan's own callback URL is used: Sinch signs only that.
        callback=None if secret else callbacks.with_token(ctx.receipt_url, token),
        token=token, secret=secret, raw_url=url)
