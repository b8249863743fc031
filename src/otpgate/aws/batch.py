"""SQS batches as Lambda hands them over (``ReportBatchItemFailures``).

Each record carries an SNS notification whose message is a CloudEvent. Records are
handled concurrently; the answer lists the ``itemIdentifier`` of each record that failed —
one that could not be read included — so that SQS deletes the others and delivers only
those again. A failed record is made visible again after the bus's backoff (honouring a
driver's ``Retry-After``) rather than after the queue's whole visibility timeout; after
``maxReceiveCount`` receives SQS moves it to the dead-letter queue. The handler learns
which receive it runs (``delivery_number``), so that the dispatcher can tell its last
chance and give up — or fail over — rather than let a readable event die in the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from otpgate.bus.base import Limits, backoff, delivery_number, describe
from otpgate.bus.sns_sqs import event_of_body
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
        failed = await asyncio.gather(*(self._record(r) for r in records))
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                      for r, bad in zip(records, failed, strict=True) if bad]}

    async def _record(self, record: dict[str, Any]) -> bool:
        """Handle one record; True when it failed (SQS should deliver it again)."""
        count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            event = event_of_body(record["body"])
        except Exception as exc:  # a poisoned record: reported, and dead-lettered in time
            log.error("SQS record %s holds no event (receive %d): %s",
                      record.get("messageId"), count, type(exc).__name__)
            return True
        delivery_number.set(count)
        try:
            await self._handle(event)
        except Exception as exc:  # retried by SQS, after the backoff
            log.warning("event %s failed on receive %d: %s", event.id, count, describe(exc))
            await self._delay(record, math.ceil(backoff(self._limits, count, exc)))
            return True
        return False

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
