"""Creating the AWS runtime's resources, idempotently: the table, the two topics, and a
queue with its dead-letter queue and filtered subscription per subscription of the bus.

``otpgate aws provision`` uses these against a local endpoint (moto, LocalStack); the bus
uses ``ensure_queue`` when told to create its queues; on AWS the SAM template declares
the same resources.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from otpgate.aws import table
from otpgate.errors import BusError
from otpgate.events import EventType, Filter

FILTERED = frozenset({"type", "channel", "driver"})
"""Event attributes published as SNS message attributes, which filter policies match."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Topics:
    """The dispatch topic (dispatch events, for the driver queues) and the events topic
    (every other event, for the app and the failure watcher)."""

    dispatch: str
    events: str

    def of(self, event_type: str) -> str:
        return self.dispatch if event_type == EventType.DISPATCH.value else self.events

    def feeding(self, flt: Filter) -> list[str]:
        """The topics whose events ``flt`` may match."""
        types = flt.rules.get("type")
        if types is None:
            return [self.dispatch, self.events]
        wanted = []
        if EventType.DISPATCH.value in types:
            wanted.append(self.dispatch)
        if any(t != EventType.DISPATCH.value for t in types):
            wanted.append(self.events)
        return wanted


def queue_name(prefix: str, subscription: str) -> str:
    """The SQS queue of a subscription (``dispatch.twilio`` → ``PREFIX-dispatch-twilio``)."""
    name = f"{prefix}-{_UNSAFE.sub('-', subscription)}"
    if len(name) > 76:
        raise BusError(f"queue name {name!r} is longer than SQS allows")
    return name


def filter_policy(flt: Filter) -> str | None:
    """The SNS filter policy (on message attributes) of a bus filter."""
    if unknown := set(flt.rules) - FILTERED:
        raise BusError(f"SNS subscriptions filter only on {sorted(FILTERED)}, not "
                       f"{sorted(unknown)}")
    if not flt.rules:
        return None
    return json.dumps({k: list(v) for k, v in sorted(flt.rules.items())})


async def ensure_table(dynamodb: Any, name: str) -> None:
    """Create the table (and turn on its TTL) unless it exists."""
    try:
        await dynamodb.describe_table(TableName=name)
        return
    except dynamodb.exceptions.ResourceNotFoundException:
        pass
    try:
        made = await dynamodb.create_table(**table.table_definition(name))
    except dynamodb.exceptions.ResourceInUseException:
        return  # created meanwhile by another process
    if made["TableDescription"].get("TableStatus") != "ACTIVE":
        await dynamodb.get_waiter("table_exists").wait(TableName=name,
                                                       WaiterConfig={"Delay": 1})
    await dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": table.TTL_ATTRIBUTE})


async def ensure_topic(sns: Any, name: str) -> str:
    """The ARN of topic ``name``, created if need be (``CreateTopic`` is idempotent)."""
    answer = await sns.create_topic(Name=name)
    return str(answer["TopicArn"])


async def ensure_queue(sqs: Any, sns: Any, topics: Topics, name: str, flt: Filter, *,
                       max_deliveries: int, visibility: int) -> str:
    """Queue ``name`` with its dead-letter queue (``name-dlq``, after ``max_deliveries``
    receives) fed by the topics ``flt`` may match, through subscriptions with its filter
    policy; return the queue's URL."""
    policy = filter_policy(flt)
    dlq_url = (await sqs.create_queue(QueueName=f"{name}-dlq", Attributes={
        "MessageRetentionPeriod": str(14 * 24 * 3600)}))["QueueUrl"]
    dlq_arn = await _arn(sqs, dlq_url)
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    arn = await _arn(sqs, url)
    feeding = topics.feeding(flt)
    await sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_deliveries)}),
        "Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": feeding}}}]}),
    })
    for topic in feeding:
        await _subscribe(sns, topic, arn, policy)
    return str(url)


async def _arn(sqs: Any, url: str) -> str:
    answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(answer["Attributes"]["QueueArn"])


async def _subscribe(sns: Any, topic: str, queue_arn: str, policy: str | None) -> None:
    existing = None
    paginator = sns.get_paginator("list_subscriptions_by_topic")
    async for page in paginator.paginate(TopicArn=topic):
        for sub in page.get("Subscriptions", []):
            if sub.get("Endpoint") == queue_arn and sub.get("Protocol") == "sqs":
                existing = sub["SubscriptionArn"]
    if existing is None:
        attributes = {"FilterPolicyScope": "MessageAttributes"}
        if policy is not None:
            attributes["FilterPolicy"] = policy
        await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                            Attributes=attributes, ReturnSubscriptionArn=True)
    elif policy is not None:
        await sns.set_subscription_attributes(SubscriptionArn=existing,
                                              AttributeName="FilterPolicy",
                                              AttributeValue=policy)
