"""Capture sink in the DynamoDB table, the twin of ``MemoryCaptureSink``.

Dev mode only: items hold full addresses, as the dev inbox shows them. Each message is
kept twice in one transaction — under ``C#ALL`` and under ``C#TO#<to>`` — with a sort key
from a counter, so that both lists read newest first with one query; a ``CK#<key>`` item
keeps one message per idempotency key. Items go after a day (``ttl``).
"""

from __future__ import annotations

import msgspec

from otpgate.aws import table as t
from otpgate.aws.table import Cancelled, Table
from otpgate.capture.base import CapturedMessage

_encode = msgspec.msgpack.Encoder().encode
_message_of = msgspec.msgpack.Decoder(CapturedMessage).decode
_KEEP = 24 * 3600


class DynamoCaptureSink:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def add(self, message: CapturedMessage, idempotency_key: str) -> bool:
        if await self._table.get(f"CK#{idempotency_key}", "CAPTURE") is not None:
            return False
        counter = await self._table.update(
            "META", "CAPTURESEQ", UpdateExpression="ADD seq :one",
            ExpressionAttributeValues={":one": t.n(1)}, ReturnValues="UPDATED_NEW")
        sk = f"{int(t.num(counter, 'seq')):016d}"
        ttl = t.n(int(message.sent_at) + _KEEP)
        body = {"msg": t.b(_encode(message)), "ttl": ttl}
        try:
            await self._table.transact([
                t.put({**t.key(f"CK#{idempotency_key}", "CAPTURE"), "ttl": ttl},
                      "attribute_not_exists(pk)"),
                t.put({**t.key("C#ALL", sk), **body}),
                t.put({**t.key(f"C#TO#{message.to}", sk), **body}),
            ])
        except Cancelled:
            return False
        return True

    async def list(self, to: str | None = None, limit: int = 100) -> list[CapturedMessage]:
        pk = "C#ALL" if to is None else f"C#TO#{to}"
        items = await self._table.query(
            limit=limit, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": t.s(pk)}, ScanIndexForward=False,
            ConsistentRead=True)
        return [_message_of(t.blob(i, "msg")) for i in items]
