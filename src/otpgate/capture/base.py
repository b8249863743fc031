"""The ``CaptureSink`` port: the dev inbox's storage, one implementation per backend."""

from __future__ import annotations

from typing import Protocol

import msgspec


class CapturedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message the ``capture`` driver kept instead of sending (dev mode)."""

    id: str
    otp_id: str
    to: str
    channel: str
    body: str
    sent_at: float
    subject: str | None = None


class CaptureSink(Protocol):
    """Where the ``capture`` driver keeps messages; one per backend."""

    async def add(self, message: CapturedMessage, idempotency_key: str) -> bool:
        """Keep ``message`` unless one with the same key is kept; True if it was added."""
        ...

    async def list(self, to: str | None = None, limit: int = 100,
                   before: str | None = None) -> list[CapturedMessage]:
        """Newest first, optionally only those sent to ``to``; with ``before`` (a message
        id), only those kept before that message (none when no message has that id), so
        that a reader pages back through everything."""
        ...
