"""Capture sink in the embedded database, the twin of ``MemoryCaptureSink``.

Dev mode only: rows hold full addresses, as the dev inbox shows them.
"""

from __future__ import annotations

import sqlite3

from otpgate.capture.base import CapturedMessage
from otpgate.sqlite.db import Database

_COLUMNS = 'id, otp_id, "to", channel, body, sent_at, subject'


class SqliteCaptureSink:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, message: CapturedMessage, idempotency_key: str) -> bool:
        row = (message.id, idempotency_key, message.otp_id, message.to, message.channel,
               message.subject, message.body, message.sent_at)

        def insert(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                'INSERT OR IGNORE INTO captured (id, idempotency_key, otp_id, "to", channel, '
                "subject, body, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            return cur.rowcount == 1

        return await self._db.write(insert)

    async def list(self, to: str | None = None, limit: int = 100,
                   before: str | None = None) -> list[CapturedMessage]:
        # An unknown ``before`` makes the bound NULL: no rows, as on every backend.
        conditions, args = [], []
        if to is not None:
            conditions.append('"to" = ?')
            args.append(to)
        if before is not None:
            conditions.append("n < (SELECT n FROM captured WHERE id = ?)")
            args.append(before)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {_COLUMNS} FROM captured{where} ORDER BY n DESC LIMIT ?"  # noqa: S608

        def load(conn: sqlite3.Connection) -> list[CapturedMessage]:
            rows = conn.execute(sql, (*args, limit)).fetchall()
            return [CapturedMessage(id=r[0], otp_id=r[1], to=r[2], channel=r[3], body=r[4],
                                    sent_at=r[5], subject=r[6]) for r in rows]

        return await self._db.read(load)
