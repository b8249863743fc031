"""``Authorization: Bearer <api key>`` on every ``/v1`` route (outside dev mode).

Successful lookups are cached in this process for ``ttl`` seconds (default 5), keyed by
the key id and a hash of the whole presented key, so most requests do not touch the store.
The price: a revoked key keeps working here for at most ``ttl`` seconds after revocation.
Failures are never cached, so a newly created key works at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from otpgate import apikeys
from otpgate.clock import Clock
from otpgate.errors import Forbidden, Unauthorized
from otpgate.store.base import ApiKey, Store

CACHE_TTL = 5.0
_MAX_ENTRIES = 4096


class Authenticator:
    """Checks presented keys against the store, with a short-lived cache of successes."""

    __slots__ = ("_cache", "_clock", "_store", "_ttl")

    def __init__(self, store: Store, clock: Clock, ttl: float = CACHE_TTL) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[bytes, tuple[ApiKey, float]] = {}

    async def check(self, authorization: str | None) -> ApiKey:
        """The key an ``Authorization`` header carries, or ``Unauthorized``."""
        presented = bearer(authorization)
        now = self._clock.now()
        slot = hashlib.sha256(presented.encode()).digest()
        hit = self._cache.get(slot)
        if hit is not None and hit[1] > now:
            return hit[0]
        key = await apikeys.authenticate(self._store, presented, now)
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[slot] = (key, now + self._ttl)
        return key


def bearer(authorization: str | None) -> str:
    """The credentials of a ``Bearer`` header; ``Unauthorized`` when missing or not ASCII."""
    if not authorization:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or not credentials.isascii():
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    return credentials


def key_id(authorization: str | None) -> str:
    """The key id of an ``Authorization`` header the guard has already accepted."""
    return apikeys.split(bearer(authorization))[0]


def admin_guard(authenticator: Callable[[], Authenticator]) -> Guard:
    """A guard that lets a request through only with an active admin key (401 without a
    key, 403 with one that is not an admin's)."""

    async def require_admin_key(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        key = await authenticator().check(connection.headers.get("authorization"))
        if not key.admin:
            raise Forbidden("this route needs an admin key (otpgate keys create --admin)")

    return require_admin_key


def guard(authenticator: Callable[[], Authenticator]) -> Guard:
    """A Litestar guard that lets a request through only with an active API key."""

    async def require_api_key(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        await authenticator().check(connection.headers.get("authorization"))

    return require_api_key
