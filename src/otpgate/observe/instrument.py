"""The wrappers that feed metrics, traces and log context from the ports, so that the
store, the bus and the drivers themselves know nothing of them.

- ``ObservedStore`` wraps a ``Store``: the events of every committed change are stamped
  with the current ``traceparent`` before they are written, and the OTP outcomes among
  them are counted (``otpgate_otps_total``) once the change is committed.
- ``Metered`` wraps a ``Driver``: each provider call is a span, a duration and a count by
  outcome (``otpgate_sends_total``, ``otpgate_send_duration_seconds``).
- ``traced`` wraps a bus handler: each delivery is a span continuing its event's trace,
  with the event, OTP and driver bound for log lines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

import msgspec

from otpgate.bus.base import Handler, delivery_number
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, RecipientState, Status
from otpgate.core.recipients import mask
from otpgate.dispatch.outcome import classify
from otpgate.drivers.base import Driver, Message, SendReceipt
from otpgate.drivers.wrappers import Wrapper
from otpgate.events import CloudEvent
from otpgate.observe import context, metrics, tracing
from otpgate.store.base import Decide, Keep, Kept, ReceiptDecision, Store

T = TypeVar("T")


def stamped(events: Sequence[CloudEvent], traceparent: str | None) -> list[CloudEvent]:
    """``events`` carrying ``traceparent`` (those that carry one already keep theirs)."""
    if traceparent is None:
        return list(events)
    return [e if isinstance(e.traceparent, str) else
            msgspec.structs.replace(e, traceparent=traceparent) for e in events]


class ObservedStore:
    """A ``Store`` whose writes carry trace context and count OTP outcomes; every other
    call goes straight through."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def transact(self, key: str, decide: Decide[T]) -> T:
        watch = _Watch(decide, tracing.traceparent())
        result: T = await self.inner.transact(key, watch)
        watch.committed()
        return result

    async def transact_kept(self, key: str, decide: Decide[T], keep: Keep[T]) -> Kept[T]:
        watch = _Watch(decide, tracing.traceparent())
        kept: Kept[T] = await self.inner.transact_kept(key, watch, keep)
        if not kept.replayed:
            watch.committed()
        return kept

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        return await self.inner.settle(delivery, stamped(events, tracing.traceparent()),
                                       claimed=claimed)

    async def record_receipt(self, driver: str, provider_id: str,
                             decide: ReceiptDecision) -> Delivery | None:
        parent = tracing.traceparent()

        def watched(row: Delivery, otp: Any) -> tuple[Delivery, Sequence[CloudEvent]] | None:
            found = decide(row, otp)
            return None if found is None else (found[0], stamped(found[1], parent))

        return await self.inner.record_receipt(driver, provider_id, watched)


def observed(store: Store) -> Store:
    """``store`` wrapped in an ``ObservedStore`` (typed as the store it stands for)."""
    return cast(Store, ObservedStore(store))


class _Watch(Generic[T]):
    """A decision that stamps its change's events and remembers the last change (a
    backend may run a decision more than once; the last run is what it commits)."""

    def __init__(self, decide: Decide[T], traceparent: str | None) -> None:
        self._decide = decide
        self._traceparent = traceparent
        self._change: Change[T] | None = None

    def __call__(self, state: RecipientState | None) -> Change[T]:
        change = self._decide(state)
        change.events[:] = stamped(change.events, self._traceparent)
        self._change = change
        return change

    def committed(self) -> None:
        change = self._change
        if change is None:
            return
        failed = [o for o in change.otps if o.status is Status.FAILED]
        country = metrics.country_of(failed[0].to_masked) if failed else ""
        metrics.count_events(change.events, len(failed), country)


class Metered(Wrapper):
    """Times, counts and traces each provider call of the driver it wraps."""

    async def send(self, message: Message) -> SendReceipt:
        country = _country(message.to, message.channel)
        started = time.perf_counter()
        outcome = "sent"
        with tracing.span(f"send {self.name}", tracing.CLIENT, attributes={
                "otpgate.driver": self.name, "otpgate.channel": message.channel,
                "otpgate.otp_id": message.otp_id, "otpgate.send_no": message.send_no,
                "otpgate.country": country}) as span:
            try:
                receipt = await self.inner.send(message)
            except Exception as exc:
                outcome = classify(exc).value
                raise
            finally:
                metrics.SEND_DURATION.labels(self.name).observe(time.perf_counter() - started)
                metrics.SENDS.labels(self.name, message.channel, country, outcome).inc()
                span.set_attribute("otpgate.outcome", outcome)
        return receipt


def metered(driver: Driver) -> Driver:
    return Metered(driver)


def _country(to: str, channel: str) -> str:
    """The destination's country, from the masked number (cached by mask, so that no full
    number is kept)."""
    if "@" in to or channel == "email":
        return "email"
    return metrics.country_of(mask(to))


def traced(subscription: str, handler: Handler) -> Handler:
    """``handler`` with a span per delivery (continuing the event's trace) and the event's
    ids bound for log lines."""

    async def handle(event: CloudEvent) -> None:
        driver = event.driver if isinstance(event.driver, str) else None
        parent = tracing.parent_of(event.traceparent if isinstance(event.traceparent, str)
                                   else None)
        attributes: dict[str, str | int | float | bool] = {
            "messaging.destination.name": subscription, "otpgate.event_id": event.id,
            "otpgate.event_type": event.type, "otpgate.otp_id": event.subject,
            "otpgate.delivery": delivery_number.get()}
        if driver is not None:
            attributes["otpgate.driver"] = driver
        if isinstance(event.channel, str):
            attributes["otpgate.channel"] = event.channel
        with context.bound(event_id=event.id, otp_id=event.subject, driver=driver), \
                tracing.span(f"{subscription} process", tracing.CONSUMER, parent,
                             attributes):
            await handler(event)

    return handle
