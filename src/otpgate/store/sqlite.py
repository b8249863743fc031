"""The embedded store: one SQLite file (WAL) holding state, ledger and outbox together.

Every write is a unit run by the ``Database`` writer inside a group-committed transaction;
``transact``, ``settle`` and ``record_receipt`` append their events to the outbox in that
same transaction, and a dispatcher's final ``settle`` acknowledges its bus delivery there
too (``bus.base.take_ack``). Send claims carry the bus's owner id: when the bus proves a
consumer dead (or stops with sends unfinished), its claims are released with its leases.
Rows mirror ``MemoryStore`` exactly (the contract suite runs on both).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from otpgate.bus.base import take_ack
from otpgate.bus.sqlite_outbox import SqliteOutboxBus
from otpgate.clock import Clock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Delivery, DeliveryStatus, Otp, RecipientState, SendKey
from otpgate.errors import ConfigurationError, StoreError
from otpgate.events import CloudEvent
from otpgate.sqlite.db import Database
from otpgate.store.base import (
    ApiKey,
    Claim,
    Decide,
    Keep,
    Kept,
    ReceiptDecision,
    Remembered,
    T,
    claim_of,
)

_encode = msgspec.msgpack.Encoder().encode
_state_of = msgspec.msgpack.Decoder(RecipientState).decode
_otp_of = msgspec.msgpack.Decoder(Otp).decode

_PUT_STATE = ("INSERT INTO recipients (key, state, touched_at) VALUES (?, ?, ?) "
              "ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
              "touched_at = excluded.touched_at")
_PUT_OTP = ("INSERT INTO otps (id, recipient, status, expires_at, send_count, record) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "recipient = excluded.recipient, status = excluded.status, "
            "expires_at = excluded.expires_at, send_count = excluded.send_count, "
            "record = excluded.record")
_LEDGER = ("otp_id, send_no, channel, driver, status, attempts, updated_at, provider_id, "
           "error, lease_until")
_PUT_LEDGER = (f"INSERT INTO ledger ({_LEDGER}, lease_owner) "  # noqa: S608
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (otp_id, send_no, channel) DO UPDATE SET "
               "driver = excluded.driver, status = excluded.status, "
               "attempts = excluded.attempts, updated_at = excluded.updated_at, "
               "provider_id = excluded.provider_id, error = excluded.error, "
               "lease_until = excluded.lease_until, lease_owner = excluded.lease_owner")
_RELEASE_CLAIMS = ("UPDATE ledger SET lease_until = ?1 "
                   "WHERE status = 'sending' AND lease_owner = ?2 AND lease_until > ?1")
_PURGE_BATCH = 1000
_TOUCH_GRAIN = 3600.0
"""How stale a recipient's ``touched_at`` may be; purges wait that much longer."""
_SETTLE = ("UPDATE ledger SET driver = ?, status = ?, attempts = ?, updated_at = ?, "
           "provider_id = ?, error = ?, lease_until = ?, lease_owner = NULL "
           "WHERE otp_id = ? AND send_no = ? AND channel = ? AND status = ? AND attempts = ?")
_KEY = ("id, name, secret_hash, created_at, revoked_at, tenant, admin, kind, scopes, origins, "
        "old_secret_hash, old_until")


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(otp_id=row[0], send_no=row[1], channel=row[2], driver=row[3],
                    status=DeliveryStatus(row[4]), attempts=row[5], updated_at=row[6],
                    provider_id=row[7], error=row[8], lease_until=row[9])


def _api_key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(id=row[0], name=row[1], secret_hash=bytes(row[2]), created_at=row[3],
                  revoked_at=row[4], tenant=row[5], admin=bool(row[6]), kind=row[7],
                  scopes=None if row[8] is None else row[8].split(),
                  origins=row[9].split(), old_secret_hash=_bytes_or_none(row[10]),
                  old_until=row[11])


def _put_key(conn: sqlite3.Connection, key: ApiKey) -> None:
    row = (key.id, key.name, key.secret_hash, key.created_at, key.revoked_at, key.tenant,
           int(key.admin), key.kind, None if key.scopes is None else " ".join(key.scopes),
           " ".join(key.origins), key.old_secret_hash, key.old_until)
    conn.execute(
        f"INSERT INTO api_keys ({_KEY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
        "secret_hash = excluded.secret_hash, created_at = excluded.created_at, "
        "revoked_at = excluded.revoked_at, tenant = excluded.tenant, "
        "admin = excluded.admin, kind = excluded.kind, scopes = excluded.scopes, "
        "origins = excluded.origins, old_secret_hash = excluded.old_secret_hash, "
        "old_until = excluded.old_until", row)


def _bytes_or_none(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _recall(conn: sqlite3.Connection, slot: str, now: float) -> Remembered | None:
    row = conn.execute(
        "SELECT fingerprint, status, body, created_at FROM idempotency "
        "WHERE key = ? AND expires_at > ?", (slot, now)).fetchone()
    return Remembered(row[0], row[1], bytes(row[2]), row[3]) if row else None


def _remember(conn: sqlite3.Connection, slot: str, answer: Remembered, ttl: float) -> None:
    """Keep ``answer`` under ``slot`` (over an expired one; purge removes the rest)."""
    conn.execute(
        "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body, "
        "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (slot, answer.fingerprint, answer.status, answer.body, answer.created_at,
         answer.created_at + ttl))


def _ledger_row(conn: sqlite3.Connection, key: SendKey) -> Delivery | None:
    row = conn.execute(
        f"SELECT {_LEDGER} FROM ledger WHERE otp_id = ? AND send_no = ? AND channel = ?",  # noqa: S608
        (key.otp_id, key.send_no, key.channel)).fetchone()
    return _delivery(row) if row else None


def _put_ledger(conn: sqlite3.Connection, d: Delivery, owner: str | None = None) -> None:
    conn.execute(_PUT_LEDGER, (d.otp_id, d.send_no, d.channel, d.driver, d.status.value,
                               d.attempts, d.updated_at, d.provider_id, d.error,
                               d.lease_until, owner))


def _release_claims(conn: sqlite3.Connection, owner: str, now: float) -> None:
    """A consumer that is gone no longer holds its send claims: they are claimable now
    (and their outcome unknown, so the send may go out again, with the same key)."""
    conn.execute(_RELEASE_CLAIMS, (now, owner))


class SqliteStore:
    """The ``Store`` port over a ``Database``; its outbox is ``bus``."""

    def __init__(self, db: Database, bus: SqliteOutboxBus, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        bus.on_release(_release_claims)

    async def transact(self, key: str, decide: Decide[T]) -> T:
        queued = [0]

        def unit(conn: sqlite3.Connection) -> T:
            change, touched = self._decide(conn, key, decide)
            queued[0] = self._write(conn, key, change, touched)
            return change.result

        result = await self._db.write(unit)
        if queued[0]:
            self._bus.notify()
        return result

    async def transact_kept(self, key: str, decide: Decide[T], keep: Keep[T]) -> Kept[T]:
        queued = [0]

        def unit(conn: sqlite3.Connection) -> Kept[T]:
            kept = _recall(conn, keep.slot, self._clock.now())
            if kept is not None:
                return Kept(answer=kept, replayed=True)
            change, touched = self._decide(conn, key, decide)
            answer = keep.answer(change.result)
            queued[0] = self._write(conn, key, change, touched)
            _remember(conn, keep.slot, answer, keep.ttl)
            return Kept(answer=answer, result=change.result)

        result = await self._db.write(unit)
        if queued[0]:
            self._bus.notify()
        return result

    @staticmethod
    def _decide(conn: sqlite3.Connection, key: str,
                decide: Decide[T]) -> tuple[Change[T], float | None]:
        """The decision over the stored state, and when that state was last touched."""
        row = conn.execute("SELECT state, touched_at FROM recipients WHERE key = ?",
                           (key,)).fetchone()
        if row is None:
            return decide(None), None
        return decide(_state_of(row[0])), row[1]

    def _write(self, conn: sqlite3.Connection, key: str, change: Change[T],
               touched: float | None) -> int:
        """Write a decision's change; return how many deliveries its events queued."""
        if change.state is not None:
            now = self._clock.now()
            # touched_at moves in steps of _TOUCH_GRAIN: its index changes seldom.
            if touched is None or now - touched >= _TOUCH_GRAIN:
                touched = now
            conn.execute(_PUT_STATE, (key, _encode(change.state), touched))
        for otp in change.otps:
            conn.execute(_PUT_OTP, (otp.id, otp.recipient, otp.status.value,
                                    otp.expires_at, otp.send_count, _encode(otp)))
        return self._bus.append(conn, change.events) if change.events else 0

    async def get(self, otp_id: str) -> Otp | None:
        row = await self._db.read(lambda c: c.execute(
            "SELECT record FROM otps WHERE id = ?", (otp_id,)).fetchone())
        return _otp_of(row[0]) if row else None

    async def due(self, now: float, limit: int) -> list[str]:
        rows = await self._db.read(lambda c: c.execute(
            "SELECT DISTINCT recipient FROM otps WHERE status = 'pending' AND expires_at <= ? "
            "ORDER BY recipient LIMIT ?", (now, limit)).fetchall())
        return [r[0] for r in rows]

    async def claim(self, key: SendKey, driver: str, now: float, lease: float) -> Claim:
        owner = self._bus.owner

        def unit(conn: sqlite3.Connection) -> Claim:
            found = conn.execute("SELECT record FROM otps WHERE id = ?",
                                 (key.otp_id,)).fetchone()
            claim, row = claim_of(key, _ledger_row(conn, key), driver, now, lease,
                                  _otp_of(found[0]) if found else None)
            if row is not None:
                _put_ledger(conn, row, owner)
            return claim

        return await self._db.write(unit)

    async def settle(self, delivery: Delivery, events: Sequence[CloudEvent], *,
                     claimed: int) -> bool:
        d = delivery
        params = (d.driver, d.status.value, d.attempts, d.updated_at, d.provider_id, d.error,
                  d.lease_until, d.otp_id, d.send_no, d.channel, DeliveryStatus.SENDING.value,
                  claimed)
        queued = [0]
        ack = take_ack(self._bus)

        def unit(conn: sqlite3.Connection) -> bool:
            if conn.execute(_SETTLE, params).rowcount != 1:
                return False  # no longer held by this claim
            queued[0] = self._bus.append(conn, events) if events else 0
            if ack is not None:
                ack.run(conn)
            return True

        settled = await self._db.write(unit)
        if settled and ack is not None:
            ack.done = True
        if queued[0]:
            self._bus.notify()
        return settled

    async def record_receipt(self, driver: str, provider_id: str,
                             decide: ReceiptDecision) -> Delivery | None:
        queued = [0]

        def unit(conn: sqlite3.Connection) -> Delivery | None:
            found = conn.execute(
                f"SELECT {_LEDGER} FROM ledger WHERE driver = ? AND provider_id = ?",  # noqa: S608
                (driver, provider_id)).fetchone()
            if found is None:
                return None
            row = _delivery(found)
            record = conn.execute("SELECT record FROM otps WHERE id = ?",
                                  (row.otp_id,)).fetchone()
            outcome = decide(row, _otp_of(record[0]) if record else None)
            if outcome is None:
                return None
            moved, published = outcome
            _put_ledger(conn, moved)
            queued[0] = self._bus.append(conn, published) if published else 0
            return moved

        moved = await self._db.write(unit)
        if queued[0]:
            self._bus.notify()
        return moved

    async def purge(self, otps_before: float, recipients_before: float) -> int:
        def unit(conn: sqlite3.Connection) -> int:
            gone = [r[0] for r in conn.execute(
                "SELECT id FROM otps WHERE status <> 'pending' AND expires_at < ? LIMIT ?",
                (otps_before, _PURGE_BATCH))]
            conn.executemany("DELETE FROM ledger WHERE otp_id = ?", [(i,) for i in gone])
            conn.executemany("DELETE FROM otps WHERE id = ?", [(i,) for i in gone])
            idle = conn.execute(
                "DELETE FROM recipients WHERE key IN (SELECT key FROM recipients "
                "WHERE touched_at < ? AND key NOT IN "
                "(SELECT recipient FROM otps WHERE status = 'pending') LIMIT ?)",
                (recipients_before - _TOUCH_GRAIN, _PURGE_BATCH)).rowcount
            answers = conn.execute(
                "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency "
                "WHERE expires_at <= ? LIMIT ?)", (self._clock.now(), _PURGE_BATCH)).rowcount
            return len(gone) + idle + answers

        return await self._db.write(unit)

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        cols = ", ".join(f"l.{c.strip()}" for c in _LEDGER.split(","))
        rows = await self._db.read(lambda c: c.execute(
            f"SELECT {cols} FROM ledger l JOIN otps o "  # noqa: S608
            "ON o.id = l.otp_id AND l.send_no = o.send_count "
            "WHERE l.otp_id = ? ORDER BY l.rowid", (otp_id,)).fetchall())
        return [_delivery(r) for r in rows]

    async def recall(self, slot: str, now: float) -> Remembered | None:
        return await self._db.read(lambda c: _recall(c, slot, now))

    async def put_api_key(self, key: ApiKey) -> None:
        await self._db.write(lambda c: _put_key(c, key))

    async def change_api_key(self, key_id: str,
                             change: Callable[[ApiKey], ApiKey | None]) -> ApiKey | None:
        def unit(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(f"SELECT {_KEY} FROM api_keys WHERE id = ?",  # noqa: S608
                               (key_id,)).fetchone()
            changed = change(_api_key(row)) if row else None
            if changed is not None:
                _put_key(conn, changed)
            return changed

        done: ApiKey | None = await self._db.write(unit)
        return done

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = await self._db.read(lambda c: c.execute(
            f"SELECT {_KEY} FROM api_keys WHERE id = ?", (key_id,)).fetchone())  # noqa: S608
        return _api_key(row) if row else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self._db.read(lambda c: c.execute(
            f"SELECT {_KEY} FROM api_keys ORDER BY created_at, rowid").fetchall())  # noqa: S608
        return [_api_key(r) for r in rows]

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        changed: int = await self._db.write(lambda c: c.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (now, key_id)).rowcount)
        return changed == 1

    async def read_meta(self, name: str) -> str | None:
        row = await self._db.read(lambda c: c.execute(
            "SELECT value FROM meta WHERE name = ?", (f"m:{name}",)).fetchone())
        return str(row[0]) if row else None

    async def swap_meta(self, name: str, expected: str | None, value: str) -> bool:
        slot = f"m:{name}"

        def unit(conn: sqlite3.Connection) -> bool:
            if expected is None:
                return conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                                    (slot, value)).rowcount == 1
            return conn.execute("UPDATE meta SET value = ? WHERE name = ? AND value = ?",
                                (value, slot, expected)).rowcount == 1

        done: bool = await self._db.write(unit)
        return done

    async def keep_key_check(self, check: str) -> str:
        def unit(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('key_check', ?)",
                         (check,))
            row = conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
            return str(row[0])

        return await self._db.write(unit)

    async def ping(self) -> None:
        """``StoreError`` unless the file can be read and written (see
        ``Database.writable``: no probe while writes commit anyway)."""
        if not self._db.alive():
            raise StoreError("the sqlite writer is not running")
        await self._db.read(lambda c: c.execute("SELECT 1").fetchall())
        await self._db.writable()

    async def close(self) -> None:
        await self._db.close()


def database_path(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` → the path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError("a SQLite URL looks like sqlite:///path/to/otpgate.db")
    path = url[len(prefix):].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigurationError("the SQLite backend needs a file path, not an in-memory "
                                 "database")
    return Path(path)
