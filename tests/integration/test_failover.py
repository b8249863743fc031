"""Failover through real HTTP drivers: a local provider stand-in for each of two webhook
drivers, the runtime's own dispatcher assembly (breakers, pacing), the in-memory bus pumped
by hand and an injected clock, so that 30 s of an outage take no real time."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otpgate import config
from otpgate.breaker import BreakerState
from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.core.otp import Delivery, DeliveryStatus, Status
from otpgate.events import EventType
from otpgate.housekeeping import FailureWatcher
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest
from tests.e2e.server import UNGUARDED
from tests.providers.stand_in import Call, Reply, StandIn

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
KEY = bytes(range(32)).hex()


@dataclass
class Gateway:
    runtime: Runtime
    clock: FrozenClock
    primary: StandIn
    secondary: StandIn
    sent: int = 0

    @property
    def bus(self) -> MemoryBus:
        bus = self.runtime.backend.bus
        assert isinstance(bus, MemoryBus)
        return bus

    async def request(self, **fields: object) -> str:
        """A code for a fresh recipient, dispatched until nothing is due."""
        self.sent += 1
        to = f"+1415555{self.sent:04d}"
        otp = (await self.runtime.service.request(OtpRequest(to=to, **fields))).otp  # type: ignore[arg-type]
        await self.drain()
        return otp.id

    async def drain(self) -> None:
        while await self.bus.pump():
            pass

    async def deliveries(self, otp_id: str) -> list[Delivery]:
        return await self.runtime.service.store.deliveries(otp_id)

    def dispatches(self, otp_id: str) -> list[str]:
        return [e.driver for e in self.bus.log
                if e.type == EventType.DISPATCH.value and e.subject == otp_id]

    def breaker(self) -> BreakerState:
        return self.runtime.breakers.of("primary").state


def stand_in(answer: Callable[[Call], Reply]) -> Iterator[StandIn]:
    with StandIn(answer) as server:
        yield server


async def open_gateway(tmp_path: Path, primary: StandIn, secondary: StandIn,
                       clock: FrozenClock, **env: str) -> Runtime:
    def url(server: StandIn, name: str, extra: str = "") -> str:
        origin = server.url.removeprefix("http://")
        return f"webhook+http://{origin}/otp?secret={SECRET}&name={name}&timeout=2{extra}"

    settings = config.from_env({
        "OTPGATE_STORE_URL": "memory://", "OTPGATE_DATA_DIR": str(tmp_path),
        "OTPGATE_SECRET_KEY": KEY,
        "OTPGATE_DRIVERS_SMS": f"{url(primary, 'primary')},{url(secondary, 'secondary')}",
        "OTPGATE_BREAKER_MIN_CALLS": "5", "OTPGATE_BREAKER_WINDOW": "30",
        "OTPGATE_BREAKER_OPEN_FOR": "10", **UNGUARDED, **env})
    runtime = await Runtime.open(settings, clock)
    for dispatcher in runtime.dispatchers():
        runtime.backend.bus.consume(dispatcher.subscription().name, dispatcher.handle,
                                    dispatcher.limits())
    watcher = FailureWatcher(runtime.housekeeping)
    runtime.backend.bus.consume(watcher.subscription.name, watcher.handle, runtime.limits)
    return runtime


@pytest.fixture
async def outage(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The primary answers 503 for the first 30 s of the clock, then 200; the secondary
    always 200."""
    clock = FrozenClock()
    healed_at = clock.now() + 30

    def primary_answer(call: Call) -> Reply:
        return Reply(503) if clock.now() < healed_at else Reply(200)

    primaries = stand_in(primary_answer)
    secondaries = stand_in(lambda call: Reply(200))
    primary, secondary = next(primaries), next(secondaries)
    runtime = await open_gateway(tmp_path, primary, secondary, clock)
    yield Gateway(runtime, clock, primary, secondary)
    await runtime.close()
    for servers in (primaries, secondaries):
        next(servers, None)


async def test_a_30_s_outage_of_the_primary_sends_every_code_through_the_secondary_at_once(
    outage: Gateway,
) -> None:
    states = []
    sent = []
    for _ in range(30):  # a code a second while the primary answers 503
        otp_id = await outage.request()
        sent.append(otp_id)
        states.append(outage.breaker())
        [row] = await outage.deliveries(otp_id)
        # Within one retry: the secondary sent it before the clock moved at all.
        assert (row.driver, row.status, row.attempts) == ("secondary", DeliveryStatus.SENT, 1)
        assert outage.dispatches(otp_id) == ["primary", "secondary"]
        outage.clock.advance(1)
    assert len(outage.secondary.calls) == 30
    # Five 503s open the breaker; then only a probe every 10 s reaches the primary.
    assert states[:4] == [BreakerState.CLOSED] * 4
    assert states[4] is BreakerState.OPEN
    assert BreakerState.OPEN in states[5:]
    assert len(outage.primary.calls) < 10
    probes = len(outage.primary.calls) - 5
    assert probes >= 2, "the breaker half-opened and probed the primary while it was down"

    # Healed: the next probe closes the breaker, and traffic goes back to the primary.
    outage.clock.advance(10)
    assert outage.breaker() is BreakerState.HALF_OPEN
    healed = [await outage.request() for _ in range(5)]
    assert outage.breaker() is BreakerState.CLOSED
    for otp_id in healed:
        [row] = await outage.deliveries(otp_id)
        assert (row.driver, row.status) == ("primary", DeliveryStatus.SENT)
        assert outage.dispatches(otp_id) == ["primary"]
    assert len(outage.secondary.calls) == 30
    for otp_id in sent:  # nothing was sent twice
        assert outage.dispatches(otp_id).count("secondary") == 1


async def test_readyz_details_and_the_breaker_metric_follow_the_real_breaker(
    outage: Gateway,
) -> None:
    from otpgate.observe import metrics

    for _ in range(5):
        await outage.request()
    [view] = [v for v in outage.runtime.breakers.views() if v.driver == "primary"]
    assert view.state is BreakerState.OPEN
    metrics.observe_breakers(outage.runtime.breakers.views(), outage.runtime.driver_urls)
    assert b'otpgate_breaker_state{driver="primary"} 2.0' in metrics.exposition()


@pytest.fixture
def refusing(tmp_path: Path) -> Iterator[Callable[..., StandIn]]:
    servers: list[Iterator[StandIn]] = []

    def make(status: int) -> StandIn:
        found = stand_in(lambda call: Reply(status))
        servers.append(found)
        return next(found)

    yield make
    for found in servers:
        next(found, None)


async def test_a_permanent_failure_moves_to_the_next_driver_once(
    tmp_path: Path, refusing: Callable[..., StandIn],
) -> None:
    clock = FrozenClock()
    primary, secondary = refusing(400), refusing(200)
    runtime = await open_gateway(tmp_path, primary, secondary, clock)
    try:
        gateway = Gateway(runtime, clock, primary, secondary)
        otp_id = await gateway.request()
        [row] = await gateway.deliveries(otp_id)
        assert (row.driver, row.status) == ("secondary", DeliveryStatus.SENT)
        assert gateway.dispatches(otp_id) == ["primary", "secondary"]
        clock.advance(600)
        await gateway.drain()
        assert gateway.dispatches(otp_id) == ["primary", "secondary"]
        assert (len(primary.calls), len(secondary.calls)) == (1, 1)
    finally:
        await runtime.close()


async def test_every_driver_refusing_for_good_fails_the_otp(
    tmp_path: Path, refusing: Callable[..., StandIn],
) -> None:
    clock = FrozenClock()
    primary, secondary = refusing(400), refusing(404)
    runtime = await open_gateway(tmp_path, primary, secondary, clock)
    try:
        gateway = Gateway(runtime, clock, primary, secondary)
        otp_id = await gateway.request()
        [row] = await gateway.deliveries(otp_id)
        assert (row.driver, row.status) == ("secondary", DeliveryStatus.FAILED)
        otp = await runtime.service.store.get(otp_id)
        assert otp is not None and otp.status is Status.FAILED
        assert (len(primary.calls), len(secondary.calls)) == (1, 1)
    finally:
        await runtime.close()


async def test_bad_credentials_open_the_breaker_at_once_and_the_send_moves_on(
    tmp_path: Path, refusing: Callable[..., StandIn],
) -> None:
    clock = FrozenClock()
    primary, secondary = refusing(401), refusing(200)
    runtime = await open_gateway(tmp_path, primary, secondary, clock)
    try:
        gateway = Gateway(runtime, clock, primary, secondary)
        first = await gateway.request()
        assert gateway.breaker() is BreakerState.OPEN
        second = await gateway.request()
        for otp_id in (first, second):
            [row] = await gateway.deliveries(otp_id)
            assert (row.driver, row.status) == ("secondary", DeliveryStatus.SENT)
        assert len(primary.calls) == 1, "an open breaker skips the driver without a call"
    finally:
        await runtime.close()

