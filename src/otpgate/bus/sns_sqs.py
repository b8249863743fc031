"""The ``Bus`` port on SNS and SQS, with its outbox in the DynamoDB table.

Events go to one of two SNS topics — dispatch events to the dispatch topic, every other
event to the events topic the app subscribes to — with the message attributes ``type``,
``driver`` and ``channel`` that subscriptions' filter policies match. A subscription is an
SQS queue (with a dead-letter queue after ``max_deliveries`` receives) subscribed to the
topics its filter may match; on AWS the template declares them and ``declare`` only
records the subscription, and for local runs (``create_queues=true``) it creates them.

A state change in DynamoDB and a publish to SNS cannot be atomic, hence the outbox: the
store writes an outbox item holding the events in the change's own transaction
(``outbox_entry``), publishes them at once and deletes the item (``relay``); what a crash
left between the two is published again by ``republish`` (the scheduled sweep). A double
publish is harmless: the send ledger makes a redelivered dispatch a no-op.

Locally, ``consume``/``pump``/``start`` receive from the queues: a handler that returns
deletes its message; one that raises makes it visible again after the backoff, and SQS
moves it to the dead-letter queue once it has been received ``max_deliveries`` times. On
Lambda, the event source mapping receives instead (``otpgate.aws.dispatch``).

A deferred event (``otpgate.errors.Deferred``: not due yet) must not spend receives — SQS
counts every one toward the redrive policy — so it is sent to its own queue again as a
new message, delayed until its time (``DelaySeconds``, at most 15 minutes; a longer wait
takes several rounds), and only then is the message received deleted. A crash between the
two leaves a duplicate, which the send ledger's claim makes harmless (``defer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from otpgate import events
from otpgate.aws import resources
from otpgate.aws import table as t
from otpgate.aws.resources import Topics
from otpgate.aws.table import Table
from otpgate.bus.base import (
    Backlog,
    Consumer,
    DeadLetter,
    Handler,
    Limits,
    Subscription,
    backoff,
    consumer_of,
    dead_letter_event,
    deferral,
    deliver,
    describe,
    finish,
    redacted,
    wait_briefly,
)
from otpgate.clock import Clock
from otpgate.errors import BusError, StoreError
from otpgate.events import CloudEvent

log = logging.getLogger(__name__)

_batch_of = msgspec.json.Decoder(list[CloudEvent])
REPUBLISH_AFTER = 30.0
"""Seconds an outbox item may wait for its writer to publish it before the sweep does."""


def event_of_body(body: str) -> CloudEvent:
    """The CloudEvent an SQS message carries: inside an SNS notification, or raw.
    ``ValueError`` (or a ``msgspec`` error) when it carries none."""
    envelope = json.loads(body)
    if isinstance(envelope, dict) and envelope.get("Type") == "Notification":
        return events.decode(str(envelope["Message"]))
    return events.decode(body)


MAX_DELAY = 900
"""The longest ``DelaySeconds`` SQS takes."""


async def defer(sqs: Any, url: str, body: str, wait: float, subscription: str) -> bool:
    """Send a deferred message's ``body`` to its queue ``url`` again, delayed for ``wait``
    seconds (at most ``MAX_DELAY``): the caller then deletes the message it received, so
    that waiting spends no receive. False when SQS refused the send (the caller lets the
    message come back as a failure instead)."""
    from botocore.exceptions import BotoCoreError, ClientError

    delay = max(0, min(MAX_DELAY, math.ceil(wait)))
    try:
        await sqs.send_message(QueueUrl=url, MessageBody=body, DelaySeconds=delay)
    except (BotoCoreError, ClientError) as exc:
        log.warning("could not defer a message on %s (%s); it comes back as a retry",
                    subscription, exc)
        return False
    log.debug("deferred a message on %s for %d s", subscription, delay)
    return True


def message_attributes(event: CloudEvent) -> dict[str, dict[str, str]]:
    attributes = event.attributes()
    return {name: {"DataType": "String", "StringValue": attributes[name]}
            for name in sorted(resources.FILTERED) if name in attributes}


class SnsSqsBus:
    """See the module docstring."""

    def __init__(self, table: Table, sns: Any, sqs: Any, topics: Topics, clock: Clock, *,
                 queue_prefix: str, create_queues: bool = False, max_deliveries: int = 8,
                 poll_interval: float = 0.2) -> None:
        self._table = table
        self._sns = sns
        self._sqs = sqs
        self.topics = topics
        self._clock = clock
        self._prefix = queue_prefix
        self._create = create_queues
        self._max_deliveries = max_deliveries
        self._poll = poll_interval
        self._subs: dict[str, Subscription] = {}
        self._consumers: dict[str, Consumer] = {}
        self._urls: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- producing ----------------------------------------------------------------------

    def outbox_entry(self, batch: Sequence[CloudEvent], now: float) -> tuple[str, dict[str, Any]]:
        """An outbox item holding ``batch``, as a ``Put`` of a store transaction: its key,
        and the entry."""
        pk = f"X#{uuid.uuid4().hex}"
        raw = b"[" + b",".join(events.encode(e) for e in batch) + b"]"
        item = {**t.key(pk, "OUTBOX"), "events": t.b(raw), "created_at": t.n(now),
                "ttl": t.n(int(now + 14 * 24 * 3600)), **t.timeline("outbox", pk, now)}
        return pk, t.put(item)

    async def relay(self, outbox: str, batch: Sequence[CloudEvent]) -> None:
        """Publish the events of a committed outbox item, then clear it; on failure the
        item stays for ``republish``."""
        try:
            await self.publish(batch)
            await self._table.delete(outbox, "OUTBOX")
        except (BusError, StoreError) as exc:
            log.warning("events of outbox item %s left for the sweep: %s", outbox, exc)

    async def republish(self, limit: int = 100) -> int:
        """Publish what outbox items older than ``REPUBLISH_AFTER`` hold (a writer died
        between its transaction and its publish), and clear them; how many."""
        done = 0
        before = self._clock.now() - REPUBLISH_AFTER
        for entry in await self._table.timeline("outbox", before, limit):
            pk = t.text(entry, "pk")
            found = await self._table.get(pk, "OUTBOX")
            if found is None:
                continue  # its writer cleared it meanwhile
            await self.publish(_batch_of.decode(t.blob(found, "events")))
            await self._table.delete(pk, "OUTBOX")
            log.warning("republished the events of outbox item %s", pk)
            done += 1
        return done

    async def publish(self, batch: Sequence[CloudEvent]) -> None:
        by_topic: dict[str, list[CloudEvent]] = {}
        for event in batch:
            by_topic.setdefault(self.topics.of(event.type), []).append(event)
        for topic, chunk in by_topic.items():
            for start in range(0, len(chunk), 10):
                await self._publish(topic, chunk[start:start + 10])

    async def _publish(self, topic: str, chunk: Sequence[CloudEvent]) -> None:
        entries = [{"Id": str(n), "Message": events.encode(e).decode(),
                    "MessageAttributes": message_attributes(e)} for n, e in enumerate(chunk)]
        async with _calling("SNS PublishBatch"):
            answer = await self._sns.publish_batch(TopicArn=topic,
                                                   PublishBatchRequestEntries=entries)
        if failed := answer.get("Failed"):
            raise BusError(f"SNS refused {len(failed)} of {len(chunk)} events: "
                           f"{failed[0].get('Code')}")

    # -- subscriptions ------------------------------------------------------------------

    async def declare(self, sub: Subscription) -> None:
        resources.filter_policy(sub.filter)  # refuse what SNS cannot filter on
        self._subs[sub.name] = sub
        if self._create:
            async with _calling("creating a queue"):
                self._urls[sub.name] = await resources.ensure_queue(
                    self._sqs, self._sns, self.topics, self._queue(sub.name), sub.filter,
                    max_deliveries=self._max_deliveries, visibility=30)

    def consume(self, name: str, handler: Handler, limits: Limits) -> None:
        self._consumers[name] = consumer_of(self._subs, name, handler, limits)

    def _queue(self, subscription: str) -> str:
        return resources.queue_name(self._prefix, subscription)

    async def _url(self, queue: str) -> str:
        if queue not in self._urls:
            async with _calling("GetQueueUrl"):
                answer = await self._sqs.get_queue_url(QueueName=queue)
            self._urls[queue] = str(answer["QueueUrl"])
        return self._urls[queue]

    async def queue_url(self, subscription: str) -> str:
        """The URL of a subscription's queue."""
        if subscription in self._urls:
            return self._urls[subscription]
        return await self._url(self._queue(subscription))

    # -- consuming (local runs) ---------------------------------------------------------

    async def pump(self, limit: int = 100) -> int:
        done = 0
        for consumer in list(self._consumers.values()):
            if done >= limit:
                break
            url = await self.queue_url(consumer.name)
            async with _calling("SQS ReceiveMessage"):
                answer = await self._sqs.receive_message(
                    QueueUrl=url, WaitTimeSeconds=0,
                    MaxNumberOfMessages=max(1, min(10, limit - done,
                                                   consumer.limits.concurrency)),
                    VisibilityTimeout=max(1, math.ceil(consumer.limits.lease)),
                    MessageSystemAttributeNames=["ApproximateReceiveCount"])
            messages = answer.get("Messages", [])
            done += len(messages)
            await asyncio.gather(*(self._handle(consumer, url, m) for m in messages))
        return done

    async def _handle(self, consumer: Consumer, url: str, message: dict[str, Any]) -> None:
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            await deliver(consumer, event_of_body(message["Body"]), count)
        except Exception as exc:  # any failure is retried, then dead-lettered by SQS
            if (wait := deferral(exc)) is not None and await defer(
                    self._sqs, url, message["Body"], wait, consumer.name):
                await self._delete(url, message)
                return
            last = count >= self._max_deliveries
            if last:  # SQS moves it at the next receive: counted here
                dead_letter_event(consumer.sub, event_of_body(message["Body"]))
            delay = 0 if last else math.ceil(backoff(consumer.limits, count, exc))
            log.warning("%s on %s (receive %d): %s", "dead-lettering" if last else "retrying",
                        consumer.name, count, describe(exc))
            with contextlib.suppress(BusError):
                async with _calling("SQS ChangeMessageVisibility"):
                    await self._sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=min(delay, 43200))
            return
        await self._delete(url, message)

    async def _delete(self, url: str, message: dict[str, Any]) -> None:
        async with _calling("SQS DeleteMessage"):
            await self._sqs.delete_message(QueueUrl=url,
                                           ReceiptHandle=message["ReceiptHandle"])

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="otpgate-sqs-bus")

    async def _run(self) -> None:
        while self._task is not None:
            self._wake.clear()
            try:
                handled = await self.pump(100)
            except BusError as exc:
                log.warning("receiving from SQS failed; trying again: %s", exc)
                handled = 0
            if handled == 0:
                await wait_briefly(self._wake, self._poll)

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await finish(task, self._wake)

    # -- inspection ---------------------------------------------------------------------

    async def dead_letters(self, subscription: str | None = None) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for name, sub in self._subs.items():
            if subscription not in (None, name):
                continue
            url = await self._url(self._queue(name) + "-dlq")
            for message in await self._peek(url):
                try:
                    event = event_of_body(message["Body"])
                except (ValueError, KeyError, msgspec.DecodeError):
                    log.error("dead letter %s on %s is not an event", message["MessageId"],
                              name)
                    continue
                attributes = message.get("Attributes", {})
                count = int(attributes.get("ApproximateReceiveCount", "1")) - 1
                found.append(DeadLetter(
                    name, redacted(sub, event),
                    f"moved to the dead-letter queue by SQS after {self._max_deliveries} "
                    "receives", max(count, self._max_deliveries),
                    int(attributes.get("SentTimestamp", "0")) / 1000))
        return found

    async def replay(self, subscription: str, event_id: str) -> bool:
        """Send the dead letter back to its queue as it was received, then delete it from
        the dead-letter queue (SQS counts its receives afresh)."""
        if subscription not in self._subs:
            return False
        dlq = await self._url(self._queue(subscription) + "-dlq")
        for message in await self._peek(dlq):
            try:
                found = event_of_body(message["Body"]).id == event_id
            except (ValueError, KeyError, msgspec.DecodeError):
                continue
            if found:
                async with _calling("SQS SendMessage"):
                    await self._sqs.send_message(QueueUrl=await self.queue_url(subscription),
                                                 MessageBody=message["Body"])
                async with _calling("SQS DeleteMessage"):
                    await self._sqs.delete_message(QueueUrl=dlq,
                                                   ReceiptHandle=message["ReceiptHandle"])
                self._wake.set()
                return True
        return False

    async def _peek(self, url: str, rounds: int = 10) -> list[dict[str, Any]]:
        """Messages of a queue, left where they are (received with no visibility
        timeout); at most ``10 * rounds``."""
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(rounds):
            async with _calling("SQS ReceiveMessage"):
                answer = await self._sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                    WaitTimeSeconds=0, MessageSystemAttributeNames=["All"])
            fresh = [m for m in answer.get("Messages", []) if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update((m["MessageId"], m) for m in fresh)
        return list(seen.values())

    async def backlog(self) -> list[Backlog]:
        """Depth and due count from the queues' attributes; SQS does not tell the age of
        the oldest message (CloudWatch's ``ApproximateAgeOfOldestMessage`` does, and the
        template alarms on it), so ``oldest_due_age`` is 0."""
        found = []
        for name in sorted(self._subs):
            url = await self.queue_url(name)
            async with _calling("SQS GetQueueAttributes"):
                answer = await self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed"])
            counts = {k: int(v) for k, v in answer.get("Attributes", {}).items()}
            due = counts.get("ApproximateNumberOfMessages", 0)
            depth = due + counts.get("ApproximateNumberOfMessagesNotVisible", 0) + \
                counts.get("ApproximateNumberOfMessagesDelayed", 0)
            found.append(Backlog(subscription=name, depth=depth, due=due,
                                 oldest_due_age=0.0))
        return found

    @property
    def sqs(self) -> Any:
        """The SQS client (handlers move a failed record's visibility with it)."""
        return self._sqs

    async def ping(self) -> None:
        async with _calling("SNS GetTopicAttributes"):
            await self._sns.get_topic_attributes(TopicArn=self.topics.dispatch)


@contextlib.asynccontextmanager
async def _calling(what: str) -> Any:
    """Turn the SDK's failures into ``BusError``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise BusError(f"{what} failed: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise BusError(f"{what} failed: {exc}") from None
