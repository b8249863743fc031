"""In-memory capture sink, the twin of the SQLite one."""

from __future__ import annotations

from otpgate.capture.base import CapturedMessage


class MemoryCaptureSink:
    def __init__(self) -> None:
        self._messages: list[CapturedMessage] = []
        self._keys: set[str] = set()

    async def add(self, message: CapturedMessage, idempotency_key: str) -> bool:
        if idempotency_key in self._keys:
            return False
        self._keys.add(idempotency_key)
        self._messages.append(message)
        return True

    async def list(self, to: str | None = None, limit: int = 100) -> list[CapturedMessage]:
        found = [m for m in reversed(self._messages) if to is None or m.to == to]
        return found[:limit]
