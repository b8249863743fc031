"""The outcome table: what a driver's answer means for a send. Pure.

| what the driver did                          | outcome   | the dispatcher                   |
|----------------------------------------------|-----------|----------------------------------|
| returned a ``SendReceipt``                   | sent      | ledger sent, ``sent.v1``         |
| ``TemporaryDeliveryError`` (429, 5xx, ...,   | temporary | next driver at once; with none   |
|   an open circuit)                           |           |   left, retry with backoff       |
| ``UnknownOutcomeError``, or a timeout        | unknown   | as temporary (same key and code: |
|                                              |           |   a duplicate is harmless)       |
| ``PermanentDeliveryError`` (the number)      | permanent | next driver; failed if none left |
| ``BrokenDriverError`` (credentials)          | broken    | next driver; retry if none left  |
| any other exception (a driver bug)           | temporary | as temporary                     |

A send never returns to a driver it left.
"""

from __future__ import annotations

import enum

from otpgate.errors import (
    BrokenDriverError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)


class Outcome(enum.StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    UNKNOWN = "unknown"
    PERMANENT = "permanent"
    BROKEN = "broken"


def classify(error: BaseException | None) -> Outcome:
    """The outcome of a send that raised ``error`` (``None``: it returned a receipt)."""
    if error is None:
        return Outcome.SENT
    if isinstance(error, UnknownOutcomeError | TimeoutError):
        return Outcome.UNKNOWN
    if isinstance(error, TemporaryDeliveryError):
        return Outcome.TEMPORARY
    if isinstance(error, PermanentDeliveryError):
        return Outcome.PERMANENT
    if isinstance(error, BrokenDriverError):
        return Outcome.BROKEN
    return Outcome.TEMPORARY


def retried(outcome: Outcome) -> bool:
    """Whether the same driver tries the send again when no driver is left to fail over
    to (until the bus's last delivery)."""
    return outcome in (Outcome.TEMPORARY, Outcome.UNKNOWN)
