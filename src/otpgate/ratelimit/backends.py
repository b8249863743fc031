"""The limiter's cells on each store backend (``otpgate.ratelimit.cells``): SQLite (a table
of the store's database, written in the store's group commit), Redis (one script call per
request, Cluster-safe) and DynamoDB (a consistent batch read, then a conditional
transaction: two calls per request, whatever the number of rules)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
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
    it needs no migration of the store's).

    A batch waits for no commit: it reads its cells on the write connection (between two
    write batches, at once), plans, and queues its writes for the next group commit
    (``Database.submit``), keeping them meanwhile in ``_unwritten``, which later batches
    read first. Reading, planning and noting the writes happen without yielding to the
    event loop, so the batches of one process are atomic to each other; another process on
    the same file sees a write once it is committed, a few milliseconds later at most."""

    __slots__ = ("_calls", "_db", "_ready", "_unwritten")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ready = False
        self._calls = 0
        self._unwritten: dict[str, tuple[float, float]] = {}

    async def _prepare(self) -> None:
        if not self._ready:
            await self._db.write(lambda conn: conn.execute(_SQLITE_TABLE) and None)
            self._ready = True

    async def apply(self, ops: Sequence[Op], now: float) -> list[Outcome]:
        await self._prepare()
        unwritten = self._unwritten
        if len(unwritten) > 100_000:  # writes a failed commit left behind
            for key in [k for k, (_, until) in unwritten.items() if until <= now]:
                del unwritten[key]
        keys = list(dict.fromkeys(op.key for op in ops))
        wanted = [k for k in keys if k not in unwritten]
        found: dict[str, float | None] = dict.fromkeys(keys)
        if wanted:
            marks = ",".join("?" * len(wanted))
            rows = await self._db.read(lambda conn: conn.execute(
                f"SELECT key, value, until FROM limit_cells WHERE key IN ({marks})",  # noqa: S608
                wanted).fetchall())
            for key, value, until in rows:
                found[key] = value if until > now else None
        for key in keys:
            if (held := unwritten.get(key)) is not None:
                found[key] = held[0] if held[1] > now else None
        done = plan(ops, found, now)
        if done.writes:
            unwritten.update(done.writes)
            self._calls += 1
            self._db.submit(self._writer(dict(done.writes), now,
                                         self._calls % _SQLITE_PURGE_EVERY == 0))
        return done.outcomes

    def _writer(self, writes: dict[str, tuple[float, float]], now: float,
                purge: bool) -> Callable[[sqlite3.Connection], None]:
        unwritten = self._unwritten

        def unit(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO limit_cells (key, value, until) VALUES (?, ?, ?)",
                [(k, v, u) for k, (v, u) in writes.items()])
            for key, cell in writes.items():
                if unwritten.get(key) == cell:
                    del unwritten[key]
            if purge:
                conn.execute("DELETE FROM limit_cells WHERE key IN (SELECT key FROM "
                             "limit_cells WHERE until < ? LIMIT 500)", (now,))

        return unit


def _wire(op: Op) -> list[Any]:
    if isinstance(op, Rate):
        return ["rate", op.key, op.limit, op.window, int(op.enforce)]
    if isinstance(op, Count):
        return ["count", op.key, op.ttl, op.by]
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
