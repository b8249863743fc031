"""A provisioned deployment on moto in server mode, and the Lambda functions over it.

Each function runs as Lambda runs it: a host built at cold start from the environment
(references to SSM and Secrets Manager resolved), then invoked with event JSON shaped
like the fixtures in ``tests/events``. The test talks to SQS and SNS as an operator
would: boto3, over HTTP, to the loopback moto server.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from otpgate.aws import resources
from otpgate.aws.api import ApiHost
from otpgate.aws.clients import Clients
from otpgate.aws.dispatch import DispatchHost
from otpgate.aws.host import Host
from otpgate.aws.resources import Topics
from otpgate.aws.sweep import SweepHost
from otpgate.clock import Clock
from otpgate.events import Filter
from tests.aws import moto
from tests.aws.backend import provisioned

EVENTS = Path(__file__).parent.parent / "events"
SECRET = "8d1b3a4fd0c2e97a61f5b0d3c8e27a94b6f1d05c3e8a72b9d4f60c1e5a3b7d28"  # random, tests only
PHONE = "+14155550123"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def http_event(method: str, path: str, body: Any = None, *, key: str | None = None,
               query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for one request."""
    event = fixture("apigw_v2_request.json")
    raw = "" if body is None else body if isinstance(body, str) else json.dumps(body)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    event["body"] = raw
    event["headers"]["content-length"] = str(len(raw.encode()))
    if body is None:
        del event["body"], event["headers"]["content-type"]
    if key is not None:
        event["headers"]["authorization"] = f"Bearer {key}"
    event["headers"].update(headers or {})
    return event


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source hands a function for ``messages`` (as
    ``ReceiveMessage`` returned them)."""
    shape = fixture("sqs_sns_dispatch.json")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(shape)
        record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"],
                      body=message["Body"], md5OfBody=message["MD5OfBody"],
                      eventSourceARN=queue_arn)
        record["attributes"].update(message.get("Attributes", {}))
        records.append(record)
    return {"Records": records}


def answer(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


@dataclass
class Deployment:
    """A provisioned deployment and the settings its functions get."""

    name: str
    env: dict[str, str]
    topics: Topics
    sqs: Any
    hosts: list[Host] = field(default_factory=list)

    def queue_url(self, subscription: str) -> str:
        name = resources.queue_name(self.name, subscription)
        return str(self.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def queue_arn(self, subscription: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url(subscription),
                                                   AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def receive(self, subscription: str, *, visibility: int = 30) -> list[dict[str, Any]]:
        """Every message waiting in a subscription's queue (left in flight for
        ``visibility`` seconds: with 0, left visible)."""
        found: dict[str, dict[str, Any]] = {}
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url(subscription), MaxNumberOfMessages=10,
                VisibilityTimeout=visibility, WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"]).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in found]
            if not fresh:
                return list(found.values())
            found.update((m["MessageId"], m) for m in fresh)

    def receive_once(self, subscription: str) -> list[dict[str, Any]]:
        """One ``ReceiveMessage``, leaving what it got visible (one receive each)."""
        return list(self.sqs.receive_message(
            QueueUrl=self.queue_url(subscription), MaxNumberOfMessages=10,
            VisibilityTimeout=0, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"]).get("Messages", []))

    def listen(self, subscription: str, flt: Filter, topic: str | None = None) -> None:
        """A queue of the app's own on the events topic (as the app would subscribe), or
        on ``topic``."""
        topic = topic or self.topics.events

        async def make() -> None:
            clients = Clients(moto.REGION, moto.endpoint())
            try:
                await resources.ensure_queue(
                    await clients.get("sqs"), await clients.get("sns"),
                    Topics(topic, topic),
                    resources.queue_name(self.name, subscription), flt, max_deliveries=3,
                    visibility=30)
            finally:
                await clients.close()

        asyncio.run(make())

    def api(self, clock: Clock | None = None, **env: str) -> ApiHost:
        """A cold start of the API function."""
        return self._keep(ApiHost.open({**self.env, **env}, clock))

    def dispatcher(self, driver: str, clock: Clock | None = None,
                   **env: str) -> DispatchHost:
        """A cold start of ``driver``'s dispatch function."""
        return self._keep(DispatchHost.open({**self.env, "OTPGATE_DRIVER": driver, **env},
                                            clock))

    def sweeper(self, clock: Clock | None = None, **env: str) -> SweepHost:
        """A cold start of the sweep function."""
        return self._keep(SweepHost.open({**self.env, **env}, clock))

    def items(self, sk: str) -> list[dict[str, Any]]:
        """The table's items with sort key ``sk`` (a scan: tests only)."""
        table = boto3.client("dynamodb", endpoint_url=moto.endpoint(),
                             region_name=moto.REGION)
        found = table.scan(TableName=self.name, FilterExpression="sk = :sk",
                           ExpressionAttributeValues={":sk": {"S": sk}})
        return list(found["Items"])

    def _keep(self, host: Any) -> Any:
        self.hosts.append(host)
        return host


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    """A fresh deployment with the capture driver for SMS and the console one for
    e-mail; the secret key in Secrets Manager and the driver lists in SSM."""
    name = f"otpgate-{uuid.uuid4().hex[:10]}"
    found = asyncio.run(provisioned(name, ("capture", "console")))
    endpoint = moto.endpoint()
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name=moto.REGION)
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=moto.REGION)
    prefix = f"/otpgate/{name}"
    ssm.put_parameter(Name=f"{prefix}/drivers/sms", Value="capture://", Type="SecureString")
    ssm.put_parameter(Name=f"{prefix}/drivers/email", Value="console://",
                      Type="SecureString")
    secrets.create_secret(Name=f"{name}/secret-key", SecretString=SECRET)
    env = {
        "OTPGATE_STORE_URL": f"dynamodb://{name}?region={moto.REGION}",
        "OTPGATE_TOPIC_ARN": found["OTPGATE_TOPIC_ARN"],
        "OTPGATE_EVENTS_TOPIC_ARN": found["OTPGATE_EVENTS_TOPIC_ARN"],
        "OTPGATE_BUS_MAX_DELIVERIES": found["OTPGATE_BUS_MAX_DELIVERIES"],
        "OTPGATE_SECRET_KEY": f"secretsmanager:{name}/secret-key",
        "OTPGATE_DRIVERS_SMS": f"ssm:{prefix}/drivers/sms",
        "OTPGATE_DRIVERS_EMAIL": f"ssm:{prefix}/drivers/email",
        "OTPGATE_ALLOW_CAPTURE": "true",
    }
    topics = Topics(found["OTPGATE_TOPIC_ARN"], found["OTPGATE_EVENTS_TOPIC_ARN"])
    deployed = Deployment(name, env, topics,
                          boto3.client("sqs", endpoint_url=endpoint, region_name=moto.REGION))
    try:
        yield deployed
    finally:
        for host in reversed(deployed.hosts):
            host.close()
