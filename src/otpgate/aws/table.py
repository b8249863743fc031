"""The one DynamoDB table of the AWS runtime: its key schema, its time index and the calls
every user of it (store, outbox, capture sink) makes.

Single-table design: every item has a string partition key ``pk`` and sort key ``sk``.

| item | ``pk`` | ``sk`` | attributes |
|---|---|---|---|
| recipient | ``R#<recipient key>`` | ``STATE`` | ``state`` (``RecipientState``), ``ver`` |
| OTP | ``O#<otp id>`` | ``OTP`` | ``otp`` (``Otp``), ``recipient`` |
| send | ``O#<otp id>`` | ``SEND#<send no>#<channel>`` | ``row`` (``Delivery``), ``ver`` |
| sent as | ``P#<driver>#<provider id>`` | ``SENT`` | ``otp_id``, ``send_no``, ``channel`` |
| answer | ``I#<slot>`` | ``ANSWER`` | ``answer`` (``Remembered``), ``until``, ``owner`` |
| API key | ``KEYS`` | ``K#<key id>`` | ``key`` (``ApiKey``) |
| key check | ``META`` | ``KEYCHECK`` | ``value`` |
| outbox | ``X#<uuid>`` | ``OUTBOX`` | ``events`` (JSON array of CloudEvents) |
| captured | ``C#ALL``, ``C#TO#<to>`` | ``<sequence>`` | ``msg`` (``CapturedMessage``) |
| capture key | ``CK#<idempotency key>`` | ``CAPTURE`` | |

A send's row also carries ``status`` and ``attempts`` for the conditions of ``settle``.

Records are stored as msgpack-encoded structs, so a field added with a default needs no
change here. One global secondary index, ``timeline`` (partition ``tl_pk``, sort ``tl_at``,
a number of seconds), lists what sweeps look for, in 8 shards per kind so that no index
partition runs hot: ``due#n`` (pending OTPs by expiry), ``done#n`` (finished OTPs by
expiry), ``idle#n`` (recipients without a pending code, by last change), ``answer#n``
(answers by end of life) and ``outbox#n`` (unpublished events by age). An item leaves the
index when its ``tl_pk`` is removed. ``ttl`` (epoch seconds) is the table's TTL attribute:
DynamoDB deletes items past it, some time later — clean-up only; expiry of codes and
answers is decided by the code from the times kept in the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otpgate import urls
from otpgate.errors import ConfigurationError, StoreError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

Item = dict[str, Any]
"""A DynamoDB item in the low-level wire form (``{"S": "…"}``, ``{"N": "…"}``, ``{"B": …}``)."""

INDEX = "timeline"
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
SHARDS = 8


def key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: float) -> dict[str, str]:
    return {"N": repr(float(value)) if not float(value).is_integer() else str(int(value))}


def b(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def num(item: Item, name: str) -> float:
    return float(item[name]["N"])


def text(item: Item, name: str) -> str:
    return str(item[name]["S"])


def blob(item: Item, name: str) -> bytes:
    return bytes(item[name]["B"])


def shard(kind: str, pk: str) -> str:
    """The ``tl_pk`` of an item of ``kind`` whose partition key is ``pk``."""
    return f"{kind}#{zlib.crc32(pk.encode()) % SHARDS}"


def timeline(kind: str, pk: str, at: float) -> Item:
    """The attributes that list an item in the time index."""
    return {"tl_pk": s(shard(kind, pk)), "tl_at": n(at)}


def table_definition(name: str) -> dict[str, Any]:
    """``CreateTable`` arguments for the table (on-demand capacity); the template
    declares the same."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "tl_pk", "AttributeType": "S"},
            {"AttributeName": "tl_at", "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                      {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [{
            "IndexName": INDEX,
            "KeySchema": [{"AttributeName": "tl_pk", "KeyType": "HASH"},
                          {"AttributeName": "tl_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["recipient"]},
        }],
    }


TTL_ATTRIBUTE = "ttl"


class Cancelled(Exception):
    """A transaction was cancelled; ``reasons`` holds one code per item (``None`` for
    items that did not cause it), e.g. ``ConditionalCheckFailed``."""

    def __init__(self, reasons: Sequence[str | None]) -> None:
        super().__init__(", ".join(r or "None" for r in reasons))
        self.reasons = list(reasons)

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


class Table:
    """One table over one client: the few calls the backends make, with every failure
    that is not a condition turned into ``StoreError``."""

    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.client = client
        self.name = name

    @contextlib.asynccontextmanager
    async def _calling(self, what: str) -> AsyncIterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons", [])
                raise Cancelled([r.get("Code") if r.get("Code") != "None" else None
                                 for r in reasons]) from None
            if error.get("Code") == "ConditionalCheckFailedException":
                raise Cancelled(["ConditionalCheckFailed"]) from None
            raise StoreError(f"DynamoDB {what} failed: {error.get('Code')}: "
                             f"{error.get('Message')}") from None
        except BotoCoreError as exc:
            raise StoreError(f"DynamoDB {what} failed: {exc}") from None

    async def get(self, pk: str, sk: str) -> Item | None:
        async with self._calling("GetItem"):
            answer = await self.client.get_item(TableName=self.name, Key=key(pk, sk),
                                                ConsistentRead=True)
        return answer.get("Item")

    async def batch_get(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        """The items of ``keys`` (up to 100) that exist, read consistently."""
        wanted: list[Item] = [key(pk, sk) for pk, sk in keys]
        found: list[Item] = []
        while wanted:
            async with self._calling("BatchGetItem"):
                answer: dict[str, Any] = dict(await self.client.batch_get_item(RequestItems={
                    self.name: {"Keys": wanted, "ConsistentRead": True}}))
            found.extend(answer.get("Responses", {}).get(self.name, []))
            left: dict[str, Any] = answer.get("UnprocessedKeys") or {}
            wanted = list(left.get(self.name, {}).get("Keys", []))
        return found

    async def partition(self, pk: str, prefix: str | None = None) -> list[Item]:
        """Every item of partition ``pk`` (whose ``sk`` starts with ``prefix``), read
        consistently, in ``sk`` order."""
        condition, values = "pk = :pk", {":pk": s(pk)}
        if prefix is not None:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = s(prefix)
        return await self.query(KeyConditionExpression=condition,
                                ExpressionAttributeValues=values, ConsistentRead=True)

    async def query(self, limit: int | None = None, **arguments: Any) -> list[Item]:
        found: list[Item] = []
        start: dict[str, Any] | None = None
        while True:
            page_arguments = dict(arguments)
            if start is not None:
                page_arguments["ExclusiveStartKey"] = start
            if limit is not None:
                page_arguments["Limit"] = limit - len(found)
            async with self._calling("Query"):
                page = await self.client.query(TableName=self.name, **page_arguments)
            found.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if start is None or (limit is not None and len(found) >= limit):
                return found

    async def timeline(self, kind: str, before: float, limit: int) -> list[Item]:
        """Items listed under ``kind`` in the time index with a time at or before
        ``before``, up to ``limit`` per shard, oldest first within each shard."""
        shards = await asyncio.gather(*(self.query(
            limit=limit, IndexName=INDEX, KeyConditionExpression="tl_pk = :k AND tl_at <= :t",
            ExpressionAttributeValues={":k": s(f"{kind}#{number}"), ":t": n(before)})
            for number in range(SHARDS)))
        return [item for shard in shards for item in shard]

    async def put(self, item: Item, condition: str | None = None,
                  values: Item | None = None, names: dict[str, str] | None = None) -> None:
        """``PutItem``; ``Cancelled`` when ``condition`` does not hold."""
        arguments: dict[str, Any] = {"TableName": self.name, "Item": item}
        _conditional(arguments, condition, values, names)
        async with self._calling("PutItem"):
            await self.client.put_item(**arguments)

    async def update(self, pk: str, sk: str, **arguments: Any) -> Item:
        async with self._calling("UpdateItem"):
            answer = await self.client.update_item(TableName=self.name, Key=key(pk, sk),
                                                   **arguments)
        return answer.get("Attributes", {})

    async def delete(self, pk: str, sk: str) -> None:
        async with self._calling("DeleteItem"):
            await self.client.delete_item(TableName=self.name, Key=key(pk, sk))

    async def transact(self, items: Sequence[dict[str, Any]]) -> None:
        """``TransactWriteItems`` with the table name filled in; ``Cancelled`` when a
        condition failed or another transaction got in the way. The request token makes
        the SDK's own retry of a call whose answer was lost harmless."""
        for entry in items:
            for operation in entry.values():
                operation["TableName"] = self.name
        async with self._calling("TransactWriteItems"):
            await self.client.transact_write_items(TransactItems=list(items),  # type: ignore[arg-type]
                                                   ClientRequestToken=uuid.uuid4().hex)

    async def ping(self) -> None:
        await self.get("META", "PING")


def put(item: Item, condition: str | None = None, values: Item | None = None,
        names: dict[str, str] | None = None) -> dict[str, Any]:
    """A ``Put`` entry of a transaction."""
    operation: dict[str, Any] = {"Item": item}
    _conditional(operation, condition, values, names)
    return {"Put": operation}


def update(pk: str, sk: str, expression: str, values: Item, condition: str | None = None,
           names: dict[str, str] | None = None) -> dict[str, Any]:
    """An ``Update`` entry of a transaction."""
    operation: dict[str, Any] = {"Key": key(pk, sk), "UpdateExpression": expression}
    _conditional(operation, condition, values, names)
    return {"Update": operation}


def check(pk: str, sk: str, condition: str, values: Item | None = None) -> dict[str, Any]:
    """A ``ConditionCheck`` entry of a transaction."""
    operation: dict[str, Any] = {"Key": key(pk, sk)}
    _conditional(operation, condition, values, None)
    return {"ConditionCheck": operation}


def delete(pk: str, sk: str) -> dict[str, Any]:
    return {"Delete": {"Key": key(pk, sk)}}


def delete_if(pk: str, sk: str, condition: str, values: Item,
              names: dict[str, str] | None = None) -> dict[str, Any]:
    """A conditional ``Delete`` entry of a transaction."""
    operation: dict[str, Any] = {"Key": key(pk, sk)}
    _conditional(operation, condition, values, names)
    return {"Delete": operation}


def _conditional(operation: dict[str, Any], condition: str | None, values: Item | None,
                 names: dict[str, str] | None) -> None:
    if condition is not None:
        operation["ConditionExpression"] = condition
    if values:
        operation["ExpressionAttributeValues"] = values
    if names:
        operation["ExpressionAttributeNames"] = names


@dataclass(frozen=True, slots=True)
class Location:
    """Where a ``dynamodb://`` URL points: the table, the region and endpoint of its
    clients, the prefix of its queues, and whether the bus creates them."""

    table: str
    region: str | None = None
    endpoint_url: str | None = None
    queue_prefix: str = ""
    create_queues: bool = False

    @classmethod
    def from_url(cls, raw: str) -> Location:
        """``dynamodb://TABLE?region=…&endpoint_url=…&queue_prefix=…&create_queues=true``
        (``queue_prefix`` defaults to the table's name)."""
        usage = ("dynamodb://TABLE?region=R&endpoint_url=URL&queue_prefix=P"
                 "&create_queues=true|false")
        url = urls.parse(raw)
        if url.scheme != "dynamodb" or not _TABLE.fullmatch(url.host) or url.user \
                or url.port or url.path not in ("", "/"):
            raise ConfigurationError(f"a DynamoDB store URL is {usage}")
        url.check_options({"region", "endpoint_url", "queue_prefix", "create_queues"}, usage)
        create = url.option("create_queues", "false")
        if create not in ("true", "false"):
            raise ConfigurationError(f"create_queues is true or false; {usage}")
        return cls(table=url.host, region=url.option("region"),
                   endpoint_url=url.option("endpoint_url"),
                   queue_prefix=url.option("queue_prefix") or url.host,
                   create_queues=create == "true")
