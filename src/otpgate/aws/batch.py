"""SQS batches as Lambda hands them over (``ReportBatchItemFailures``).

Each record carries an SNS notification whose message is a CloudEvent. Records are
handled concurrently; the answer lists the ``itemIdentifier`` of each record that failed —
one that could not be read included — so that SQS deletes the others and delivers only
those again. A failed record is made visible again after the bus's backoff (honouring a
driver's ``Retry-After``) rather than after the queue's whole visibility timeout; after
``maxReceiveCount`` receives SQS moves it to the dead-letter queue. The handler learns
which receive it runs (``delivery_number``), so that the dispatcher can tell its last
chance and give up — or fail over — rather than let a readable event die in the DLQ.

A deferred record (``otpgate.errors.Deferred``: not due yet) is not reported failed: it is
sent to its queue again, delayed until its time (``bus.sns_sqs.defer``), and SQS deletes
the record received — so that waiting spends no receive. Where the send fails, the record
fails as any other would, visible again at its time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from otpgate.bus.base import Limits, backoff, deferral, delivery_number, describe
from otpgate.bus.sns_sqs import defer, event_of_body
from otpgate.events import CloudEvent

log = logging.getLogger(__name__)

Handle = Callable[[CloudEvent], Awaitable[None]]


class Batch:
    """Runs a handler over SQS batches; ``sqs`` moves failed records' visibility."""

    def __init__(self, handle: Handle, limits: Limits, sqs: Any) -> None:
        self._handle = handle
        self._limits = limits
        self._sqs = sqs
        self._urls: dict[str, str] = {}

    async def __call__(self, event: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
        records = event.get("Records") or []
        read = [self._read(r) for r in records]
        # The same event twice in one batch (a republished outbox item) is handled once,
        # and both records share its outcome.
        unique: dict[str, tuple[dict[str, Any], CloudEvent]] = {}
        for record, found in zip(records, read, strict=True):
            if found is not None:
                unique.setdefault(found.id, (record, found))
        outcomes = await asyncio.gather(*(self._record(r, e) for r, e in unique.values()))
        failed = {event_id for event_id, bad in zip(unique, outcomes, strict=True) if bad}
        return {"batchItemFailures": [
            {"itemIdentifier": r["messageId"]} for r, found in zip(records, read, strict=True)
            if found is None or found.id in failed]}

    @staticmethod
    def _read(record: dict[str, Any]) -> CloudEvent | None:
        """The event a record carries; ``None`` for a poisoned record (reported, and
        dead-lettered in time)."""
        try:
            return event_of_body(record["body"])
        except Exception as exc:  # any unreadable record is poisoned
            count = record.get("attributes", {}).get("ApproximateReceiveCount", "?")
            log.error("SQS record %s holds no event (receive %s): %s",
                      record.get("messageId"), count, type(exc).__name__)
            return None

    async def _record(self, record: dict[str, Any], event: CloudEvent) -> bool:
        """Handle one record's event; True when it failed (SQS should deliver it
        again)."""
        count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        delivery_number.set(count)
        try:
            await self._handle(event)
        except Exception as exc:  # retried by SQS, after the backoff
            if (wait := deferral(exc)) is not None and await self._defer(record, wait):
                return False
            log.warning("event %s failed on receive %d: %s", event.id, count, describe(exc))
            await self._delay(record, math.ceil(backoff(self._limits, count, exc)))
            return True
        return False

    async def _defer(self, record: dict[str, Any], wait: float) -> bool:
        """Send a deferred record to its queue again (True), for SQS to delete this one."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            url = await self._url(str(record["eventSourceARN"]))
        except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
            log.warning("could not defer record %s: %s", record.get("messageId"), exc)
            return False
        return await defer(self._sqs, url, str(record["body"]), wait, url.rsplit("/", 1)[-1])

    async def _delay(self, record: dict[str, Any], seconds: int) -> None:
        """Make a failed record visible again in ``seconds`` (best effort: without it the
        queue's visibility timeout applies)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            url = await self._url(str(record["eventSourceARN"]))
            await self._sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=max(0, min(seconds, 43200)))
        except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
            log.warning("could not delay record %s: %s", record.get("messageId"), exc)

    async def _url(self, arn: str) -> str:
        if arn not in self._urls:
            _, _, _, _, account, name = arn.split(":", 5)
            answer = await self._sqs.get_queue_url(QueueName=name,
                                                   QueueOwnerAWSAccountId=account)
            self._urls[arn] = str(answer["QueueUrl"])
        return self._urls[arn]
