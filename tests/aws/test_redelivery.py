"""SQS delivers at least once: a batch handled twice sends each code once, and a bad
record fails alone."""

from __future__ import annotations

import pytest

from otpgate import registry
from otpgate.clock import FrozenClock
from otpgate.dispatch import subscription_for
from otpgate.events import EventType, Filter
from tests.aws.conftest import Deployment, answer, http_event, sqs_event
from tests.aws.test_lambda_flow import api_key, cloud_events

NUMBERS = ["+14155550101", "+14155550102", "+14155550103"]


def test_the_same_batch_twice_sends_each_code_once_and_only_the_bad_record_fails(
    deployment: Deployment,
) -> None:
    deployment.listen("sent", Filter.of(type=EventType.SENT.value))
    api = deployment.api()
    key = api_key(api)
    ids = [answer(api.invoke(http_event("POST", "/v1/otp", {"to": to}, key=key), None))["id"]
           for to in NUMBERS]
    waiting = deployment.receive("dispatch.capture", visibility=0)
    assert sorted(e["subject"] for e in cloud_events(waiting)) == sorted(ids)
    bad = {**waiting[0], "MessageId": "0b4c2a4e-5d7f-4b8a-9e61-3f2d1c0b9a87",
           "Body": '{"Type": "Notification", "Message": "not an event"}'}
    batch = sqs_event([*waiting, bad], deployment.queue_arn("dispatch.capture"))
    dispatch = deployment.dispatcher("capture")

    first = dispatch.invoke(batch, None)
    again = dispatch.invoke(batch, None)

    expected = {"batchItemFailures": [{"itemIdentifier": bad["MessageId"]}]}
    assert first == again == expected
    for to, otp_id in zip(NUMBERS, ids, strict=True):
        inbox = answer(api.invoke(http_event("GET", "/v1/dev/messages", key=key,
                                             query=f"to=%2B{to[1:]}"), None))
        assert [m["otp_id"] for m in inbox] == [otp_id]
        status = answer(api.invoke(http_event("GET", f"/v1/otp/{otp_id}", key=key), None))
        assert [(c["status"], c["attempts"]) for c in status["channels"]] == [("sent", 1)]
    sent = cloud_events(deployment.receive("sent"))
    assert sorted(e["subject"] for e in sent) == sorted(ids)


def test_a_poisoned_record_is_reported_each_time_then_moved_to_the_dead_letter_queue(
    deployment: Deployment,
) -> None:
    deployment.sqs.send_message(QueueUrl=deployment.queue_url("dispatch.capture"),
                                MessageBody="{ this is not JSON")
    dispatch = deployment.dispatcher("capture")
    arn = deployment.queue_arn("dispatch.capture")
    reports = []
    for _ in range(5):  # as Lambda's event source would: receive, invoke, keep failures
        messages = deployment.receive_once("dispatch.capture")
        if not messages:
            break
        reports.append(dispatch.invoke(sqs_event(messages, arn), None))

    max_receives = int(deployment.env["OTPGATE_BUS_MAX_DELIVERIES"])
    assert len(reports) == max_receives
    assert all(len(r["batchItemFailures"]) == 1 for r in reports)
    dlq = deployment.sqs.get_queue_url(QueueName=f"{deployment.name}-dispatch-capture-dlq")
    dead = deployment.sqs.receive_message(QueueUrl=dlq["QueueUrl"], MaxNumberOfMessages=10)
    assert [m["Body"] for m in dead["Messages"]] == ["{ this is not JSON"]


def test_a_record_that_fails_for_now_is_visible_again_after_its_backoff_not_the_timeout(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.DRIVERS, "flaky", ("tests.aws.flaky:from_url", None))
    deployment.listen("dispatch.flaky", subscription_for("flaky").filter,
                      topic=deployment.topics.dispatch)
    api = deployment.api(OTPGATE_DRIVERS_SMS="flaky://")
    api.invoke(http_event("POST", "/v1/otp", {"to": NUMBERS[0]}, key=api_key(api)), None)
    waiting = deployment.receive("dispatch.flaky", visibility=600)
    dispatch = deployment.dispatcher("flaky", OTPGATE_DRIVERS_SMS="flaky://")

    failed = dispatch.invoke(sqs_event(waiting, deployment.queue_arn("dispatch.flaky")), None)

    assert failed == {"batchItemFailures": [{"itemIdentifier": waiting[0]["MessageId"]}]}
    # Received for 600 s, but the driver asked for a retry at once: visible again now.
    assert [m["MessageId"] for m in deployment.receive("dispatch.flaky")] == [
        waiting[0]["MessageId"]]


def test_a_fallback_step_not_yet_due_goes_back_delayed_and_is_not_reported_failed(
    deployment: Deployment,
) -> None:
    clock = FrozenClock()
    voice = {"OTPGATE_DRIVERS_VOICE": "capture://"}
    api = deployment.api(clock, **voice)
    step = {"channel": "voice", "after": 120}
    api.invoke(http_event("POST", "/v1/otp", {"to": NUMBERS[0], "fallback": [step]},
                          key=api_key(api)), None)
    waiting = deployment.receive("dispatch.capture", visibility=600)
    channels = sorted(e["data"]["channel"] for e in cloud_events(waiting))
    assert channels == ["sms", "voice"]
    dispatch = deployment.dispatcher("capture", clock, **voice)
    url = deployment.queue_url("dispatch.capture")

    report = dispatch.invoke(sqs_event(waiting, deployment.queue_arn("dispatch.capture")),
                             None)

    # Not a failure (which would spend one of the queue's few receives): SQS deletes the
    # record received, and a copy waits in the queue for the step's time.
    assert report == {"batchItemFailures": []}
    counts = deployment.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
    assert deployment.receive("dispatch.capture") == []
