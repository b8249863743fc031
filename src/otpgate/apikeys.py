"""API keys: ``og_<key id>_<secret>``, shown once, stored as a SHA-256 of the secret.

The key id (8 hex characters) is public and finds the stored key; the secret (32 random
bytes, base64url) is compared in constant time against its stored hash. A revoked or
unknown key is ``Unauthorized``, and the two cannot be told apart.

Kinds and scopes: a **server** key lives on the integrator's servers and may, by default,
do everything but the admin routes (``otp:send``, ``otp:verify``, ``otp:read``,
``otp:cancel``; ``admin`` too when made with ``--admin``). A **client** key is meant to be
shipped in a mobile or browser app, where anyone can read it: it may only request and
verify (``otp:send``, ``otp:verify``), never read, cancel or administer, whatever it is
given; it may be bound to browser ``origins``. ``scopes`` narrows a key further.

Rotation: ``rotate`` issues a new secret and keeps the previous one working until a grace
period ends (or ``finish`` ends it at once), so that callers can move over without a
moment of refusals; both secrets are checked, in constant time, on every use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

import msgspec

from otpgate import urls
from otpgate.core import tenants
from otpgate.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from otpgate.store.base import ApiKey, Store

PREFIX = "og_"
_SHAPE = re.compile(r"og_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})", re.ASCII)
_NAME = re.compile(r"[\x20-\x7e]{1,64}", re.ASCII)

SERVER = "server"
CLIENT = "client"
KINDS = (SERVER, CLIENT)
SEND, VERIFY, READ, CANCEL, ADMIN = "otp:send", "otp:verify", "otp:read", "otp:cancel", "admin"
SCOPES = (SEND, VERIFY, READ, CANCEL, ADMIN)
SERVER_DEFAULT = frozenset({SEND, VERIFY, READ, CANCEL})
"""What a server key may do unless told otherwise (v0.1's keys, unchanged)."""
CLIENT_ALLOWED = frozenset({SEND, VERIFY})
"""All a client key may ever do: request and verify."""
ROTATION_GRACE = 24 * 3600.0
"""How long the previous secret keeps working after ``rotate``, unless told."""
MAX_ORIGINS = 16
_ZERO = b"\x00" * 32


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def split(presented: str) -> tuple[str, str]:
    """``(key id, secret)`` of a presented key; ``Unauthorized`` if it is not shaped like one."""
    match = _SHAPE.fullmatch(presented)
    if match is None:
        raise Unauthorized("the API key is malformed")
    return match["id"], match["secret"]


async def create(store: Store, name: str, now: float, *, tenant: str = tenants.DEFAULT,
                 admin: bool = False, kind: str = SERVER, scopes: Iterable[str] | None = None,
                 origins: Iterable[str] = ()) -> tuple[ApiKey, str]:
    """Make and store a new key of ``tenant`` (an ``admin`` one may also unlock its
    recipients); the plaintext is returned here and never again. ``InvalidRequest`` for a
    client key asked for more than requesting and verifying, or for a bad scope or origin."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest("a key name is 1 to 64 printable ASCII characters", "name")
    tenant = tenants.parse(tenant)
    if kind not in KINDS:
        raise InvalidRequest("a key is a server key or a client key", "kind")
    chosen = _scopes(kind, admin, scopes)
    allowed = _origins(kind, origins)
    secret = _new_secret()
    while True:
        key_id = secrets.token_hex(4)
        if await store.get_api_key(key_id) is None:
            break
    key = ApiKey(id=key_id, name=name, secret_hash=hash_secret(secret), created_at=now,
                 tenant=tenant, admin=admin if chosen is None else ADMIN in chosen, kind=kind,
                 scopes=chosen, origins=allowed)
    await store.put_api_key(key)
    return key, f"{PREFIX}{key_id}_{secret}"


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def _scopes(kind: str, admin: bool, scopes: Iterable[str] | None) -> list[str] | None:
    """The scopes to store: ``None`` for a server key's defaults (so that they follow the
    code), else the sorted set asked for."""
    if scopes is None:
        if kind == CLIENT:
            if admin:
                raise InvalidRequest("a client key cannot be an admin key", "admin")
            return sorted(CLIENT_ALLOWED)
        return None
    chosen = set(scopes) | ({ADMIN} if admin else set())
    unknown = chosen - set(SCOPES)
    if unknown:
        raise InvalidRequest(f"unknown scope {sorted(unknown)[0]!r}; scopes are "
                             f"{', '.join(SCOPES)}", "scopes")
    if not chosen:
        raise InvalidRequest("a key needs at least one scope", "scopes")
    if kind == CLIENT and chosen - CLIENT_ALLOWED:
        raise InvalidRequest("a client key may only request and verify codes (scopes "
                             "otp:send, otp:verify)", "scopes")
    return sorted(chosen)


def _origins(kind: str, origins: Iterable[str]) -> list[str]:
    found: list[str] = []
    for given in origins:
        origin = urls.origin_of(given)
        if origin is None or origin != given.strip().lower().rstrip("/"):
            raise InvalidRequest(f"{given!r} is not a web origin (https://host[:port])",
                                 "origin")
        if origin not in found:
            found.append(origin)
    if found and kind != CLIENT:
        raise InvalidRequest("only client keys are bound to browser origins; a server key "
                             "must never reach a browser", "origin")
    if len(found) > MAX_ORIGINS:
        raise InvalidRequest(f"a key takes at most {MAX_ORIGINS} origins", "origin")
    return found


def scopes_of(key: ApiKey) -> frozenset[str]:
    """What ``key`` may do (a client key never more than ``CLIENT_ALLOWED``)."""
    if key.scopes is None:
        granted = (CLIENT_ALLOWED if key.kind == CLIENT else
                   SERVER_DEFAULT | ({ADMIN} if key.admin else frozenset()))
    else:
        granted = frozenset(key.scopes)
    return granted & CLIENT_ALLOWED if key.kind == CLIENT else granted


async def authenticate(store: Store, presented: str, now: float) -> ApiKey:
    """The active key ``presented`` belongs to, or ``Unauthorized`` (a key is revoked
    from its ``revoked_at`` on). During a rotation its previous secret matches too, until
    ``old_until``."""
    key_id, secret = split(presented)
    key = await store.get_api_key(key_id)
    # Hash and compare even for an unknown id — and against both secrets always — so that
    # timing tells nothing about ids or rotations.
    presented_hash = hash_secret(secret)
    expected = key.secret_hash if key is not None else _ZERO
    old = key.old_secret_hash if key is not None and key.old_secret_hash else _ZERO
    matches = hmac.compare_digest(expected, presented_hash)
    old_matches = hmac.compare_digest(old, presented_hash)
    if key is not None and old_matches and key.old_secret_hash is not None and (
            key.old_until is None or key.old_until > now):
        matches = True
    if key is None or not matches or (key.revoked_at is not None and key.revoked_at <= now):
        raise Unauthorized("the API key is unknown or revoked")
    return key


def rotating(key: ApiKey, now: float) -> bool:
    """Whether ``key``'s previous secret still works."""
    return key.old_secret_hash is not None and (key.old_until is None or key.old_until > now)


async def rotate(store: Store, key_id: str, now: float,
                 grace: float = ROTATION_GRACE) -> tuple[ApiKey, str]:
    """Give ``key_id`` a new secret (returned as the whole new key, here only); the one it
    had keeps working for ``grace`` seconds. ``NotFound`` for no such active key,
    ``Conflict`` while a rotation is under way (finish it first: two secrets at most)."""
    if grace < 0:
        raise InvalidRequest("the grace period cannot be negative", "expire")
    secret = _new_secret()

    def change(key: ApiKey) -> ApiKey:
        _check_active(key, key_id, now)
        if rotating(key, now):
            raise Conflict(f"key {key_id} is being rotated already; end that with "
                           f"'otpgate keys rotate {key_id} --finish' first")
        return msgspec.structs.replace(key, secret_hash=hash_secret(secret),
                                       old_secret_hash=key.secret_hash,
                                       old_until=now + grace)

    changed = await store.change_api_key(key_id, change)
    if changed is None:
        raise NotFound(f"no active key {key_id}")
    return changed, f"{PREFIX}{key_id}_{secret}"


async def finish_rotation(store: Store, key_id: str, now: float) -> bool:
    """Stop accepting ``key_id``'s previous secret now; False if none was alive."""
    alive: list[bool] = []

    def change(key: ApiKey) -> ApiKey | None:
        _check_active(key, key_id, now)
        alive[:] = [rotating(key, now)]
        if key.old_secret_hash is None:
            return None
        return msgspec.structs.replace(key, old_secret_hash=None, old_until=None)

    if await store.change_api_key(key_id, change) is None and not alive:
        raise NotFound(f"no active key {key_id}")
    return bool(alive and alive[0])


def _check_active(key: ApiKey, key_id: str, now: float) -> None:
    """Refuse a revoked key (``change_api_key`` runs its change over it again if a
    revocation got in first, so that none is ever undone)."""
    if key.revoked_at is not None and key.revoked_at <= now:
        raise NotFound(f"no active key {key_id}")


async def list_keys(store: Store) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first (hashes only)."""
    return await store.list_api_keys()


async def revoke(store: Store, key_id: str, now: float) -> bool:
    """Revoke ``key_id``; False if there is no such active key.

    A running API keeps accepting the key for as long as it caches successful lookups
    (see ``otpgate.api.auth``), a few seconds at most.
    """
    return await store.revoke_api_key(key_id, now)

