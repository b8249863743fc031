"""``otpgate aws provision``: the AWS runtime's resources on any endpoint (moto,
LocalStack) for local runs and tests — the table, both topics, and a queue with its
dead-letter queue and filtered subscription per driver (and one for the failure watcher)
— created idempotently, and the settings that point otpgate at them.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from otpgate.aws import resources
from otpgate.aws.clients import Clients
from otpgate.aws.resources import Topics
from otpgate.bus.base import Subscription
from otpgate.dispatch import subscription_for
from otpgate.housekeeping import FAILURES


def subscriptions(drivers: Iterable[str]) -> list[Subscription]:
    """Every subscription of the AWS runtime: one per driver, and the failure watcher's."""
    return [*(subscription_for(name) for name in drivers), FAILURES]


async def provision(clients: Clients, name: str, drivers: Iterable[str], *,
                    max_deliveries: int = 8, visibility: int = 180) -> dict[str, str]:
    """Create what is missing of deployment ``name``; return its settings
    (``OTPGATE_*`` → value)."""
    dynamodb, sns, sqs = [await clients.get(s) for s in ("dynamodb", "sns", "sqs")]
    await resources.ensure_table(dynamodb, name)
    topics = Topics(dispatch=await resources.ensure_topic(sns, f"{name}-dispatch"),
                    events=await resources.ensure_topic(sns, f"{name}-events"))
    for sub in subscriptions(drivers):
        await resources.ensure_queue(sqs, sns, topics, resources.queue_name(name, sub.name),
                                     sub.filter, max_deliveries=max_deliveries,
                                     visibility=visibility)
    return {"OTPGATE_STORE_URL": store_url(name, clients.region, clients.endpoint_url),
            "OTPGATE_TOPIC_ARN": topics.dispatch,
            "OTPGATE_EVENTS_TOPIC_ARN": topics.events,
            "OTPGATE_BUS_MAX_DELIVERIES": str(max_deliveries)}


def store_url(name: str, region: str | None, endpoint_url: str | None) -> str:
    """The ``dynamodb://`` URL of deployment ``name`` (creating queues on declare when it
    points at a local endpoint)."""
    options = []
    if region:
        options.append(f"region={quote(region, safe='')}")
    if endpoint_url:
        options.append(f"endpoint_url={quote(endpoint_url, safe=':/')}")
        options.append("create_queues=true")
    return f"dynamodb://{name}" + ("?" + "&".join(options) if options else "")
