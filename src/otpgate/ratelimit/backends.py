"""The limiter's cells on each store backend (``otpgate.ratelimit.cells``): SQLite (a table
of the store's database, written in the store's group commit), Redis (one script call per
request, Cluster-safe) and DynamoDB (a consistent batch read, then a conditional
transaction: two calls per request, whatever the number of rules)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from otpgate.errors import StoreError
from otpgate.ratelimit.cells import Count, Op, Outcome, Peek, Put, Rate, Spend, plan

if TYPE_CHECKING:
    from otpgate.aws.table import Table
    from otpgate.redisio.conn import RedisConn
    from otpgate.sqlite.db import Database

_SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS limit_cells (
    key TEXT PRIMARY KEY, value REAL NOT NULL, until REAL NOT NULL) WITHOUT ROWID"""
_SQLITE_PURGE_EVERY = 1000


class SqliteLimiter:
    """Cells in the ``limit_cells`` table, made on first use (a table of its own, so that
    it needs no migration of the store's)."""

    __slots__ = ("_calls", "_db", "_ready")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ready = False
        self._calls = 0

    async def _prepare(self) -> None:
        if not self._ready:
            await self._db.write(lambda conn: conn.execute(_SQLITE_TABLE) and None)
            self._ready = True

    async def apply(self, ops: Sequence[Op], now: float) -> list[Outcome]:
        await self._prepare()
        self._calls += 1
        purge = self._calls % _SQLITE_PURGE_EVERY == 0

        def unit(conn: sqlite3.Connection) -> list[Outcome]:
            keys = list(dict.fromkeys(op.key for op in ops))
            marks = ",".join("?" * len(keys))
            found: dict[str, float | None] = dict.fromkeys(keys)
            for key, value, until in conn.execute(
                    f"SELECT key, value, until FROM limit_cells WHERE key IN ({marks})",  # noqa: S608
                    keys):
                found[key] = value if until > now else None
            done = plan(ops, found, now)
            if done.writes:
                conn.executemany(
                    "INSERT OR REPLACE INTO limit_cells (key, value, until) VALUES (?, ?, ?)",
                    [(k, v, u) for k, (v, u) in done.writes.items()])
            if purge:
                conn.execute("DELETE FROM limit_cells WHERE key IN (SELECT key FROM "
                             "limit_cells WHERE until < ? LIMIT 500)", (now,))
            return done.outcomes

        return await self._db.write(unit)



def _wire(op: Op) -> list[Any]:
    if isinstance(op, Rate):
        return ["rate", op.key, op.limit, op.window, int(op.enforce)]
    if isinstance(op, Count):
        return ["count", op.key, op.ttl]
    if isinstance(op, Peek):
        return ["peek", op.key]
    if isinstance(op, Spend):
        return ["spend", op.key, op.cost, op.cap, op.ttl, int(op.enforce)]
    if isinstance(op, Put):
        return ["put", op.key, op.value, op.ttl]
    return ["flag", op.key, int(op.enforce)]


class RedisLimiter:
    """Cells as Redis strings under one hash tag (``{<prefix>.limits}``): every rule of a
    request in one ``EVALSHA``, in one slot on Cluster. One slot holds every limit —
    small values, one short script a request — which one primary serves easily; the
    recipients' data stays spread over the shards."""

    __slots__ = ("_conn", "_tag")

    def __init__(self, conn: RedisConn) -> None:
        self._conn = conn
        self._tag = f"{{{conn.keys.prefix}.limits}}"

    async def apply(self, ops: Sequence[Op], now: float) -> list[Outcome]:
        packed = msgspec.msgpack.encode([now, [_wire(op) for op in ops]])
        answer = await self._conn.script("limits", [self._tag], [packed])
        return [Outcome(int(a) == 1, float(r), float(v)) for a, r, v in answer]



class DynamoLimiter:
    """Cells as items ``L#<cell>`` / ``CELL`` (``v`` value, ``x`` forget after, ``ttl``):
    one consistent ``BatchGetItem`` of the cells, ``plan``, then one
    ``TransactWriteItems`` conditioned on what was read — tried again when another
    request changed a cell in between."""

    __slots__ = ("_table",)

    TRIES = 8

    def __init__(self, table: Table) -> None:
        self._table = table

    async def apply(self, ops: Sequence[Op], now: float) -> list[Outcome]:
        from otpgate.aws.table import Cancelled, n, put

        keys = list(dict.fromkeys(op.key for op in ops))
        for _ in range(self.TRIES):
            items = await self._table.batch_get([(f"L#{k}", "CELL") for k in keys])
            held: dict[str, tuple[str, str]] = {}
            found: dict[str, float | None] = dict.fromkeys(keys)
            for item in items:
                cell = item["pk"]["S"][2:]
                held[cell] = (item["v"]["N"], item["x"]["N"])
                if float(item["x"]["N"]) > now:
                    found[cell] = float(item["v"]["N"])
            done = plan(ops, found, now)
            if not done.writes:
                return done.outcomes
            writes = []
            for cell, (value, until) in done.writes.items():
                item = {"pk": {"S": f"L#{cell}"}, "sk": {"S": "CELL"}, "v": n(value),
                        "x": n(until), "ttl": n(math.ceil(until) + 60)}
                if cell in held:
                    old_v, old_x = held[cell]
                    writes.append(put(item, "v = :v AND x = :x",
                                      {":v": {"N": old_v}, ":x": {"N": old_x}}))
                else:
                    writes.append(put(item, "attribute_not_exists(pk)"))
            try:
                await self._table.transact(writes)
            except Cancelled:
                continue
            return done.outcomes
        raise StoreError("the limiter's cells changed under every try")
