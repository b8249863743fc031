"""An OTP none of whose channels can be reached becomes ``failed``; one that still has a
channel in flight stays pending."""

from __future__ import annotations

import pytest

from otpgate.bus.base import Limits
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.errors import PermanentDeliveryError
from otpgate.housekeeping import FailureWatcher, Housekeeping
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService
from tests.unit.test_dispatch import LEASE, TO, ScriptedDriver, World
from tests.unit.test_dispatch import world as world


@pytest.fixture
async def watched(world: World) -> World:
    watcher = FailureWatcher(Housekeeping(world.backend.store, world.clock, Policy()))
    await world.bus.declare(watcher.subscription)
    world.bus.consume(watcher.subscription.name, watcher.handle, Limits(lease=LEASE))
    return world


async def status(world: World, otp_id: str) -> Status:
    otp = await world.backend.store.get(otp_id)
    assert otp is not None
    return otp.status


async def test_an_otp_whose_only_channel_fails_for_good_becomes_failed(watched: World) -> None:
    watched.routes.update({"sms": ("bad",)})
    await watched.dispatcher(ScriptedDriver("bad", PermanentDeliveryError("number blocked")))
    otp_id = await watched.request()
    await watched.drain()
    assert await status(watched, otp_id) is Status.FAILED


async def test_an_otp_with_one_channel_still_delivered_stays_pending(watched: World) -> None:
    watched.routes.update({"sms": ("bad",), "whatsapp": ("good",)})
    await watched.dispatcher(ScriptedDriver("bad", PermanentDeliveryError("number blocked")))
    good = ScriptedDriver("good")
    good.channels = frozenset({"whatsapp"})
    await watched.dispatcher(good)
    otp_id = await watched.request(channels=["sms", "whatsapp"])
    await watched.drain()
    assert await status(watched, otp_id) is Status.PENDING


async def test_a_failure_of_an_old_send_does_not_fail_a_newer_one(watched: World) -> None:
    watched.routes.update({"sms": ("bad",)})
    await watched.dispatcher(ScriptedDriver("bad", PermanentDeliveryError("gateway down")))
    otp_id = await watched.request()
    gateway = OtpService(watched.backend.store, watched.clock, watched.keyring,
                         Policy(), StaticRouter(watched.routes),
                         codegen=lambda n: "123456")
    watched.clock.advance(31)
    resent = await gateway.request(OtpRequest(to=TO))
    assert resent.otp.send_count == 2
    # Send 1 fails for good only now, after send 2 was accepted: the OTP lives on.
    await watched.bus.pump(1)
    sweeps = Housekeeping(watched.backend.store, watched.clock, Policy())
    assert await sweeps.fail_if_undeliverable(otp_id, 1) is False
    assert await status(watched, otp_id) is Status.PENDING
