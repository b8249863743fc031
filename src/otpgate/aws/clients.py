"""AWS SDK clients (aiobotocore), made once per process and closed together.

aiobotocore rather than boto3: every port of otpgate is async and one event loop serves
many requests at once (``otpgate serve`` on a DynamoDB store, the tests' concurrent
verifications); boto3 would block that loop or need a thread per call in flight, and a
call stuck in a thread cannot be cancelled by a timeout. Credentials, region and endpoints
come from the SDK's usual chain (``AWS_REGION``, ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_DYNAMODB``, …) unless given here.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

_CONFIG: dict[str, Any] = {
    "max_pool_connections": 64,
    "connect_timeout": 2,
    "read_timeout": 10,
    "retries": {"mode": "standard", "max_attempts": 4},
}


@functools.cache
def _session() -> Any:
    """The SDK session (its configuration and service models, loaded once a process:
    a cold start makes clients twice, for the settings' references and the backend)."""
    from aiobotocore.session import get_session

    return get_session()


class Clients:
    """Clients by service name, opened on first use and closed by ``close``."""

    def __init__(self, region: str | None = None, endpoint_url: str | None = None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}

    async def get(self, service: str) -> Any:
        """The client for ``service`` (``dynamodb``, ``sns``, ``sqs``, ``ssm``, …)."""
        if service not in self._clients:
            from aiobotocore.config import AioConfig

            options: dict[str, Any] = {"config": AioConfig(**_CONFIG)}
            if self.region:
                options["region_name"] = self.region
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            creator = _session().create_client(service, **options)
            self._clients[service] = await self._stack.enter_async_context(creator)
        return self._clients[service]

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()
