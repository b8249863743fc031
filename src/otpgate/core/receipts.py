"""What a delivery receipt does to a send. Pure, like ``lifecycle``: the store runs
``decide_receipt`` atomically over the ledger entry the receipt names and its OTP.

- ``delivered``: the entry moves to ``delivered``; ``otpgate.otp.delivered.v1``.
- ``failed``: if the code is still pending, this is its latest send, and the channel's
  (or fallback step's) chain has a driver after this one, the send fails over: the entry
  is queued on that driver with a ``dispatch.v1`` for it (a step's with the step's
  address; and it never comes back to this driver). Otherwise
  the entry moves to ``failed``; ``otpgate.otp.delivery_failed.v1`` either way.
- ``sent``, an entry already delivered, failed or expired, or a receipt from a driver
  the entry has moved away from: nothing changes (receipts are idempotent and never move
  a channel backwards).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from otpgate import events
from otpgate.core.lifecycle import dispatch_event
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, Status, Step
from otpgate.events import CloudEvent, EventType

_FINAL = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.EXPIRED})


@dataclass(frozen=True, slots=True)
class ReceiptNews:
    """A provider's report on one message, as its driver read it."""

    driver: str
    provider_id: str
    status: DeliveryStatus
    """``SENT`` (an intermediate report), ``DELIVERED`` or ``FAILED``."""
    error_code: str | None
    at: float


def decide_receipt(row: Delivery, otp: Otp | None,
                   news: ReceiptNews) -> tuple[Delivery, Sequence[CloudEvent]] | None:
    """The entry to write and the events to publish, or ``None`` to change nothing."""
    if news.status not in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
        return None
    if row.status in _FINAL or row.driver != news.driver or row.provider_id != news.provider_id:
        return None
    if news.status is DeliveryStatus.DELIVERED:
        moved = msgspec.structs.replace(row, status=DeliveryStatus.DELIVERED,
                                        updated_at=news.at)
        return moved, [_event(EventType.DELIVERED, moved, news)]
    following = _next_driver(row, otp)
    failed = _event(EventType.DELIVERY_FAILED, row, news, reason="the provider reported "
                    "the message undelivered", permanent=following is None,
                    failover=following[0] if following else None)
    if otp is None or following is None:
        moved = msgspec.structs.replace(row, status=DeliveryStatus.FAILED, updated_at=news.at,
                                        error=_error(news))
        return moved, [failed]
    driver, rest = following
    handed = Delivery(otp_id=row.otp_id, send_no=row.send_no, channel=row.channel,
                      driver=driver, status=DeliveryStatus.QUEUED, attempts=0,
                      updated_at=news.at, error=f"{row.driver}: {_error(news)}"[:500])
    step = _step(otp, row.channel)
    return handed, [failed, dispatch_event(
        otp, row.channel, driver, rest, news.at,
        step=None if step is None else (step.to, step.sealed, step.due_at))]


def _step(otp: Otp, channel: str) -> Step | None:
    return next((step for step in otp.steps if step.channel == channel), None)


def _next_driver(row: Delivery, otp: Otp | None) -> tuple[str, list[str]] | None:
    """The driver after ``row.driver`` in the channel's (or fallback step's) chain, while
    the code is pending and this is its latest send."""
    if otp is None or otp.status is not Status.PENDING or otp.send_count != row.send_no:
        return None
    step = _step(otp, row.channel)
    if not (otp.sealed if step is None else step.sealed):
        return None
    chain = otp.routes.get(row.channel, []) if step is None else step.drivers
    if row.driver not in chain:
        return None
    after = chain[chain.index(row.driver) + 1:]
    return (after[0], after[1:]) if after else None


def _error(news: ReceiptNews) -> str:
    return f"undelivered (provider code {news.error_code})" if news.error_code else \
        "undelivered"


def _event(type_: EventType, row: Delivery, news: ReceiptNews,
           **extra: object) -> CloudEvent:
    data: dict[str, object] = {"otp_id": row.otp_id, "send_no": row.send_no,
                               "channel": row.channel, "driver": news.driver,
                               "provider_id": news.provider_id, "source": "receipt"}
    if news.error_code is not None:
        data["error_code"] = news.error_code
    data.update({k: v for k, v in extra.items() if v is not None})
    return events.new(type_, row.otp_id, data, news.at, channel=row.channel,
                      driver=news.driver)
