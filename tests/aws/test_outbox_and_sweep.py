"""The outbox across a crash, and the sweep function: republishing, expiry, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from otpgate import registry
from otpgate.api.app import context_of
from otpgate.bus.sns_sqs import REPUBLISH_AFTER, SnsSqsBus
from otpgate.clock import FrozenClock, SystemClock
from otpgate.dispatch import subscription_for
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.housekeeping import FAILURES
from tests.aws.conftest import PHONE, Deployment, answer, fixture, http_event, sqs_event
from tests.aws.test_lambda_flow import api_key, cloud_events


class Crash(BaseException):
    """The function's process dies here (nothing catches it as an error)."""


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(SystemClock().now())


def request(deployment: Deployment, api: Any, key: str, to: str = PHONE) -> Any:
    return api.invoke(http_event("POST", "/v1/otp", {"to": to}, key=key), None)


def test_events_a_crash_kept_from_sns_are_published_by_the_sweep_and_sent(
    deployment: Deployment, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = deployment.api(clock)
    key = api_key(api)

    async def die(self: SnsSqsBus, batch: Sequence[CloudEvent]) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(SnsSqsBus, "publish", die)
        crashed = request(deployment, api, key)
    assert crashed["statusCode"] == 500  # the client saw the function die
    assert deployment.receive("dispatch.capture") == []
    assert len(deployment.items("OUTBOX")) == 1
    sweep = deployment.sweeper(clock)
    schedule = fixture("eventbridge_schedule.json")
    assert sweep.invoke(schedule, None) == {"expired": 0, "republished": 0}, \
        "republished while its writer may still be publishing"

    clock.advance(REPUBLISH_AFTER + 1)
    assert sweep.invoke(schedule, None) == {"expired": 0, "republished": 1}

    assert deployment.items("OUTBOX") == []
    waiting = deployment.receive("dispatch.capture")
    [dispatch] = cloud_events(waiting)
    send = deployment.dispatcher("capture", clock)
    assert send.invoke(sqs_event(waiting, deployment.queue_arn("dispatch.capture")),
                       None) == {"batchItemFailures": []}
    status = answer(api.invoke(http_event("GET", f"/v1/otp/{dispatch['subject']}",
                                          key=key), None))
    assert [c["status"] for c in status["channels"]] == ["sent"]


def test_a_crash_after_the_publish_makes_a_double_publish_that_sends_once(
    deployment: Deployment, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment.listen("sent", Filter.of(type=EventType.SENT.value))
    api = deployment.api(clock)
    key = api_key(api)

    async def publish_then_die(self: SnsSqsBus, outbox: str,
                               batch: Sequence[CloudEvent]) -> None:
        await self.publish(batch)
        raise Crash  # before the outbox item is cleared

    with monkeypatch.context() as patched:
        patched.setattr(SnsSqsBus, "relay", publish_then_die)
        request(deployment, api, key)
    clock.advance(REPUBLISH_AFTER + 1)
    assert deployment.sweeper(clock).invoke(fixture("eventbridge_schedule.json"),
                                            None)["republished"] == 1

    waiting = deployment.receive("dispatch.capture")
    twice = cloud_events(waiting)
    assert len(twice) == 2 and twice[0]["id"] == twice[1]["id"]
    send = deployment.dispatcher("capture", clock)
    assert send.invoke(sqs_event(waiting, deployment.queue_arn("dispatch.capture")),
                       None) == {"batchItemFailures": []}
    inbox = answer(api.invoke(http_event("GET", "/v1/dev/messages", key=key,
                                         query="to=%2B14155550123"), None))
    assert len(inbox) == 1
    assert len(cloud_events(deployment.receive("sent"))) == 1


def test_the_scheduled_sweep_expires_codes_whose_time_is_up(
    deployment: Deployment, clock: FrozenClock,
) -> None:
    deployment.listen("expired", Filter.of(type=EventType.EXPIRED.value))
    api = deployment.api(clock)
    key = api_key(api)
    otp_id = answer(request(deployment, api, key))["id"]
    sweep = deployment.sweeper(clock)
    assert sweep.invoke(fixture("eventbridge_schedule.json"), None)["expired"] == 0

    clock.advance(300)
    assert sweep.invoke(fixture("eventbridge_schedule.json"), None)["expired"] == 1

    status = answer(api.invoke(http_event("GET", f"/v1/otp/{otp_id}", key=key), None))
    assert status["status"] == "expired"
    assert [e["subject"] for e in cloud_events(deployment.receive("expired"))] == [otp_id]


def test_an_otp_no_channel_could_deliver_is_failed_by_the_sweep_from_the_failure_queue(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.DRIVERS, "flaky", ("tests.aws.flaky:from_url", None))
    refused = {"OTPGATE_DRIVERS_SMS": "flaky://?permanent=true"}
    deployment.listen("dispatch.flaky", subscription_for("flaky").filter,
                      topic=deployment.topics.dispatch)
    api = deployment.api(**refused)
    key = api_key(api)
    otp_id = answer(request(deployment, api, key))["id"]
    waiting = deployment.receive("dispatch.flaky")
    deployment.dispatcher("flaky", **refused).invoke(
        sqs_event(waiting, deployment.queue_arn("dispatch.flaky")), None)

    failures = deployment.receive(FAILURES.name)
    assert [e["type"] for e in cloud_events(failures)] == [EventType.DELIVERY_FAILED.value]
    sweep = deployment.sweeper(**refused)
    assert sweep.invoke(sqs_event(failures, deployment.queue_arn(FAILURES.name)),
                        None) == {"batchItemFailures": []}

    status = answer(api.invoke(http_event("GET", f"/v1/otp/{otp_id}", key=key), None))
    assert status["status"] == "failed"


def test_of_twenty_right_answers_at_once_in_two_functions_exactly_one_is_approved(
    deployment: Deployment,
) -> None:
    first, second = deployment.api(), deployment.api()
    key = api_key(first)
    otp_id = answer(request(deployment, first, key))["id"]
    waiting = deployment.receive("dispatch.capture")
    deployment.dispatcher("capture").invoke(
        sqs_event(waiting, deployment.queue_arn("dispatch.capture")), None)
    inbox = answer(first.invoke(http_event("GET", "/v1/dev/messages", key=key,
                                           query="to=%2B14155550123"), None))
    code = next(w.strip(".") for w in inbox[0]["body"].split() if w.strip(".").isdigit())
    answers: list[Any] = []

    def verify_ten(host: Any) -> None:
        service = context_of(host.app).runtime.service

        async def ten() -> list[Any]:
            return await asyncio.gather(*(service.verify(otp_id, code) for _ in range(10)))

        answers.extend(host.run(ten()))

    threads = [threading.Thread(target=verify_ten, args=(h,)) for h in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(answers) == 20
    assert sum(a.valid for a in answers) == 1
    assert {a.status.value for a in answers} == {"approved"}
