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

    async def list(self, to: str | None = None, limit: int = 100,
                   before: str | None = None) -> list[CapturedMessage]:
        older = self._messages
        if before is not None:
            cut = next((i for i, m in enumerate(older) if m.id == before), None)
            older = older[:cut] if cut is not None else []
        found = [m for m in reversed(older) if to is None or m.to == to]
        return found[:limit]
