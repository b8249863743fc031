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
        k = self._keys
        added = await self._conn.script("capture_add", [
            k.capture(f"k:{idempotency_key}"), k.capture("seq"), k.capture(f"m:{message.id}"),
            k.capture("all"), k.capture(f"to:{message.to}")], [message.id, _encode(message)])
        return bool(added == 1)

    async def list(self, to: str | None = None, limit: int = 100,
                   before: str | None = None) -> list[CapturedMessage]:
        k = self._keys
        index = k.capture("all") if to is None else k.capture(f"to:{to}")
        raws = await self._conn.script("capture_list", [index, k.capture("all")],
                                       [limit, before or "", k.capture("m:")])
        return [_message_of(raw) for raw in raws if raw is not None]
