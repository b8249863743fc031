"""``otpgate aws provision``, and otpgate running locally on what it made."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import boto3
from click.testing import CliRunner

from otpgate import config
from otpgate.cli import main
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest
from tests.aws import moto
from tests.aws.conftest import PHONE, SECRET


def provision(name: str, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    done = CliRunner().invoke(main, ["aws", "provision", "--endpoint-url", moto.endpoint(),
                                     "--region", moto.REGION, "--name", name, *args],
                              env=env)
    assert done.exit_code == 0, done.output
    return dict(line.split("=", 1) for line in done.output.splitlines())


def test_provision_makes_every_resource_once_and_prints_the_settings() -> None:
    name = f"prov-{uuid.uuid4().hex[:8]}"
    first = provision(name, "--drivers", "capture,console")
    again = provision(name, "--drivers", "capture,console")

    assert first == again
    assert set(first) == {"OTPGATE_STORE_URL", "OTPGATE_TOPIC_ARN",
                          "OTPGATE_EVENTS_TOPIC_ARN", "OTPGATE_BUS_MAX_DELIVERIES"}
    assert first["OTPGATE_STORE_URL"].startswith(f"dynamodb://{name}?region={moto.REGION}")
    sqs = boto3.client("sqs", endpoint_url=moto.endpoint(), region_name=moto.REGION)
    queues = sorted(u.rsplit("/", 1)[1] for u in
                    sqs.list_queues(QueueNamePrefix=name)["QueueUrls"])
    assert queues == sorted(f"{name}-{q}{dlq}" for q in
                            ("dispatch-capture", "dispatch-console",
                             "lifecycle-delivery_failed") for dlq in ("", "-dlq"))
    sns = boto3.client("sns", endpoint_url=moto.endpoint(), region_name=moto.REGION)
    subs = sns.list_subscriptions_by_topic(TopicArn=first["OTPGATE_TOPIC_ARN"])
    policies = sorted(json.loads(sns.get_subscription_attributes(
        SubscriptionArn=s["SubscriptionArn"])["Attributes"]["FilterPolicy"])["driver"][0]
        for s in subs["Subscriptions"])
    assert policies == ["capture", "console"]


def test_provision_makes_a_queue_for_each_configured_driver_by_default() -> None:
    name = f"prov-{uuid.uuid4().hex[:8]}"
    provision(name, env={"OTPGATE_DRIVERS_SMS": "capture://?name=texts,console://"})
    sqs = boto3.client("sqs", endpoint_url=moto.endpoint(), region_name=moto.REGION)
    urls = sqs.list_queues(QueueNamePrefix=f"{name}-dispatch-")["QueueUrls"]
    assert sorted(u.rsplit("/", 1)[1] for u in urls if not u.endswith("-dlq")) == [
        f"{name}-dispatch-console", f"{name}-dispatch-texts"]


async def test_otpgate_runs_locally_on_the_provisioned_resources() -> None:
    name = f"prov-{uuid.uuid4().hex[:8]}"
    printed = await asyncio.to_thread(provision, name, "--drivers", "capture")
    settings = config.from_env({**printed, "OTPGATE_SECRET_KEY": SECRET, "OTPGATE_DEV": "true",
                                "OTPGATE_POLL_INTERVAL": "0.05"})
    runtime = await Runtime.open(settings)
    try:
        await runtime.start_workers()
        requested = await runtime.service.request(OtpRequest(to=PHONE))
        for _ in range(200):
            if sent := await runtime.backend.capture.list(PHONE):
                break
            await asyncio.sleep(0.05)
        code = re.search(r"\d{6}", sent[0].body)
        assert code is not None
        answer = await runtime.service.verify(requested.otp.id, code.group())
    finally:
        await runtime.close()
    assert (answer.valid, answer.status.value) == (True, "approved")
