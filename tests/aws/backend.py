"""A fresh, provisioned DynamoDB backend on the session's moto server."""

from __future__ import annotations

import uuid

from otpgate.aws import resources
from otpgate.aws.clients import Clients
from otpgate.aws.provision import provision, store_url
from otpgate.backends import Backend, open_dynamodb
from otpgate.clock import Clock
from tests.aws import moto


async def provisioned(name: str | None = None,
                      drivers: tuple[str, ...] = ()) -> dict[str, str]:
    """Provision deployment ``name`` (a fresh one by default); its settings."""
    name = name or f"otpgate-{uuid.uuid4().hex[:12]}"
    clients = Clients(moto.REGION, moto.endpoint())
    try:
        return await provision(clients, name, drivers, max_deliveries=3, visibility=30)
    finally:
        await clients.close()


async def open_provisioned(clock: Clock, poll_interval: float = 0.01) -> Backend:
    """A backend on a table and topics of its own (its queues made as it declares them:
    only the table and the topics are made beforehand, which keeps it quick)."""
    name = f"otpgate-{uuid.uuid4().hex[:12]}"
    clients = Clients(moto.REGION, moto.endpoint())
    try:
        await resources.ensure_table(await clients.get("dynamodb"), name)
        sns = await clients.get("sns")
        dispatch = await resources.ensure_topic(sns, f"{name}-dispatch")
        lifecycle = await resources.ensure_topic(sns, f"{name}-events")
    finally:
        await clients.close()
    return await open_dynamodb(store_url(name, moto.REGION, moto.endpoint()), clock,
                               topic_arn=dispatch, events_topic_arn=lifecycle,
                               max_deliveries=3, poll_interval=poll_interval)
