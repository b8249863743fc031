"""What only the embedded SQLite backend promises: WAL, group commit, durability, and
several processes sharing one file."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from otpgate.backends import Backend, open_sqlite
from otpgate.capture.base import CapturedMessage
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.errors import ConfigurationError, RateLimited, StoreError
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.sqlite import conn as sqlite_conn
from otpgate.sqlite.db import Database
from otpgate.sqlite.schema import MIGRATIONS
from otpgate.store.base import ApiKey, Decide, Keep, Remembered
from otpgate.store.sqlite import database_path
from tests.contract.conftest import Recorder, emitting, event, make_otp, sqlite_url, subscribe

OTP = "otp_" + "c" * 22


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "otpgate.db"


@pytest.fixture
async def db(db_file: Path) -> AsyncIterator[Database]:
    opened = await Database.open(db_file)
    try:
        yield opened
    finally:
        await opened.close()


async def open_at(path: Path, clock: FrozenClock) -> Backend:
    return await open_sqlite(sqlite_url(path), clock, poll_interval=0.01)


def test_urls_name_relative_and_absolute_files() -> None:
    assert database_path("sqlite:///var/otpgate.db") == Path("var/otpgate.db")
    assert database_path("sqlite:////srv/otpgate/otpgate.db") == Path("/srv/otpgate/otpgate.db")
    for bad in ("sqlite://otpgate.db", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(ConfigurationError):
            database_path(bad)


async def test_a_new_file_is_created_in_wal_mode_with_the_current_schema(
    db: Database, db_file: Path
) -> None:
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_migrating_again_and_concurrently_is_harmless(db_file: Path) -> None:
    opened = await asyncio.gather(*(Database.open(db_file) for _ in range(4)))
    for each in opened:
        await each.close()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_file_from_a_newer_otpgate_is_refused(db_file: Path) -> None:
    db_file.parent.mkdir(parents=True)
    with sqlite3.connect(db_file) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        await Database.open(db_file)


@contextlib.asynccontextmanager
async def writer_held(db: Database) -> AsyncIterator[None]:
    """Writes submitted inside this block, with no await between them, are committed
    together: the database flushes once the event loop has run what is ready."""
    batches = db.batch_no
    yield
    await asyncio.sleep(0)
    assert db.batch_no == batches, "a batch was committed before every unit was queued"


def put_key(db: Database, key: str, fail: bool = False) -> Callable[[sqlite3.Connection], int]:
    def unit(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO api_keys (id, name, secret_hash, created_at) "
                     "VALUES (?, 'n', x'00', 0)", (key,))
        if fail:
            raise RateLimited("no", retry_after=3)
        return db.batch_no
    return unit


async def stored_keys(db: Database) -> list[str]:
    rows = await db.read(lambda conn: conn.execute("SELECT id FROM api_keys").fetchall())
    return sorted(k for (k,) in rows)


async def test_one_failing_unit_in_a_batch_is_rolled_back_alone(db: Database) -> None:
    async with writer_held(db):
        pending = [asyncio.ensure_future(db.write(put_key(db, "a"))),
                   asyncio.ensure_future(db.write(put_key(db, "b", fail=True))),
                   asyncio.ensure_future(db.write(put_key(db, "c")))]
    a, b, c = await asyncio.gather(*pending, return_exceptions=True)

    assert isinstance(b, RateLimited)
    assert a == c, "the units did not share one transaction"
    assert await stored_keys(db) == ["a", "c"]


async def test_a_failed_commit_fails_every_unit_of_its_batch_and_the_writer_goes_on(
    db: Database,
) -> None:
    def tables(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE child (parent INTEGER REFERENCES parent (id) "
                     "DEFERRABLE INITIALLY DEFERRED)")

    await db.write(tables)
    async with writer_held(db):
        orphan = asyncio.ensure_future(  # only COMMIT can tell: the key check is deferred
            db.write(lambda c: c.execute("INSERT INTO child VALUES (7)").rowcount))
        innocent = asyncio.ensure_future(db.write(put_key(db, "a")))
    results = await asyncio.gather(orphan, innocent, return_exceptions=True)

    assert all(isinstance(r, StoreError) for r in results), results
    assert await stored_keys(db) == []
    await db.write(put_key(db, "b"))
    assert await stored_keys(db) == ["b"]


async def test_a_database_error_reaches_only_its_caller_as_a_store_error(db: Database) -> None:
    async def broken() -> None:
        await db.write(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))

    with pytest.raises(StoreError, match="no_such_table"):
        await broken()
    assert await db.write(lambda c: c.execute("SELECT 41 + 1").fetchone()[0]) == 42


async def test_data_survives_closing_and_reopening(db_file: Path, clock: FrozenClock) -> None:
    first = await open_at(db_file, clock)
    otp = make_otp(OTP, "r", clock.now())
    await first.store.transact("r", lambda s: Change(None, None, [otp]))
    await first.store.put_api_key(ApiKey(id="0000aaaa", name="ci", secret_hash=b"h",
                                         created_at=1.0))
    await first.capture.add(CapturedMessage(id="m1", otp_id=OTP, to="+14155550123",
                                            channel="sms", body="123456", sent_at=1.0), "k")
    await first.close()

    second = await open_at(db_file, clock)
    try:
        assert await second.store.get(OTP) == otp
        assert [k.id for k in await second.store.list_api_keys()] == ["0000aaaa"]
        assert [m.id for m in await second.capture.list()] == ["m1"]
    finally:
        await second.close()


async def test_two_processes_on_one_file_both_write_and_one_consumes(
    db_file: Path, clock: FrozenClock
) -> None:
    consumer, producer = await open_at(db_file, clock), await open_at(db_file, clock)
    try:
        seen = Recorder()
        await subscribe(consumer.bus, "dispatch", Filter.of(driver="twilio"), seen)
        await consumer.bus.start()  # the subscription is durable once started
        await consumer.bus.stop()
        mine = event(EventType.DISPATCH, OTP, clock.now(), driver="twilio")
        theirs = [event(EventType.DISPATCH, f"otp_{n}", clock.now(), driver="twilio")
                  for n in range(20)]
        other = event(EventType.DISPATCH, OTP, clock.now(), driver="vonage")

        def publishing(*batch: CloudEvent) -> Decide[None]:
            return lambda state: emitting(batch)

        await asyncio.gather(
            consumer.store.transact("a", publishing(mine)),
            *(producer.store.transact(f"b{n}", publishing(e, other))
              for n, e in enumerate(theirs)))

        assert await producer.bus.pump() == 0, "the producer has no handler to run"
        assert await consumer.bus.pump() + await consumer.bus.pump() == 21
        assert sorted(seen.ids) == sorted([mine.id, *(e.id for e in theirs)])
    finally:
        await producer.close()
        await consumer.close()


async def test_leases_left_by_a_crashed_process_run_out_and_another_delivers_them(
    db_file: Path, clock: FrozenClock
) -> None:
    started, never = asyncio.Event(), asyncio.Event()

    async def hangs(evt: CloudEvent) -> None:
        started.set()
        await never.wait()

    crashed = await open_at(db_file, clock)
    await subscribe(crashed.bus, "dispatch", Filter(), hangs, lease=30)
    lost = event(EventType.DISPATCH, OTP, clock.now(), driver="twilio")
    await crashed.store.transact("r", lambda s: emitting([lost]))
    frozen = asyncio.create_task(crashed.bus.pump())
    await asyncio.wait_for(started.wait(), 5)

    survivor = await open_at(db_file, clock)
    try:
        seen = Recorder()
        await subscribe(survivor.bus, "dispatch", Filter(), seen, lease=30)
        assert await survivor.bus.pump() == 0, "a live lease of another process was taken"
        clock.advance(31)
        assert await survivor.bus.pump() == 1
        assert seen.ids == [lost.id]
        clock.advance(60)
        assert await survivor.bus.pump() == 0
    finally:
        frozen.cancel()
        await asyncio.gather(frozen, return_exceptions=True)
        await crashed.close()
        await survivor.close()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


async def test_a_stale_consumer_cannot_settle_a_lease_another_has_taken(
    db_file: Path, clock: FrozenClock
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_then_ok(evt: CloudEvent) -> None:
        started.set()
        await release.wait()

    async def fails(evt: CloudEvent) -> None:
        raise RuntimeError("boom")

    slow, fast = await open_at(db_file, clock), await open_at(db_file, clock)
    try:
        await subscribe(slow.bus, "s", Filter(), slow_then_ok, lease=30)
        await subscribe(fast.bus, "s", Filter(), fails, lease=30, backoff_cap=1)
        await slow.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))
        late = asyncio.create_task(slow.bus.pump())
        await asyncio.wait_for(started.wait(), 5)
        clock.advance(31)
        assert await fast.bus.pump() == 1  # takes the lease over, fails, will retry
        release.set()
        assert await late == 1  # the stale success must not delete the retry

        clock.advance(1)
        assert await fast.bus.pump() == 1
    finally:
        await slow.close()
        await fast.close()


async def test_closing_stops_the_writer_and_refuses_later_writes(db: Database) -> None:
    await db.close()
    await db.close()
    assert not db.alive()
    with pytest.raises(StoreError):
        await db.read(lambda c: None)
    with pytest.raises(StoreError):
        await db.write(lambda c: None)


async def test_expired_idempotency_answers_are_purged(
    db_file: Path, clock: FrozenClock
) -> None:
    backend = await open_at(db_file, clock)
    try:
        old = Remembered("fp", 202, b"{}", clock.now())
        await backend.store.transact_kept("r", lambda s: Change(None),
                                          Keep(slot="old", ttl=60.0, answer=lambda _: old))
        clock.advance(61)
        new = Remembered("fp", 202, b"{}", clock.now())
        await backend.store.transact_kept("r", lambda s: Change(None),
                                          Keep(slot="new", ttl=60.0, answer=lambda _: new))
        await backend.store.purge(otps_before=0, recipients_before=0)
    finally:
        await backend.close()
    with sqlite3.connect(db_file) as conn:
        keys = {k for (k,) in conn.execute("SELECT key FROM idempotency")}
    assert keys == {"new"}


async def test_the_wal_is_checkpointed_in_the_background_and_emptied_on_close(
    db_file: Path, tmp_path: Path
) -> None:
    db = await Database.open(db_file, checkpoint_interval=0.02)
    wal = db_file.with_name(db_file.name + "-wal")

    def rows_in_main_file() -> int:
        """Rows readable from the database file alone, without its WAL."""
        copy = tmp_path / "main-only.db"
        shutil.copyfile(db_file, copy)
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            try:
                return len(conn.execute("SELECT id FROM api_keys").fetchall())
            except sqlite3.OperationalError:  # not even the schema is there yet
                return 0

    try:
        for n in range(50):
            await db.write(put_key(db, f"k{n}"))
        async with asyncio.timeout(5):
            while rows_in_main_file() < 50:
                await asyncio.sleep(0.02)
    finally:
        await db.close()
    assert not wal.exists() or wal.stat().st_size == 0


async def test_a_database_of_the_first_schema_is_upgraded_in_place(
    db_file: Path, clock: FrozenClock
) -> None:
    db_file.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO recipients (key, state) VALUES ('r', x'80')")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    backend = await open_at(db_file, clock)
    try:
        gone = await backend.store.purge(otps_before=0, recipients_before=clock.now())
    finally:
        await backend.close()
    assert gone == 1  # the old row counts as never touched
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_the_wal_stays_bounded_under_writes_that_never_pause(
    db_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_conn, "REWIND_FRAMES", 200)
    db = await Database.open(db_file, checkpoint_interval=0.01)
    wal = db_file.with_name(db_file.name + "-wal")
    blob = b"x" * 2000
    peak = 0
    try:
        await db.write(lambda c: c.execute("CREATE TABLE filler (n INTEGER, b BLOB)"))
        for n in range(6000):  # ~12 MB of rows, written back to back
            await db.write(lambda c, n=n: c.execute("INSERT INTO filler VALUES (?, ?)",
                                                    (n, blob)))
            if n % 50 == 0:  # a moment of idleness, as a server has between requests
                peak = max(peak, wal.stat().st_size)
                # long enough for the checkpointer's thread to be scheduled on a busy
                # machine: the bound is about what it does when it runs, not how soon
                await asyncio.sleep(0.01)
    finally:
        await db.close()
    # Unbounded, the WAL would hold every page written: over 12 MB.
    assert peak < 8 * 1024 * 1024, peak
