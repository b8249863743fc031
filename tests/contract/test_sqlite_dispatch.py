"""Sending many codes at once from the embedded backend: sends in flight, what a send costs
the writer, the writer's two lanes, whether the file takes writes, and consumers proven
dead."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otpgate.bus.sqlite_outbox import SqliteOutboxBus
from otpgate.capture.sqlite import SqliteCaptureSink
from otpgate.clock import FrozenClock
from otpgate.core.messages import Templates
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring
from otpgate.dispatch import Dispatcher
from otpgate.drivers.base import Message, SendReceipt
from otpgate.drivers.capture import CaptureDriver
from otpgate.errors import StoreError, TemporaryDeliveryError
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService
from otpgate.sqlite.db import Database
from otpgate.sqlite.lanes import background
from otpgate.sqlite.owners import Owners
from otpgate.store.sqlite import SqliteStore

SECRET = b"otpgate-test-secret-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]


class GateDriver:
    """A provider that holds every send until ``open`` is set (by the test, or once
    ``open_at`` sends are in flight); counts sends in flight."""

    channels = frozenset({"sms"})

    def __init__(self, name: str = "gate", open_at: int | None = None) -> None:
        self.name = name
        self.open = asyncio.Event()
        self.open_at = open_at
        self.in_flight = 0
        self.most = 0
        self.sent: list[str] = []
        self.fail_once: set[str] = set()

    async def send(self, message: Message) -> SendReceipt:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.open_at is not None and self.in_flight >= self.open_at:
            self.open.set()
        try:
            await self.open.wait()
        finally:
            self.in_flight -= 1
        if message.otp_id in self.fail_once:
            self.fail_once.discard(message.otp_id)
            raise TemporaryDeliveryError("busy", retry_after=5)
        self.sent.append(message.otp_id)
        return SendReceipt(f"gate_{len(self.sent)}")

    def url(self, privacy: bool = True) -> str:
        return "gate://"

    async def close(self) -> None:
        return None


@dataclass
class Embedded:
    """One process's view of the file: its writer, bus, store and a dispatcher."""

    db: Database
    bus: SqliteOutboxBus
    store: SqliteStore
    clock: FrozenClock
    keyring: Keyring

    async def dispatcher(self, driver: GateDriver | CaptureDriver,
                         concurrency: int = 16) -> Dispatcher:
        dispatcher = Dispatcher(store=self.store, driver=driver, keyring=self.keyring,
                                clock=self.clock, templates=Templates.default(),
                                brand="Acme")
        await self.bus.declare(dispatcher.subscription())
        self.bus.consume(dispatcher.subscription().name, dispatcher.handle,
                         dispatcher.limits(concurrency))
        return dispatcher

    async def request(self, count: int, driver: str = "gate") -> list[str]:
        service = OtpService(self.store, self.clock, self.keyring, Policy(),
                             StaticRouter({"sms": (driver,)}))
        return [(await service.request(OtpRequest(to=number(n)))).otp.id
                for n in range(count)]

    async def close(self) -> None:
        await self.bus.stop()
        await self.db.close()


def number(n: int) -> str:
    return f"+1415200{n:04d}"


async def embedded(path: Path, clock: FrozenClock, drain: float = 5.0) -> Embedded:
    db = await Database.open(path)
    bus = SqliteOutboxBus(db, clock, poll_interval=0.01, drain_timeout=drain)
    return Embedded(db, bus, SqliteStore(db, bus, clock), clock, Keyring.from_secret(SECRET))


@pytest.fixture
async def one(tmp_path: Path) -> AsyncIterator[Embedded]:
    opened = await embedded(tmp_path / "otpgate.db", FrozenClock())
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    opened = await Database.open(tmp_path / "otpgate.db")
    try:
        yield opened
    finally:
        await opened.close()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_a_dispatcher_keeps_as_many_sends_in_flight_as_its_concurrency_allows(
    one: Embedded,
) -> None:
    gate = GateDriver(open_at=40)
    await one.dispatcher(gate, concurrency=40)
    ids = await one.request(100)
    await one.bus.start()
    async with asyncio.timeout(10):
        while len(gate.sent) < len(ids):
            await asyncio.sleep(0.005)
    assert gate.most == 40
    assert sorted(gate.sent) == sorted(ids)


async def test_a_sent_code_costs_three_transactions_its_ack_rides_with_its_outcome(
    one: Embedded, tmp_path: Path
) -> None:
    gate = GateDriver()
    gate.open.set()
    await one.dispatcher(gate)
    [otp_id] = await one.request(1)
    before = one.db.batch_no
    assert await one.bus.pump() == 1
    # the bus's claim, the ledger's claim, and the ledger's outcome with the bus's ack
    assert one.db.batch_no - before == 3
    assert gate.sent == [otp_id]
    db = tmp_path / "otpgate.db"
    assert rows(db, "SELECT status FROM ledger") == [("sent",)]
    assert rows(db, "SELECT count(*) FROM deliveries WHERE subscription LIKE 'dispatch.%'"
                ) == [(0,)]
    assert await one.bus.pump() == 0


async def test_a_code_sent_by_the_capture_driver_lands_in_the_inbox_once(
    one: Embedded,
) -> None:
    await one.dispatcher(CaptureDriver(SqliteCaptureSink(one.db), one.clock))
    [otp_id] = await one.request(1, driver="capture")
    assert await one.bus.pump() == 1
    assert await one.bus.pump() == 0
    assert [m.otp_id for m in await SqliteCaptureSink(one.db).list(number(0))] == [otp_id]


async def test_a_send_to_retry_keeps_its_delivery_for_the_bus_to_deliver_again(
    one: Embedded,
) -> None:
    gate = GateDriver()
    gate.open.set()
    await one.dispatcher(gate)
    [otp_id] = await one.request(1)
    gate.fail_once.add(otp_id)
    assert await one.bus.pump() == 1
    assert gate.sent == []
    one.clock.advance(5)
    assert await one.bus.pump() == 1
    assert gate.sent == [otp_id]
    assert await one.bus.pump() == 0


async def test_when_both_lanes_hold_more_than_a_batch_each_gets_half_of_it(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "lanes.db", batch_size=4)
    order: list[str] = []

    async def front(tag: str) -> None:
        await db.write(lambda conn: order.append(tag))

    async def back(tag: str) -> None:
        with background():
            await db.write(lambda conn: order.append(tag))

    try:
        await asyncio.gather(*(front(f"api{n}") for n in range(6)),
                             *(back(f"send{n}") for n in range(2)))
    finally:
        await db.close()
    assert order[:4] == ["api0", "api1", "send0", "send1"]
    assert order[4:] == ["api2", "api3", "api4", "api5"]


async def test_readiness_writes_nothing_while_writes_commit_and_probes_once_when_idle(
    db: Database,
) -> None:
    before = db.batch_no
    await db.writable()  # nothing written since the file was opened: one probe
    await db.writable()  # its answer is kept
    assert db.batch_no == before + 1
    await db.write(lambda conn: None)
    await db.writable()  # a batch just committed: no probe
    assert db.batch_no == before + 2


async def test_a_file_that_refuses_writes_is_not_writable(db: Database) -> None:
    await db.write(lambda conn: conn.execute("PRAGMA query_only = ON"))
    with pytest.raises(StoreError):
        await db.writable(fresh=0)
    await db.read(lambda conn: conn.execute("PRAGMA query_only = OFF"))
    await db.writable(fresh=0)


_HOLDER = """
import sys, time
from pathlib import Path
from otpgate.sqlite.owners import Owners
Owners(Path(sys.argv[1]), sys.argv[2]).hold()
print("held", flush=True)
time.sleep(600)
"""


def test_a_consumer_is_proven_dead_only_once_its_process_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "otpgate.db"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), "elsewhere"],
                              stdout=subprocess.PIPE, text=True)
    me = Owners(path, "me")
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        me.hold()
        assert me.dead() == [], "a live process was taken for dead"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        gone = me.dead()
        assert [g.owner for g in gone] == ["elsewhere"]
        Owners.forget(gone, remove=True)
        assert me.dead() == []
        assert sorted(p.name for p in path.with_name("otpgate.db-owners").iterdir()) == [
            "me.lock"]
    finally:
        holder.kill()
        holder.wait(timeout=10)
        me.release()


_STUCK = """
import asyncio, sys
from pathlib import Path
from otpgate.clock import FrozenClock
from tests.contract.test_sqlite_dispatch import GateDriver, embedded

async def main() -> None:
    stuck = GateDriver()  # never opens: the sends stay in flight until the kill
    process = await embedded(Path(sys.argv[1]), FrozenClock())
    await process.dispatcher(stuck)
    await process.bus.start()
    while stuck.in_flight < int(sys.argv[2]):
        await asyncio.sleep(0.005)
    print("in flight", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_killed_consumers_leases_and_send_claims_are_handed_on_when_another_starts(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "otpgate.db", FrozenClock()
    writer = await embedded(path, clock)
    await writer.dispatcher(GateDriver())  # declares the subscription
    ids = await writer.request(3)
    await writer.close()
    killed = subprocess.Popen([sys.executable, "-c", _STUCK, str(path), "3"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "in flight\n"
    finally:
        killed.kill()
        killed.wait(timeout=10)
    assert len(rows(path, "SELECT 1 FROM ledger WHERE status = 'sending'")) == 3

    survivor = await embedded(path, clock)  # the same moment: every lease is still live
    gate = GateDriver()
    gate.open.set()
    try:
        await survivor.dispatcher(gate)
        await survivor.bus.start()  # proves the killed one dead and takes its sends
        async with asyncio.timeout(5):
            while len(gate.sent) < len(ids):
                await asyncio.sleep(0.005)
    finally:
        await survivor.close()
    assert sorted(gate.sent) == sorted(ids)
    assert rows(path, "SELECT status, attempts FROM ledger") == [("sent", 2)] * 3


async def test_a_stopping_consumer_hands_its_unfinished_sends_back(tmp_path: Path) -> None:
    path, clock = tmp_path / "otpgate.db", FrozenClock()
    first = await embedded(path, clock, drain=0.05)
    stuck = GateDriver()
    await first.dispatcher(stuck)
    ids = await first.request(2)
    await first.bus.start()
    async with asyncio.timeout(5):
        while stuck.in_flight < 2:
            await asyncio.sleep(0.005)
    await first.close()  # the grace runs out: cancelled, and handed back

    second = await embedded(path, clock)
    gate = GateDriver()
    gate.open.set()
    try:
        await second.dispatcher(gate)
        assert await second.bus.pump() == 2, "the leases were not handed back"
    finally:
        await second.close()
    assert sorted(gate.sent) == sorted(ids)
