"""Capture sink in Redis, the twin of ``MemoryCaptureSink`` (dev mode only: messages hold
full addresses, as the dev inbox shows them).

All of it lives in one hash slot (``{<prefix>.capture}``): a counter orders the messages,
a sorted set per recipient and one of all index them, and a marker per idempotency key
keeps a message from being kept twice.
"""

from __future__ import annotations

import msgspec

from otpgate.capture.base import CapturedMessage
from otpgate.redisio.conn import RedisConn

_encode = msgspec.msgpack.Encoder().encode
_message_of = msgspec.msgpack.Decoder(CapturedMessage).decode


class RedisCaptureSink:
    def __init__(self, conn: RedisConn) -> None:
        self._conn = conn
        self._keys = conn.keys

    async def add(self, message: CapturedMessage, idempotency_key: str) -> bool:
        added = await self._conn.script("capture_add", [self._keys.capture_tag], [
            idempotency_key, message.id, message.to, _encode(message)])
        return bool(added == 1)

    async def list(self, to: str | None = None, limit: int = 100,
                   before: str | None = None) -> list[CapturedMessage]:
        raws = await self._conn.script("capture_list", [self._keys.capture_tag],
                                       [limit, before or "", to or ""])
        return [_message_of(raw) for raw in raws if raw is not None]
