"""API keys: ``og_<key id>_<secret>``, shown once, stored as a SHA-256 of the secret.

The key id (8 hex characters) is public and finds the stored key; the secret (32 random
bytes, base64url) is compared in constant time against its stored hash. A revoked or
unknown key is ``Unauthorized``, and the two cannot be told apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from otpgate.core import tenants
from otpgate.errors import InvalidRequest, Unauthorized
from otpgate.store.base import ApiKey, Store

PREFIX = "og_"
_SHAPE = re.compile(r"og_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})", re.ASCII)
_NAME = re.compile(r"[\x20-\x7e]{1,64}", re.ASCII)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def split(presented: str) -> tuple[str, str]:
    """``(key id, secret)`` of a presented key; ``Unauthorized`` if it is not shaped like one."""
    match = _SHAPE.fullmatch(presented)
    if match is None:
        raise Unauthorized("the API key is malformed")
    return match["id"], match["secret"]


async def create(store: Store, name: str, now: float, *, tenant: str = tenants.DEFAULT,
                 admin: bool = False) -> tuple[ApiKey, str]:
    """Make and store a new key of ``tenant`` (an ``admin`` one may also unlock its
    recipients); the plaintext is returned here and never again."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest("a key name is 1 to 64 printable ASCII characters", "name")
    tenant = tenants.parse(tenant)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    while True:
        key_id = secrets.token_hex(4)
        if await store.get_api_key(key_id) is None:
            break
    key = ApiKey(id=key_id, name=name, secret_hash=hash_secret(secret), created_at=now,
                 tenant=tenant, admin=admin)
    await store.put_api_key(key)
    return key, f"{PREFIX}{key_id}_{secret}"


async def authenticate(store: Store, presented: str, now: float) -> ApiKey:
    """The active key ``presented`` belongs to, or ``Unauthorized`` (a key is revoked
    from its ``revoked_at`` on)."""
    key_id, secret = split(presented)
    key = await store.get_api_key(key_id)
    # Hash and compare even for an unknown id, so timing tells nothing about ids.
    expected = key.secret_hash if key is not None else b"\x00" * 32
    matches = hmac.compare_digest(expected, hash_secret(secret))
    if key is None or not matches or (key.revoked_at is not None and key.revoked_at <= now):
        raise Unauthorized("the API key is unknown or revoked")
    return key


async def list_keys(store: Store) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first (hashes only)."""
    return await store.list_api_keys()


async def revoke(store: Store, key_id: str, now: float) -> bool:
    """Revoke ``key_id``; False if there is no such active key.

    A running API keeps accepting the key for as long as it caches successful lookups
    (see ``otpgate.api.auth``), a few seconds at most.
    """
    return await store.revoke_api_key(key_id, now)

