"""Pacing (``mps=``) through a real HTTP driver and the runtime's own dispatchers: the
queue drains at the driver's rate, losing and doubling nothing, and a send whose turn
would come after its code expires is recorded ``expired`` without reaching the provider.
The Redis pace is one bucket for every process."""

from __future__ import annotations

import base64
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from otpgate import config
from otpgate.bus.memory import MemoryBus
from otpgate.clock import Clock, FrozenClock, SystemClock
from otpgate.core.otp import DeliveryStatus
from otpgate.drivers.wrappers import Sleep
from otpgate.redisio.conn import connect
from otpgate.redisio.pace import RedisPace
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest
from tests import redis_servers
from tests.e2e.server import UNGUARDED
from tests.providers.stand_in import Call, Reply, StandIn

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
KEY = bytes(range(32)).hex()


class Stamped:
    """A provider that answers 200 and notes when each message arrived (real time)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def __call__(self, call: Call) -> Reply:
        self.arrivals.append(time.monotonic())
        return Reply(200)


@pytest.fixture
def provider() -> Iterator[tuple[StandIn, Stamped]]:
    stamped = Stamped()
    with StandIn(stamped) as server:
        yield server, stamped


async def paced_gateway(tmp_path: Path, server: StandIn, clock: Clock, mps: str,
                        sleep: Sleep | None = None, **env: str) -> Runtime:
    origin = server.url.removeprefix("http://")
    settings = config.from_env({
        "OTPGATE_STORE_URL": "memory://", "OTPGATE_DATA_DIR": str(tmp_path),
        "OTPGATE_SECRET_KEY": KEY,
        "OTPGATE_DRIVERS_SMS": f"webhook+http://{origin}/otp?secret={SECRET}&mps={mps}",
        **UNGUARDED, **env})
    runtime = await Runtime.open(settings, clock)
    if sleep is not None:
        runtime.sleep = sleep
    for dispatcher in runtime.dispatchers():
        runtime.backend.bus.consume(dispatcher.subscription().name, dispatcher.handle,
                                    dispatcher.limits())
    return runtime


async def drain(runtime: Runtime) -> None:
    bus = runtime.backend.bus
    assert isinstance(bus, MemoryBus)
    while await bus.pump(1000):
        pass


async def test_300_codes_at_100_a_second_take_three_seconds_none_lost_none_doubled(
    tmp_path: Path, provider: tuple[StandIn, Stamped],
) -> None:
    server, stamped = provider
    runtime = await paced_gateway(tmp_path, server, SystemClock(), "100")
    try:
        # One code first, so that the provider's connection is open, as it is while
        # otpgate runs: the 300 are then timed by the pace alone.
        await runtime.service.request(OtpRequest(to="+14155559999"))
        await drain(runtime)
        server.calls.clear()
        stamped.arrivals.clear()
        ids = [(await runtime.service.request(OtpRequest(to=f"+1415555{n:04d}"))).otp.id
               for n in range(300)]
        await drain(runtime)
        assert len(stamped.arrivals) == 300
        assert stamped.arrivals[-1] - stamped.arrivals[0] >= 2.9
        sent_to = Counter(call.json()["otp_id"] for call in server.calls)
        assert set(sent_to) == set(ids) and set(sent_to.values()) == {1}
        for otp_id in ids:
            [row] = await runtime.service.store.deliveries(otp_id)
            assert (row.status, row.attempts) == (DeliveryStatus.SENT, 1)
    finally:
        await runtime.close()


async def test_the_tail_of_a_queue_longer_than_the_codes_live_is_expired_never_sent(
    tmp_path: Path, provider: tuple[StandIn, Stamped],
) -> None:
    server, _ = provider
    clock = FrozenClock()

    async def no_wait(seconds: float) -> None:  # the clock stands still: turns stack up
        return None

    runtime = await paced_gateway(tmp_path, server, clock, "1", no_wait,
                                  OTPGATE_BUS_LEASE="300")
    try:
        ids = [(await runtime.service.request(OtpRequest(
            to=f"+1415555{n:04d}", ttl_seconds=30))).otp.id for n in range(40)]
        await drain(runtime)
        rows = [(await runtime.service.store.deliveries(otp_id))[0] for otp_id in ids]
        statuses = Counter(row.status for row in rows)
        # Slots 0 s … 29 s go out within the 30 s the codes live; the rest would be late.
        assert statuses == {DeliveryStatus.SENT: 30, DeliveryStatus.EXPIRED: 10}
        assert {row.status for row in rows[30:]} == {DeliveryStatus.EXPIRED}
        reached = {call.json()["otp_id"] for call in server.calls}
        assert reached == set(ids[:30])
    finally:
        await runtime.close()


def test_a_bad_pace_stops_the_start() -> None:
    from otpgate.errors import ConfigurationError
    from otpgate.runtime import name_drivers

    for query in ("mps=0", "mps=fast", "mps=-3", "burst=2", "mps=5&burst=0"):
        with pytest.raises(ConfigurationError):
            name_drivers({"sms": (f"console://?{query}",)})


async def test_two_processes_on_one_redis_share_one_pace() -> None:
    if (missing := redis_servers.missing()) is not None:
        import os

        if os.environ.get("CI"):
            pytest.fail(f"Redis unavailable in CI: {missing}")
        pytest.skip(missing)
    url = redis_servers.standalone().url + "?prefix=pacetest"
    first, second = connect(url), connect(url)
    try:
        paces = [RedisPace(first, "twilio", 50), RedisPace(second, "twilio", 50)]
        waits = [(await paces[n % 2].reserve(0.0, 60)).wait for n in range(40)]
        # 40 slots, 1/50 s apart, whichever process took them: the last one ≈ 0.78 s off.
        assert waits[0] < 0.02
        assert max(waits) >= 39 / 50 - 0.2
        assert all(b > a for a, b in itertools.pairwise(waits))
        refused = await paces[0].reserve(0.0, 0.1)
        assert not refused.taken and refused.wait >= 0.5
        after = await paces[1].reserve(0.0, 60)
        assert after.taken and after.wait - max(waits) < 0.1, "a refusal takes no slot"
    finally:
        await first.close()
        await second.close()


async def test_worker_processes_of_the_embedded_runtime_share_the_rate_out(
    tmp_path: Path, provider: tuple[StandIn, Stamped],
) -> None:
    server, _ = provider
    runtime = await paced_gateway(tmp_path, server, FrozenClock(), "100&burst=4",
                                  OTPGATE_WORKERS="2")
    try:
        pace = runtime.paces["webhook"]
        assert (pace.rate, pace.burst) == (50, 2)
    finally:
        await runtime.close()
