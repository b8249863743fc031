"""``Authorization: Bearer <api key>`` on every ``/v1`` route (outside dev mode).

Successful lookups are cached in this process for ``ttl`` seconds (default 5), keyed by
the key id and a hash of the whole presented key, so most requests do not touch the store.
The price: a revoked key keeps working here for at most ``ttl`` seconds after revocation.
Failures are never cached, so a newly created key works at once. Every use and every
failure is counted and logged by ``otpgate.audit`` (key ids only, never a secret).

The guard leaves the key it accepted on the request; ``caller`` reads it back as the
``Caller`` a handler acts for (its tenant, its kind — ``server`` or ``client`` — and its
scopes). Each route names the scope it needs (``scoped``): a client key is refused with 403
everywhere but requesting and verifying codes. In dev mode no key is needed and a caller
without one counts as a server key with every scope; a key that is presented is checked
and holds, so that a client key behaves there as it will in production.

Browser origins: a client key made with ``--origin`` is accepted only from a page of one
of those origins (``Origin`` must name one). A cross-site page the edge lets through
(see ``otpgate.api.edge``: only requests to the client routes that carry a key) must
present a client key bound to its origin; the edge then echoes that origin for CORS.

Surfaces that other software calls with its own client (Twilio Verify's SDKs, Kratos'
courier) may also present a key as HTTP Basic (``basic=True``): the key id as user, and
the key's secret part — or the whole key — as password.
"""

from __future__ import annotations

import binascii
import hashlib
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from otpgate import apikeys
from otpgate.audit import Audit
from otpgate.clock import Clock
from otpgate.core import tenants
from otpgate.errors import CrossOriginRefused, Forbidden, Unauthorized
from otpgate.store.base import ApiKey, Store

CACHE_TTL = 5.0
_MAX_ENTRIES = 4096
_SCOPE_KEY = "otpgate.api_key"


CROSS_ORIGIN = "otpgate.cross_origin"
"""Set on the ASGI scope by the edge: the cross-site ``Origin`` it let through."""
CORS_ORIGIN = "otpgate.cors_origin"
"""Set on the ASGI scope here: the origin the edge may echo for CORS."""
_EVERYTHING = frozenset(apikeys.SCOPES)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts for."""

    tenant: str
    key_id: str
    """The API key id, or ``dev`` for keyless dev mode."""
    admin: bool
    kind: str = apikeys.SERVER
    """``server`` or ``client`` (``otpgate keys create --client``): per-IP limits hook
    to it."""
    scopes: frozenset[str] = _EVERYTHING

    @classmethod
    def of(cls, key: ApiKey) -> Caller:
        scopes = apikeys.scopes_of(key)
        return cls(key.tenant, key.id, apikeys.ADMIN in scopes, key.kind, scopes)

    @property
    def client(self) -> bool:
        return self.kind == apikeys.CLIENT


DEV_CALLER = Caller(tenants.DEFAULT, "dev", admin=True)
"""Keyless dev mode: the default tenant, a server key allowed everything."""


class Authenticator:
    """Checks presented keys against the store, with a short-lived cache of successes."""

    __slots__ = ("_audit", "_cache", "_clock", "_store", "_ttl")

    def __init__(self, store: Store, clock: Clock, ttl: float = CACHE_TTL,
                 audit: Audit | None = None) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._audit = audit or Audit()
        self._cache: dict[bytes, tuple[ApiKey, float]] = {}

    async def check(self, authorization: str | None, *, basic: bool = False) -> ApiKey:
        """The key an ``Authorization`` header carries (as a bearer token, or — with
        ``basic`` — as HTTP Basic too), or ``Unauthorized``."""
        try:
            presented = key_of(authorization) if basic else bearer(authorization)
            key_id = apikeys.split(presented)[0]
        except Unauthorized:
            self._audit.key_failed("missing" if not authorization else "malformed")
            raise
        now = self._clock.now()
        slot = hashlib.sha256(presented.encode()).digest()
        hit = self._cache.get(slot)
        if hit is not None and hit[1] > now:
            self._audit.key_used(hit[0].id, hit[0].tenant, fresh=False)
            return hit[0]
        try:
            key = await apikeys.authenticate(self._store, presented, now)
        except Unauthorized:
            self._audit.key_failed("refused", key_id)
            raise
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[slot] = (key, now + self._ttl)
        self._audit.key_used(key.id, key.tenant, fresh=True)
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


def key_of(authorization: str | None) -> str:
    """The key of ``Bearer og_…``, or of HTTP Basic with the key id as user and the key's
    secret part or the whole key as password; ``Unauthorized`` otherwise."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return bearer(authorization)
    try:
        user, colon, password = b64decode(credentials.strip(), validate=True).decode(
            "ascii").partition(":")
    except (binascii.Error, ValueError):
        raise Unauthorized("the Authorization header's Basic credentials are malformed") \
            from None
    if not colon or not user or not password:
        raise Unauthorized("Basic credentials are the key id and the key (or its secret)")
    whole = password if password.startswith(apikeys.PREFIX) else \
        f"{apikeys.PREFIX}{user}_{password}"
    if apikeys.split(whole)[0] != user:
        raise Unauthorized("the Basic user is not the key's id")
    return whole


def caller(connection: ASGIConnection[Any, Any, Any, Any], dev: bool) -> Caller:
    """Who ``connection`` acts for: the key the guard accepted, else — in keyless dev mode
    only — the dev caller."""
    key = cast(dict[str, Any], connection.scope).get(_SCOPE_KEY)
    if isinstance(key, ApiKey):
        return Caller.of(key)
    if dev:
        return DEV_CALLER
    raise Unauthorized("an API key is required: Authorization: Bearer <key>")


def require(who: Caller, scope: str) -> Caller:
    """``who`` if its key holds ``scope``; ``Forbidden`` otherwise."""
    if scope in who.scopes:
        return who
    if who.client:
        raise Forbidden("a client key may only request and verify codes; use a server key")
    if scope == apikeys.ADMIN:
        raise Forbidden("this route needs an admin key (otpgate keys create --admin)")
    raise Forbidden(f"this key lacks the scope {scope}")


def require_admin(who: Caller) -> Caller:
    """``who`` if it may use the admin routes; ``Forbidden`` otherwise."""
    return require(who, apikeys.ADMIN)


def server_only(key: ApiKey, scope: str) -> Caller:
    """The caller of ``key`` on a server-to-server surface (``/v2``, ``/hooks``), which
    client keys may never use; ``Forbidden`` otherwise."""
    if key.kind == apikeys.CLIENT:
        raise Forbidden("a client key may only request and verify codes on /v1; this "
                        "surface is for server keys")
    return require(Caller.of(key), scope)


def admit(connection: ASGIConnection[Any, Any, Any, Any], key: ApiKey) -> None:
    """Refuse ``key`` from a browser origin it is not meant for (see the module
    docstring), and leave the origin to echo for CORS when it is."""
    scope = cast(dict[str, Any], connection.scope)
    origin = connection.headers.get("origin")
    seen = origin.strip().lower() if origin else None
    client = key.kind == apikeys.CLIENT
    if key.origins and seen not in key.origins:
        raise CrossOriginRefused("this client key is bound to other origins" if seen else
                                 "this client key is for browser pages of its origins: "
                                 "the request needs their Origin")
    if scope.get(CROSS_ORIGIN) is not None and not (client and seen in key.origins):
        raise CrossOriginRefused("requests from other sites' pages need a client key bound "
                                 "to that origin (otpgate keys create --client --origin …)")
    if client and seen is not None and seen in key.origins:
        scope[CORS_ORIGIN] = seen


def admin_guard(authenticator: Callable[[], Authenticator]) -> Guard:
    """A guard that lets a request through only with an active admin key (401 without a
    key, 403 with one that is not an admin's)."""

    async def require_admin_key(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        key = await authenticator().check(connection.headers.get("authorization"))
        require(Caller.of(key), apikeys.ADMIN)

    return require_admin_key


def guard(authenticator: Callable[[], Authenticator]) -> Guard:
    """A Litestar guard that lets a request through only with an active API key, and
    leaves that key on the request for ``caller``."""

    async def require_api_key(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        key = await authenticator().check(connection.headers.get("authorization"))
        admit(connection, key)
        cast(dict[str, Any], connection.scope)[_SCOPE_KEY] = key

    return require_api_key


def dev_guard(authenticator: Callable[[], Authenticator]) -> Guard:
    """Dev mode's guard: no key needed, but a key that is presented is checked and holds
    (so that a client key is refused where it will be in production)."""

    async def check_key_if_any(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        presented = connection.headers.get("authorization")
        if presented is not None:  # an empty one too: it is no key, and no way around one
            key = await authenticator().check(presented)
            admit(connection, key)
            cast(dict[str, Any], connection.scope)[_SCOPE_KEY] = key

    return check_key_if_any


def scoped(scope: str, dev: bool) -> Guard:
    """A route's guard: the caller (see ``caller``) must hold ``scope``. Runs after the
    router's key guard."""

    async def require_scope(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        if connection.scope.get("method") != "OPTIONS":
            require(caller(connection, dev), scope)

    return require_scope
