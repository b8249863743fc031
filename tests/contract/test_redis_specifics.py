"""What the Redis backend promises beyond the shared contract: a pending OTP stored once,
round trips per request, streams that only ever hold what is unacknowledged, take-over of
what a dead consumer held, hand-back on stop, and recovery from an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from otpgate import events
from otpgate.backends import Backend, open_redis
from otpgate.bus.base import Limits, Subscription
from otpgate.clock import FrozenClock
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring
from otpgate.errors import BusError, StoreError
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.redisio.keys import Keys
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService
from tests import redis_servers
from tests.contract.conftest import BACKENDS, Recorder, emitting, event, require, subscribe

OTP = "otp_" + "r" * 22
REDIS = next(case for case in BACKENDS if case.name == "redis")


@pytest.fixture
def server() -> redis_servers.RedisServer:
    require(REDIS)
    return redis_servers.standalone()


@pytest.fixture
async def backend(server: redis_servers.RedisServer,
                  clock: FrozenClock) -> AsyncIterator[Backend]:
    opened = await open_redis(server.url, clock, poll_interval=0.01)
    try:
        yield opened
    finally:
        await opened.close()


def service(backend: Backend, clock: FrozenClock) -> OtpService:
    return OtpService(backend.store, clock, Keyring.from_secret(b"s" * 32), Policy(),
                      StaticRouter({"sms": ("capture",)}), codegen=lambda n: "123456"[:n])


async def client_commands(server: redis_servers.RedisServer,
                          work: Callable[[], Awaitable[Any]]) -> list[str]:
    """The commands clients sent while ``work`` ran (MONITOR; not those run by scripts)."""
    seen: list[str] = []
    redis, marker = Redis(port=server.port), Redis(port=server.port)
    await marker.ping()  # connected before counting starts
    async with redis.monitor() as monitor:
        async def watch() -> None:
            while True:
                info = await monitor.next_command()
                if info["command"] == "ECHO counted":
                    return
                if info["client_type"] != "lua":
                    seen.append(info["command"].split()[0].upper())

        watching = asyncio.create_task(watch())
        await asyncio.sleep(0.05)
        await work()
        await marker.echo("counted")
        await asyncio.wait_for(watching, 5)
    await redis.aclose()
    await marker.aclose()
    return seen


async def test_a_pending_otp_lives_in_its_recipients_state_until_its_record_is_written(
    backend: Backend, clock: FrozenClock, server: redis_servers.RedisServer
) -> None:
    gateway = service(backend, clock)
    otp = (await gateway.request(OtpRequest(to="+14155550123"))).otp
    raw = server.client()
    keys = Keys()

    assert raw.get(keys.otp(0, otp.id)) == b"~" + otp.recipient.encode()
    assert await backend.store.get(otp.id) == otp

    assert (await gateway.verify(otp.id, "123456")).valid
    record = raw.get(keys.otp(0, otp.id))
    assert record is not None and not record.startswith(b"~")
    found = await backend.store.get(otp.id)
    assert found is not None and found.status is Status.APPROVED


async def test_a_new_code_costs_two_round_trips_a_coalesced_one_one_a_verify_two(
    backend: Backend, clock: FrozenClock, server: redis_servers.RedisServer
) -> None:
    gateway = service(backend, clock)
    await gateway.request(OtpRequest(to="+14155550100"))  # reads the subscriptions once
    to = "+14155550123"

    created: list[str] = []

    async def request() -> None:
        created.append((await gateway.request(OtpRequest(to=to))).otp.id)

    assert await client_commands(server, request) == ["HMGET", "EVALSHA"]
    assert await client_commands(server, request) == ["HMGET"]  # coalesced: nothing to write
    # By id: the OTP's read brings its recipient's state, which the change starts from.
    assert await client_commands(server, lambda: gateway.verify(created[0], "000000")) == [
        "EVAL", "EVALSHA"]
    assert len(set(created)) == 1


async def test_a_stream_holds_only_what_is_not_yet_acknowledged_and_drops_nothing_else(
    backend: Backend, clock: FrozenClock, server: redis_servers.RedisServer
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "taken", Filter(), seen)
    await backend.bus.declare(Subscription("nobody", Filter()))
    batch = [event(EventType.SENT, OTP, clock.now()) for _ in range(300)]
    await backend.store.transact("r", lambda s: emitting(batch))

    while await backend.bus.pump(1000):
        pass

    keys, raw = Keys(), server.client()
    assert len(seen.seen) == 300
    assert raw.xlen(keys.queue(0, "taken")) == 0
    assert raw.xlen(keys.queue(0, "nobody")) == 300


async def test_an_entry_a_consumer_read_but_died_holding_is_taken_over_after_a_lease(
    backend: Backend, clock: FrozenClock, server: redis_servers.RedisServer
) -> None:
    seen = Recorder()
    await subscribe(backend.bus, "orphans", Filter(), seen, lease=0.3)
    lost = event(EventType.SENT, OTP, clock.now())
    await backend.store.transact("r", lambda s: emitting([lost]))
    # A consumer read it and died before it recorded its lease.
    raw = server.client()
    raw.xreadgroup("otpgate", "dead-consumer", {Keys().queue(0, "orphans"): ">"})

    assert await backend.bus.pump() == 0
    deadline = time.monotonic() + 5
    while not seen.seen and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # Redis' own clock must see it idle for a lease
        await backend.bus.pump()
    assert seen.ids == [lost.id]


async def test_a_stopped_consumer_hands_back_what_it_could_not_finish(
    server: redis_servers.RedisServer, clock: FrozenClock
) -> None:
    first = await open_redis(server.url, clock, poll_interval=0.01, drain_timeout=0.1)
    second = await open_redis(server.url, clock, poll_interval=0.01)
    started = asyncio.Event()
    calls: list[int] = []

    async def hang(evt: CloudEvent) -> None:
        calls.append(1)
        started.set()
        await asyncio.Event().wait()

    try:
        await subscribe(first.bus, "slow", Filter(), hang, lease=30)
        await first.bus.start()
        await first.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))
        await asyncio.wait_for(started.wait(), 5)
        await first.bus.stop()

        taken = Recorder()
        await subscribe(second.bus, "slow", Filter(), taken, lease=30)
        assert await second.bus.pump() == 1, "handed back: due at once, not after 30 s"
        assert len(taken.seen) == 1
    finally:
        await first.close()
        await second.close()


async def test_two_stores_racing_one_recipient_make_one_code_and_coalesce_the_rest(
    server: redis_servers.RedisServer, clock: FrozenClock
) -> None:
    opened = [await open_redis(server.url, clock) for _ in range(2)]
    try:
        gateways = [service(b, clock) for b in opened]
        answers = await asyncio.gather(*(gateways[n % 2].request(OtpRequest(to="+14155550123"))
                                         for n in range(20)))
    finally:
        for b in opened:
            await b.close()
    assert len({a.otp.id for a in answers}) == 1
    assert sorted(a.outcome.value for a in answers) == ["coalesced"] * 19 + ["created"]


async def test_an_outage_is_a_prompt_error_and_a_consumer_recovers_even_from_lost_data(
    tmp_path: Path, clock: FrozenClock
) -> None:
    require(REDIS)
    own = redis_servers.start_server(tmp_path)
    opened = await open_redis(own.url, clock, poll_interval=0.01, timeout=0.5)
    seen: asyncio.Queue[CloudEvent] = asyncio.Queue()

    async def handler(evt: CloudEvent) -> None:
        await seen.put(evt)

    try:
        await subscribe(opened.bus, "through", Filter(), handler)
        await opened.bus.start()
        own.kill()
        began = time.monotonic()
        with pytest.raises(StoreError):
            await opened.store.get(OTP)
        with pytest.raises(StoreError):
            await opened.store.transact("r", lambda s: emitting([]))
        with pytest.raises(BusError):
            await opened.bus.ping()
        assert time.monotonic() - began < 3 * 0.5 + 1
        await asyncio.sleep(0.3)  # the consumer meets the outage and keeps trying

        own.start()  # without persistence: the data went with it
        deadline = time.monotonic() + 10
        while not await opened.bus.backlog():  # until the consumer declared it again
            assert time.monotonic() < deadline, "the subscription was not declared again"
            await asyncio.sleep(0.05)
        after = event(EventType.SENT, OTP, clock.now())
        await opened.store.transact("r", lambda s: emitting([after]))
        assert (await asyncio.wait_for(seen.get(), 10)).id == after.id
    finally:
        await opened.close()
        own.stop()


async def test_consumers_of_dead_processes_that_hold_nothing_leave_the_group(
    backend: Backend, clock: FrozenClock, server: redis_servers.RedisServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from otpgate.bus import redis_deliveries

    monkeypatch.setattr(redis_deliveries, "IDLE_CONSUMER", 0.05)
    seen = Recorder()
    await subscribe(backend.bus, "crowded", Filter(), seen)
    raw, stream = server.client(), Keys().queue(0, "crowded")
    raw.xreadgroup("otpgate", "gone-for-an-hour", {stream: ">"})  # an empty read joins it
    await asyncio.sleep(0.1)  # idle for longer than the (shortened) hour, by Redis' clock

    await backend.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))
    assert await backend.bus.pump() == 1

    names = [c["name"] for c in raw.xinfo_consumers(stream, "otpgate")]
    assert b"gone-for-an-hour" not in names and len(names) == 1


async def test_a_sentinel_url_finds_the_primary_it_monitors(
    tmp_path: Path, clock: FrozenClock
) -> None:
    require(REDIS)
    primary = redis_servers.start_server(tmp_path)
    port = redis_servers.free_port()
    (tmp_path / "sentinel.conf").write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor otpgate-test 127.0.0.1 {primary.port} 1\n")
    sentinel = redis_servers.RedisServer(port, tmp_path, [str(tmp_path / "sentinel.conf"),
                                                          "--sentinel"]).start()
    opened = await open_redis(f"redis+sentinel://127.0.0.1:{port}/otpgate-test", clock)
    try:
        seen = Recorder()
        await subscribe(opened.bus, "through", Filter(), seen)
        sent = event(EventType.SENT, OTP, clock.now())
        await opened.store.transact("r", lambda s: emitting([sent]))
        assert await opened.bus.pump() == 1
        assert seen.ids == [sent.id]
        assert primary.client().exists(Keys().queue(0, "through"))
    finally:
        await opened.close()
        sentinel.stop()
        primary.stop()


async def test_a_subscription_another_process_declares_takes_the_next_event_at_once(
    server: redis_servers.RedisServer, clock: FrozenClock
) -> None:
    writer = await open_redis(server.url, clock)
    reader = await open_redis(server.url, clock)
    try:
        # The writer learns the subscriptions (none match its event), then another process
        # declares one that does: the very next write must reach it.
        await writer.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))
        seen = Recorder()
        await subscribe(reader.bus, "late", Filter.of(type=EventType.SENT.value), seen)
        after = event(EventType.SENT, OTP, clock.now())
        await writer.store.transact("r", lambda s: emitting([after]))
        await writer.bus.publish([event(EventType.SENT, OTP, clock.now())])
        assert await reader.bus.pump() == 2
        assert seen.ids[0] == after.id
    finally:
        await writer.close()
        await reader.close()


async def test_a_dead_lettered_dispatch_event_is_kept_without_its_sealed_payload(
    backend: Backend, clock: FrozenClock
) -> None:
    from otpgate.dispatch import subscription_for
    from otpgate.errors import TemporaryDeliveryError

    async def refuse(evt: CloudEvent) -> None:
        raise TemporaryDeliveryError("provider down")

    sub = subscription_for("twilio")
    await backend.bus.declare(sub)
    backend.bus.consume(sub.name, refuse, Limits(max_deliveries=1))
    dispatch = events.new(EventType.DISPATCH, OTP, {"otp_id": OTP, "sealed": "c2VjcmV0"},
                          clock.now(), channel="sms", driver="twilio")
    await backend.store.transact("r", lambda s: emitting([dispatch]))

    assert await backend.bus.pump() == 1
    [dead] = await backend.bus.dead_letters(sub.name)
    assert dead.event.id == dispatch.id
    assert dead.event.data == {"otp_id": OTP}


async def test_a_consumer_whose_lease_was_taken_over_cannot_settle_its_successors_delivery(
    server: redis_servers.RedisServer, clock: FrozenClock
) -> None:
    slow, fast = [await open_redis(server.url, clock) for _ in range(2)]
    slow_may_finish, fast_started, never = asyncio.Event(), asyncio.Event(), asyncio.Event()
    slow_started = asyncio.Event()

    async def first(evt: CloudEvent) -> None:
        slow_started.set()
        await slow_may_finish.wait()

    async def second(evt: CloudEvent) -> None:
        fast_started.set()
        await never.wait()

    try:
        await subscribe(slow.bus, "held", Filter(), first, lease=10)
        await subscribe(fast.bus, "held", Filter(), second, lease=10)
        await slow.store.transact("r", lambda s: emitting([event(EventType.SENT, OTP, 0)]))
        late = asyncio.create_task(slow.bus.pump())
        await asyncio.wait_for(slow_started.wait(), 5)  # the slow one holds it
        clock.advance(11)  # the slow one's lease ran out: the fast one takes over
        taking = asyncio.create_task(fast.bus.pump())
        await asyncio.wait_for(fast_started.wait(), 5)
        slow_may_finish.set()
        assert await late == 1

        [held] = server.client().xpending_range(Keys().queue(0, "held"), "otpgate", "-", "+",
                                                10)
        assert held["times_delivered"] == 2, "the late acknowledgement was not refused"
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
    finally:
        await slow.close()
        await fast.close()
