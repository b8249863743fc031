"""The outcome table (what a driver's answer means for a send), and the dispatcher acting
on the outcomes v0.1 did not have: a broken driver and an unknown outcome."""

from __future__ import annotations

import pytest

from otpgate.core.otp import DeliveryStatus
from otpgate.dispatch.outcome import Outcome, classify, retried
from otpgate.errors import (
    BrokenDriverError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from otpgate.events import EventType
from tests.unit.test_dispatch import ScriptedDriver, World
from tests.unit.test_dispatch import world as world


@pytest.mark.parametrize(("error", "outcome"), [
    (None, Outcome.SENT),
    (TemporaryDeliveryError("429", retry_after=3), Outcome.TEMPORARY),
    (UnknownOutcomeError("read timeout"), Outcome.UNKNOWN),
    (TimeoutError(), Outcome.UNKNOWN),
    (PermanentDeliveryError("21211 invalid number"), Outcome.PERMANENT),
    (BrokenDriverError("20003 authenticate"), Outcome.BROKEN),
    (RuntimeError("a bug in a driver"), Outcome.TEMPORARY),
])
def test_every_answer_of_a_driver_maps_to_one_outcome(error: BaseException | None,
                                                      outcome: Outcome) -> None:
    assert classify(error) is outcome


def test_only_temporary_and_unknown_outcomes_are_retried_on_the_same_driver() -> None:
    assert [o for o in Outcome if retried(o)] == [Outcome.TEMPORARY, Outcome.UNKNOWN]


async def test_a_broken_driver_hands_the_send_to_the_next_driver_at_once(world: World) -> None:
    world.routes = {"sms": ("broken", "capture")}
    broken = ScriptedDriver("broken", BrokenDriverError("401 bad credentials"))
    await world.dispatcher(broken)
    await world.dispatcher(world.capture())
    otp_id = await world.request()
    await world.drain()
    row = await world.delivery(otp_id)
    assert (row.driver, row.status) == ("capture", DeliveryStatus.SENT)
    assert len(broken.calls) == 1
    assert world.published(EventType.DELIVERY_FAILED) == []


async def test_a_broken_driver_without_a_fallback_is_retried_not_failed(world: World) -> None:
    world.routes = {"sms": ("broken",)}
    broken = ScriptedDriver("broken", BrokenDriverError("401 bad credentials"))
    dispatcher, otp_id, dispatch = await world.one_send(broken)
    with pytest.raises(TemporaryDeliveryError, match="bad credentials"):
        await dispatcher.handle(dispatch)
    row = await world.delivery(otp_id)
    assert (row.status, row.attempts) == (DeliveryStatus.QUEUED, 1)
    await dispatcher.handle(dispatch)  # credentials fixed: the script is spent
    row = await world.delivery(otp_id)
    assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)


async def test_an_unknown_outcome_is_sent_again_under_the_same_idempotency_key(
    world: World,
) -> None:
    unsure = ScriptedDriver("unsure", UnknownOutcomeError("read timed out"))
    dispatcher, otp_id, dispatch = await world.one_send(unsure)
    with pytest.raises(UnknownOutcomeError):
        await dispatcher.handle(dispatch)
    await dispatcher.handle(dispatch)
    first, second = unsure.calls
    assert first.idempotency_key == second.idempotency_key
    assert first.body == second.body
    row = await world.delivery(otp_id)
    assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)
