"""The dispatcher: a dispatch event → the send ledger → a template → a driver → an outcome.

One ``Dispatcher`` serves one driver. Every send is claimed in the ledger first — the claim
also says whether the send is still wanted — so a redelivered event never sends twice; a
send whose dispatcher died mid-call is sent again once its lease runs out, with the same
idempotency key. A send costs the store two calls: claim, then settle — and where the bus
shares the store's database, the settle of a final outcome acknowledges the delivery in
the same transaction (``bus.base.acknowledging``). Outcomes (see ``otpgate.dispatch.outcome``):

```
receipt                       → ledger sent,    otpgate.otp.sent.v1
temporary, unknown, broken,   ┐ fallbacks left? ledger queued on the next driver and a
permanent (the breaker open   │ dispatch event for it, at once (failover within one
  counts as temporary)        ┘ retry: never back to this driver for this send)
  … without a fallback        → temporary, unknown, broken: ledger queued, re-raised: the
                                 bus retries with backoff (the open breaker's wait);
                                 permanent, or the last delivery: ledger failed,
                                 delivery_failed.v1
sealed payload won't open     → ledger failed,  delivery_failed.v1 (no retry, no failover)
code expired / superseded, or → ledger expired, nothing sent
  its pace's turn comes after
  it expires
```
With a ``breaker`` (one per driver, shared by the process's dispatchers) the driver is
not called while its circuit is open; with a ``pace`` (``mps=``) a send waits its turn,
for at most a share of the lease (a longer wait fails over, or comes back then).
A message another service wrote (``OtpService.deliver``) travels sealed with the code and
goes out as it is; every other message is this locale's template around the code, with the
request's brand where it named one. Neither events nor logs carry the code, the full
address or the sealed payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Annotated, Any

import msgspec

from otpgate import events, routing
from otpgate.breaker import BreakerOpen, CircuitBreaker
from otpgate.bus.base import (
    Limits,
    Subscription,
    acknowledging,
    delivery_number,
    describe,
)
from otpgate.clock import Clock
from otpgate.core import autofill, intake
from otpgate.core.messages import Rendered, Templates, segments
from otpgate.core.otp import Delivery, DeliveryStatus, SendKey, Status
from otpgate.crypto import Keyring, seal_aad
from otpgate.dispatch.outcome import Outcome, classify
from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.drivers.wrappers import Bounded, Guarded, Paced, PaceFull, Sleep
from otpgate.errors import (
    Deferred,
    DeliveryError,
    PermanentDeliveryError,
    SealError,
    SendExpired,
    TemporaryDeliveryError,
)
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.ratelimit.pace import Pace
from otpgate.store.base import Claim, ClaimState, Store

log = logging.getLogger(__name__)

_CALL_SHARE_OF_LEASE = 0.8
"""A driver call may take this share of the lease; the rest is for recording it."""
_PACE_SHARE_OF_LEASE = 0.4
"""Of which its wait for the driver's pace may take this share."""
DEFAULT_MAX_DELIVERIES = 8
DEFAULT_LEASE = 30.0
DEFAULT_CONCURRENCY = 256
"""Sends one dispatcher process keeps in flight (a driver URL's ``concurrency=`` says
otherwise): at 50–500 ms a provider call, 256 in flight carry 500–5,000 sends/s."""


_AppHash = Annotated[str, msgspec.Meta(pattern=rf"\A(?:{autofill.APP_HASH_PATTERN})\Z")]
_WebOtpDomain = Annotated[str, msgspec.Meta(
    pattern=rf"\A(?:{autofill.WEBOTP_DOMAIN_PATTERN})\Z", max_length=autofill.MAX_DOMAIN)]


class DispatchData(msgspec.Struct, frozen=True, kw_only=True):
    """The data of an ``otpgate.otp.dispatch.v1`` event."""

    otp_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    send_no: Annotated[int, msgspec.Meta(ge=1)]
    channel: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    to: str
    """Masked; the full address is inside ``sealed``."""
    purpose: str
    locale: str
    expires_at: float
    sealed: str
    fallbacks: tuple[str, ...] = ()
    app_hash: _AppHash | None = None
    webotp_domain: _WebOtpDomain | None = None
    brand: Annotated[str, msgspec.Meta(min_length=1, max_length=intake.MAX_BRAND)] | None = None
    """The name the message gives, where the request named one."""
    not_before: float | None = None
    """A fallback step's time: until then the event waits in the bus, unclaimed."""

    @property
    def key(self) -> SendKey:
        return SendKey(self.otp_id, self.send_no, self.channel)


class NotYet(Deferred):
    """A fallback step whose time has not come: the bus delivers it again then, without
    counting this delivery (``otpgate.errors.Deferred``)."""

    slug = "not-yet"


def subscription_for(driver_name: str) -> Subscription:
    """The subscription that carries a driver's dispatch events (the same in every process,
    whether it sends or only writes them)."""
    return Subscription(
        name=f"dispatch.{driver_name}",
        filter=Filter.of(type=EventType.DISPATCH.value, driver=driver_name),
        redact=without_seal)


def without_seal(event: CloudEvent) -> CloudEvent:
    """The event as a dead letter keeps it: without the sealed code and address."""
    data = {k: v for k, v in event.data.items() if k != "sealed"}
    return msgspec.structs.replace(event, data=data)


class Dispatcher:
    """Sends the dispatch events addressed to one driver (see the module docstring)."""

    def __init__(self, *, store: Store, driver: Driver, keyring: Keyring, clock: Clock,
                 templates: Templates, brand: str,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES,
                 lease: float = DEFAULT_LEASE, webotp_domain: str | None = None,
                 breaker: CircuitBreaker | None = None, pace: Pace | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._store = store
        guarded = driver
        if pace is not None:
            guarded = Paced(guarded, pace, clock, max_wait=lease * _PACE_SHARE_OF_LEASE,
                            sleep=sleep)
        if breaker is not None:
            guarded = Guarded(guarded, breaker)
        # Answer within the lease, or another delivery would send the message again while
        # this call is still out: past the bound the outcome is unknown.
        self._driver: Driver = Bounded(guarded, lease * _CALL_SHARE_OF_LEASE, "the lease")
        self._name = driver.name
        self._channels = driver.channels
        self._keyring = keyring
        self._clock = clock
        self._templates = templates
        self._brand = brand
        self._webotp_domain = webotp_domain  # for the SMS of requests that name none
        self._max_deliveries = max_deliveries
        self._lease = lease

    @property
    def name(self) -> str:
        return self._name

    def subscription(self) -> Subscription:
        return subscription_for(self._name)

    def limits(self, concurrency: int = DEFAULT_CONCURRENCY) -> Limits:
        """How the bus should deliver to this dispatcher (its lease bounds the claims)."""
        return Limits(max_deliveries=self._max_deliveries, lease=self._lease,
                      concurrency=concurrency)

    async def handle(self, event: CloudEvent) -> None:
        """Send one dispatch event's message; raise only when the bus should retry."""
        data = await self._parse(event)
        if data is None:
            return
        if data.not_before is not None and (wait := data.not_before - self._clock.now()) > 0:
            # A fallback step not yet due: back to the bus until its time, nothing claimed
            # (the bus keeps it durably; the ledger claim makes it go out once).
            raise NotYet(f"fallback step {data.key} is due in {wait:.0f} s", wait)
        claim = await self._store.claim(data.key, self._name, self._clock.now(), self._lease)
        if claim.state is ClaimState.DONE:
            log.debug("send %s on %s already handled", data.key, self._name)
            return
        if claim.state is ClaimState.BUSY:
            raise TemporaryDeliveryError(f"send {data.key} is being handled elsewhere",
                                         retry_after=max(1.0, claim.retry_in))
        if claim.unknown_before:
            log.warning("send %s on %s: the previous attempt's outcome is unknown; sending "
                        "again with the same idempotency key", data.key, self._name)
        if reason := self._stale(data, claim):
            log.info("send %s to %s not sent: %s", data.key, data.to, reason)
            await self._settle(data, claim, DeliveryStatus.EXPIRED, claim.attempts - 1,
                               error=reason)
            return
        try:
            sealed = self._keyring.open(data.sealed, seal_aad(data.otp_id, data.send_no))
        except SealError as exc:
            await self._fail(data, claim, f"sealed payload rejected: {exc}", permanent=True)
            return
        text = None
        if sealed.body is not None:  # another service's own text
            subject = sealed.subject or data.brand or self._brand
            text = Rendered(sealed.body, subject if data.channel == "email" else None)
        await self._send(event, data, claim, sealed.to, sealed.code, text)

    async def _parse(self, event: CloudEvent) -> DispatchData | None:
        """The event's data, or ``None`` once a malformed event has been recorded."""
        try:
            if event.type != EventType.DISPATCH.value:
                raise msgspec.ValidationError(f"event type {event.type!r} is not a dispatch")
            data = msgspec.convert(event.data, DispatchData)
            if data.otp_id != event.subject:
                raise msgspec.ValidationError("data.otp_id differs from the event's subject")
        except msgspec.ValidationError as exc:
            await self._drop_malformed(event, str(exc))
            return None
        return data

    async def _drop_malformed(self, event: CloudEvent, problem: str) -> None:
        """Retrying cannot fix a malformed event: record it as failed where it names a send,
        and log it at error level either way."""
        log.error("malformed dispatch event %s on %s dropped: %s", event.id, self._name,
                  problem)
        raw: dict[str, Any] = event.data
        otp_id, send_no, channel = raw.get("otp_id"), raw.get("send_no"), raw.get("channel")
        if not (isinstance(otp_id, str) and isinstance(channel, str)
                and isinstance(send_no, int) and not isinstance(send_no, bool)):
            return
        stub = DispatchData(otp_id=otp_id, send_no=send_no, channel=channel, to="",
                            purpose="", locale="", expires_at=0.0, sealed="")
        claim = await self._store.claim(stub.key, self._name, self._clock.now(), self._lease)
        if claim.state is ClaimState.CLAIMED:
            await self._fail(stub, claim, f"malformed dispatch event: {problem}"[:500],
                             permanent=True)

    def _stale(self, data: DispatchData, claim: Claim) -> str | None:
        """Why this send must not go out any more, if it must not."""
        if self._clock.now() >= data.expires_at:
            return "the code expired before it could be sent"
        if claim.otp_status is None:
            return "the OTP no longer exists"
        if claim.send_count > data.send_no:
            return f"superseded by send #{claim.send_count}"
        if claim.otp_status is not Status.PENDING:
            return f"the OTP is {claim.otp_status.value}"
        return None

    async def _send(self, event: CloudEvent, data: DispatchData, claim: Claim, to: str,
                    code: str, text: Rendered | None) -> None:
        """Send the message: ``text`` as it is when another service wrote it, otherwise
        this locale's template around ``code``."""
        if text is None:
            minutes = max(1, math.ceil((data.expires_at - self._clock.now()) / 60))
            text = self._templates.render(
                data.channel, data.locale, data.brand or self._brand, code, minutes,
                app_hash=data.app_hash, webotp_domain=data.webotp_domain or self._webotp_domain)
        if data.app_hash and data.channel == "sms" and segments(text.body).parts > 1:
            log.warning("send %s: the SMS takes more than one segment, and SMS Retriever "
                        "reads only messages of up to 140 bytes", data.key)
        message = Message(
            otp_id=data.otp_id, send_no=data.send_no, channel=data.channel, to=to,
            body=text.body, code=code, locale=data.locale, subject=text.subject,
            html=text.html, idempotency_key=str(data.key), expires_at=data.expires_at)
        try:
            if data.channel not in self._channels:
                raise PermanentDeliveryError(f"{self._name} cannot send on {data.channel}")
            receipt = await self._driver.send(message)
        except Exception as exc:  # every failure is one of the outcomes
            await self._failed(event, data, claim, exc)
        else:
            await self._sent(data, claim, receipt)

    async def _failed(self, event: CloudEvent, data: DispatchData, claim: Claim,
                      exc: Exception) -> None:
        if isinstance(exc, SendExpired):
            reason = "the code would expire before its turn in the driver's pace"
            log.info("send %s to %s not sent: %s", data.key, data.to, reason)
            await self._settle(data, claim, DeliveryStatus.EXPIRED, claim.attempts - 1,
                               error=reason)
            return
        outcome = classify(exc)
        if outcome is Outcome.BROKEN:
            log.error("driver %s is refused by its provider (credentials?)%s: %s",
                      self._name, "; failing over" if data.fallbacks else "", describe(exc))
        if data.fallbacks or outcome is Outcome.PERMANENT:
            await self._give_up(event, data, claim, describe(exc),
                                permanent=outcome is Outcome.PERMANENT,
                                skipped=isinstance(exc, BreakerOpen | PaceFull))
            return
        wrapped = exc if isinstance(exc, TemporaryDeliveryError) else \
            TemporaryDeliveryError(describe(exc), _code(exc))
        await self._retry(event, data, claim, wrapped, cause=exc)

    async def _sent(self, data: DispatchData, claim: Claim, receipt: SendReceipt) -> None:
        encoding = receipt.encoding or "utf-8"
        outcome = self._event(EventType.SENT, data, provider_id=receipt.provider_id,
                              segments=receipt.segments, encoding=encoding)
        await self._settle(data, claim, DeliveryStatus.SENT, claim.attempts, outcome,
                           provider_id=receipt.provider_id)
        log.info("sent %s to %s via %s (%s, %d segment(s))", data.key, data.to, self._name,
                 encoding, receipt.segments)

    async def _retry(self, event: CloudEvent, data: DispatchData, claim: Claim,
                     exc: TemporaryDeliveryError, cause: Exception | None = None) -> None:
        """Queue the send again and let the bus retry — unless this was its last delivery."""
        reason = describe(exc)
        if max(claim.attempts, delivery_number.get()) >= self._max_deliveries:
            await self._give_up(event, data, claim, f"gave up after {claim.attempts} "
                                f"attempts: {reason}", permanent=False)
            return
        if not await self._settle(data, claim, DeliveryStatus.QUEUED, claim.attempts,
                                  error=reason, final=False):
            return  # another dispatcher holds the send now; its outcome counts
        log.warning("send %s via %s failed for now (attempt %d of %d): %s", data.key,
                    self._name, claim.attempts, self._max_deliveries, reason)
        if exc is cause:
            raise exc
        raise exc from cause

    async def _give_up(self, event: CloudEvent, data: DispatchData, claim: Claim,
                       reason: str, *, permanent: bool, skipped: bool = False) -> None:
        """This driver is done with the send: fail over to the next one, or fail it."""
        handover = routing.next_driver(data.fallbacks)
        if handover is None:
            await self._fail(data, claim, reason, permanent=permanent)
            return
        following, rest = handover
        moved = events.new(
            EventType.DISPATCH, data.otp_id, {**event.data, "fallbacks": rest},
            self._clock.now(), channel=data.channel, driver=following)
        # The next driver starts its own count of attempts, as the bus does for its event.
        with acknowledging():
            handed = await self._store.settle(Delivery(
                otp_id=data.otp_id, send_no=data.send_no, channel=data.channel,
                driver=following, status=DeliveryStatus.QUEUED, attempts=0,
                updated_at=self._clock.now(), error=f"{self._name}: {reason}"[:500],
            ), [moved], claimed=claim.attempts)
        if not handed:
            self._superseded(data)
            return
        # Skipping a driver whose circuit is open (or whose pace is full) is the plan
        # working, once per send during an outage: not worth a warning each.
        log.log(logging.INFO if skipped else logging.WARNING,
                "send %s failed on %s, failing over to %s: %s", data.key, self._name,
                    following, reason)

    async def _fail(self, data: DispatchData, claim: Claim, reason: str, *,
                    permanent: bool) -> None:
        outcome = self._event(EventType.DELIVERY_FAILED, data, reason=reason,
                              permanent=permanent)
        if not await self._settle(data, claim, DeliveryStatus.FAILED, claim.attempts, outcome,
                                  error=reason):
            return
        log.error("send %s to %s failed on %s: %s", data.key, data.to or "?", self._name,
                  reason)

    def _event(self, type_: EventType, data: DispatchData, **extra: object) -> CloudEvent:
        body: dict[str, object] = {"otp_id": data.otp_id, "send_no": data.send_no,
                                   "channel": data.channel, "driver": self._name, **extra}
        return events.new(type_, data.otp_id, body, self._clock.now(), channel=data.channel,
                          driver=self._name)

    async def _settle(self, data: DispatchData, claim: Claim, status: DeliveryStatus,
                      attempts: int, outcome: CloudEvent | None = None, *,
                      error: str | None = None, provider_id: str | None = None,
                      final: bool = True) -> bool:
        """Record the outcome of this claim; False (and nothing recorded) when the claim's
        lease ran out and another dispatcher took the send over meanwhile. A ``final``
        outcome (the handler returns next) may acknowledge the delivery with it."""
        delivery = Delivery(
            otp_id=data.otp_id, send_no=data.send_no, channel=data.channel, driver=self._name,
            status=status, attempts=max(0, attempts), updated_at=self._clock.now(),
            provider_id=provider_id, error=error)
        # The store already waits out a busy database; an error past that leaves the outcome
        # unrecorded, hence unknown, and the send may go out again.
        with acknowledging() if final else contextlib.nullcontext():
            settled = await self._store.settle(
                delivery, [outcome] if outcome is not None else [], claimed=claim.attempts)
        if not settled:
            self._superseded(data)
        return settled

    def _superseded(self, data: DispatchData) -> None:
        log.warning("send %s on %s outlived its lease and was taken over; its outcome here "
                    "is dropped", data.key, self._name)


def _code(error: BaseException) -> str | None:
    return error.provider_code if isinstance(error, DeliveryError) else None
