"""A code's whole life through the Lambda functions, on moto in server mode."""

from __future__ import annotations

import json
import re
from typing import Any

from otpgate import apikeys
from otpgate.api.app import context_of
from otpgate.aws.api import ApiHost
from otpgate.events import EventType, Filter
from tests.aws.conftest import PHONE, Deployment, answer, fixture, http_event, sqs_event


def api_key(api: ApiHost) -> str:
    store = context_of(api.app).runtime.backend.store
    _, key = api.run(apikeys.create(store, "test", api.clock.now(), admin=True))
    return key


def cloud_events(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(json.loads(m["Body"])["Message"]) for m in messages]


def test_a_code_requested_through_the_api_is_sent_by_its_drivers_function_and_approved(
    deployment: Deployment,
) -> None:
    deployment.listen("app", Filter.of(type=EventType.APPROVED.value))
    api = deployment.api()
    key = api_key(api)

    requested = api.invoke(http_event("POST", "/v1/otp", {"to": PHONE}, key=key), None)
    assert requested["statusCode"] == 202, requested
    otp_id = answer(requested)["id"]

    waiting = deployment.receive("dispatch.capture")
    assert [e["subject"] for e in cloud_events(waiting)] == [otp_id]
    assert deployment.receive("dispatch.console") == []
    dispatch = deployment.dispatcher("capture")
    sent = dispatch.invoke(sqs_event(waiting, deployment.queue_arn("dispatch.capture")), None)
    assert sent == {"batchItemFailures": []}

    inbox = api.invoke(http_event("GET", "/v1/dev/messages", key=key,
                                  query="to=%2B14155550123"), None)
    [message] = answer(inbox)
    code = re.search(r"\d{6}", message["body"])
    assert code is not None
    verified = api.invoke(http_event("POST", f"/v1/otp/{otp_id}/verify",
                                     {"code": code.group()}, key=key), None)
    body = answer(verified)
    assert body.pop("token").count(".") == 2
    assert (verified["statusCode"], body) == (
        200, {"id": otp_id, "valid": True, "status": "approved"})

    [approved] = cloud_events(deployment.receive("app"))
    assert (approved["type"], approved["subject"]) == (EventType.APPROVED.value, otp_id)
    status = answer(api.invoke(http_event("GET", f"/v1/otp/{otp_id}", key=key), None))
    assert [(c["driver"], c["status"]) for c in status["channels"]] == [("capture", "sent")]


def test_the_fixture_events_are_shaped_as_lambda_delivers_them() -> None:
    request = fixture("apigw_v2_request.json")
    assert (request["version"], request["requestContext"]["http"]["method"]) == ("2.0",
                                                                                  "POST")
    [record] = fixture("sqs_sns_dispatch.json")["Records"]
    envelope = json.loads(record["body"])
    assert envelope["Type"] == "Notification"
    assert json.loads(envelope["Message"])["type"] == EventType.DISPATCH.value
    assert fixture("eventbridge_schedule.json")["detail-type"] == "Scheduled Event"
