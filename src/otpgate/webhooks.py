"""Outgoing webhooks: every lifecycle event, one per delivery, POSTed to the app.

Set ``OTPGATE_WEBHOOK_URL`` (``https://…``; ``http://`` only to a loopback host) and
``OTPGATE_WEBHOOK_SECRET`` (``whsec_`` and base64 of at least 16 bytes). Each event but
``dispatch.v1`` (which carries the sealed code and never leaves otpgate) goes out as the
CloudEvent itself, ``Content-Type: application/cloudevents+json``, signed as a Standard
Webhook: ``webhook-id`` is the event id (the same on every attempt, so the app can drop
repeats), ``webhook-timestamp`` the time of this attempt, ``webhook-signature`` ``v1,`` and
the base64 HMAC-SHA256 of ``id.timestamp.body``. Verify with any Standard Webhooks library,
or ``otpgate.client.verify_webhook``.

The events wait in their own bus subscription (``webhooks``), declared by every process
so that nothing is lost while no sender runs. A 2xx answer delivers; anything else, or no
answer within the timeout, is retried — after 1 s, 2 s, 4 s … doubling up to an hour
apart (±10 %), for 24 hours (``OTPGATE_WEBHOOK_RETRY_FOR``) — and then dead-lettered:
``otpgate webhooks dead`` lists those, ``otpgate webhooks replay`` sends them again.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from otpgate import events, urls
from otpgate.bus.base import Limits, Subscription, delivery_number
from otpgate.clock import Clock
from otpgate.config import WebhookSettings
from otpgate.errors import ConfigurationError, TemporaryDeliveryError
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.observe import metrics

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/cloudevents+json"
BACKOFF_CAP = 3600.0
_JITTER = 0.1

SUBSCRIPTION = Subscription(
    name="webhooks",
    filter=Filter.of(type=[t.value for t in EventType if t is not EventType.DISPATCH]))
"""Every lifecycle event but ``dispatch.v1``; nothing in them needs redacting."""


def delays(settings: WebhookSettings) -> list[float]:
    """The wait before each retry, without jitter: doubling from ``backoff`` up to an
    hour, until ``retry_for`` seconds have been spent."""
    found: list[float] = []
    spent, delay = 0.0, max(0.001, settings.backoff)
    while spent < settings.retry_for:
        found.append(min(delay, BACKOFF_CAP))
        spent += found[-1]
        delay *= 2
    return found


def limits(settings: WebhookSettings) -> Limits:
    """The subscription's limits: one delivery per retry of ``delays`` and the first, each
    leased for longer than a request may take."""
    return Limits(max_deliveries=len(delays(settings)) + 1,
                  lease=max(30.0, settings.timeout * 3), backoff_cap=BACKOFF_CAP)


def signer(secret: str) -> Webhook:
    """The Standard Webhooks signer of a ``whsec_…`` secret (``ConfigurationError`` for a
    secret that is not one)."""
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith("whsec_") or len(key) < 16:
        raise ConfigurationError("OTPGATE_WEBHOOK_SECRET is whsec_ followed by base64 of at "
                                 "least 16 bytes")
    return Webhook(secret)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError("OTPGATE_WEBHOOK_URL is an https:// URL")
    if parts.scheme == "http" and not urls.is_loopback(host):
        raise ConfigurationError("OTPGATE_WEBHOOK_URL: http:// only to a loopback host; "
                                 "use https:// elsewhere")
    return url



class WebhookSender:
    """The ``webhooks`` subscription's handler: one signed POST per event."""

    def __init__(self, settings: WebhookSettings, clock: Clock) -> None:
        if not settings.url or not settings.secret:
            raise ConfigurationError("outgoing webhooks need OTPGATE_WEBHOOK_URL and "
                                     "OTPGATE_WEBHOOK_SECRET")
        self._url = check_url(str(settings.url))
        self._signer = signer(str(settings.secret))
        self._delays = delays(settings)
        self._clock = clock
        self._http = httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False)

    async def handle(self, event: CloudEvent) -> None:
        """Deliver ``event``; raise (with the next retry's delay) when it did not arrive."""
        body = events.encode(event)
        now = int(self._clock.now())
        signature = self._signer.sign(event.id, datetime.fromtimestamp(now, UTC),
                                      body.decode())
        headers = {"content-type": MEDIA_TYPE, "webhook-id": event.id,
                   "webhook-timestamp": str(now), "webhook-signature": signature,
                   "user-agent": "otpgate-webhooks"}
        try:
            response = await self._http.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._retry(event, f"no answer ({type(exc).__name__})")
        else:
            if 200 <= response.status_code < 300:
                metrics.WEBHOOKS.labels("delivered").inc()
                log.info("webhook %s (%s) delivered", event.id, event.type)
                return
            self._retry(event, f"the endpoint answered HTTP {response.status_code}")

    def _retry(self, event: CloudEvent, reason: str) -> None:
        metrics.WEBHOOKS.labels("failed").inc()
        number = delivery_number.get()
        delay = self._delays[min(number, len(self._delays)) - 1] if self._delays else 0.0
        jittered = delay * random.uniform(1 - _JITTER, 1 + _JITTER)  # noqa: S311 - jitter
        log.warning("webhook %s (%s), attempt %d: %s", event.id, event.type, number, reason)
        raise TemporaryDeliveryError(f"webhook: {reason}", retry_after=jittered)

    async def close(self) -> None:
        await self._http.aclose()
