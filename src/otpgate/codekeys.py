"""Rotation of the keys codes are digested and sealed with, and tokens signed with.

The store keeps the code keys as one record (``Store.read_meta``/``swap_meta`` under
``code_keys``, changed by compare-and-swap): per key its id, its material wrapped under a
key derived from the master secret (``Keyring.wrap``), when it was made and, once retired,
when. The master secret's own code key is there implicitly, oldest of all, until retired.
The newest live key is current: new codes, seals and tokens use it; every live key still
checks what it made.

``rotate`` adds a new current key. ``retire`` drops one that is no longer current, once
nothing it made can still be alive: codes live at most ``max_ttl`` and an approved one's
digest is kept ``max_ttl`` longer (double submits), a token lives at most
``tokens.MAX_TTL``, and every process picks up a change within ``REFRESH`` seconds.
"""

from __future__ import annotations

import logging
import secrets

import msgspec

from otpgate.clock import isoformat
from otpgate.crypto import CodeKey, Keyring
from otpgate.errors import InvalidRequest, NotFound, StoreError
from otpgate.store.base import Store

log = logging.getLogger(__name__)

META = "code_keys"
REFRESH = 30.0
"""Seconds within which every running process adopts a rotation."""
TOKEN_HOLD = 600.0
"""The longest a verification token lives (``tokens.MAX_TTL``)."""
_MATERIAL = 32
_TRIES = 16


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    """The key id, hex."""
    wrapped: str
    """Its material, wrapped; empty for the master secret's own key."""
    created_at: float
    retired_at: float | None = None


class Ring(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[Entry] = msgspec.field(default_factory=list)


_decode = msgspec.json.Decoder(Ring).decode


def hold(max_ttl: float) -> float:
    """How long after a key stopped being current it may still be needed."""
    return 2 * max_ttl + TOKEN_HOLD + 2 * REFRESH


async def _read(store: Store) -> tuple[str | None, Ring]:
    raw = await store.read_meta(META)
    return raw, (_decode(raw) if raw is not None else Ring())


def _with_root(ring: Ring, keyring: Keyring) -> list[Entry]:
    """Every entry, the master secret's own included (made before all others)."""
    root = keyring.root_key.kid.hex()
    entries = list(ring.keys)
    if not any(e.kid == root for e in entries):
        entries.insert(0, Entry(kid=root, wrapped="", created_at=0.0))
    return sorted(entries, key=lambda e: e.created_at)


def keys_of(ring: Ring, keyring: Keyring) -> tuple[CodeKey, ...]:
    """The live code keys, current (newest) first."""
    found: list[CodeKey] = []
    for entry in reversed(_with_root(ring, keyring)):
        if entry.retired_at is not None:
            continue
        kid = bytes.fromhex(entry.kid)
        found.append(keyring.root_key if not entry.wrapped else
                     keyring.unwrap(kid, entry.wrapped))
    if not found:
        raise StoreError("the store keeps no live code key")
    return tuple(found)


async def load(store: Store, keyring: Keyring) -> None:
    """Adopt the code keys the store keeps."""
    _, ring = await _read(store)
    keys = keys_of(ring, keyring)
    if [k.kid for k in keys] != [k.kid for k in keyring.code_keys]:
        if keys[0].kid != keyring.current.kid:
            log.info("code key %s is current now", keys[0].kid.hex())
        keyring.adopt(keys)


async def _swap(store: Store, expected: str | None, ring: Ring) -> bool:
    return await store.swap_meta(META, expected, msgspec.json.encode(ring).decode())


async def rotate(store: Store, keyring: Keyring, now: float) -> str:
    """Make a new current code key; its id (hex)."""
    for _ in range(_TRIES):
        raw, ring = await _read(store)
        taken = {e.kid for e in _with_root(ring, keyring)}
        kid = secrets.token_bytes(4)
        if kid.hex() in taken:
            continue
        latest = max((e.created_at for e in ring.keys), default=now - 1)
        made = Entry(kid=kid.hex(), wrapped=keyring.wrap(kid, secrets.token_bytes(_MATERIAL)),
                     created_at=max(now, latest + 1e-3))
        if await _swap(store, raw, Ring(keys=[*ring.keys, made])):
            await load(store, keyring)
            log.warning("code key %s is current now (secrets rotate)", made.kid)
            return made.kid
    raise StoreError("too many conflicting changes to the code keys")


async def retire(store: Store, keyring: Keyring, kid: str, now: float,
                 max_ttl: float) -> None:
    """Stop accepting what the code key ``kid`` made. ``NotFound`` for no such live key;
    ``InvalidRequest`` for the current one, or one something alive may still need."""
    kid = parse_kid(kid)
    for _ in range(_TRIES):
        raw, ring = await _read(store)
        entries = _with_root(ring, keyring)
        live = [e for e in entries if e.retired_at is None]
        mine = next((e for e in live if e.kid == kid), None)
        if mine is None:
            raise NotFound(f"no live code key {kid}")
        if mine is live[-1]:
            raise InvalidRequest(f"{kid} is the current code key: rotate first "
                                 "(otpgate secrets rotate)", "kid")
        newer = entries[entries.index(mine) + 1]
        ready = newer.created_at + hold(max_ttl)
        if now < ready:
            raise InvalidRequest(
                f"codes, approvals or tokens made with {kid} may still be alive until "
                f"{isoformat(ready)}; retire it after that", "kid")
        kept = [e for e in ring.keys if e.kid != mine.kid]
        retired = Entry(kid=mine.kid, wrapped=mine.wrapped, created_at=mine.created_at,
                        retired_at=now)
        if await _swap(store, raw, Ring(keys=sorted([*kept, retired],
                                                    key=lambda e: e.created_at))):
            await load(store, keyring)
            log.warning("code key %s is retired (secrets retire)", kid)
            return
    raise StoreError("too many conflicting changes to the code keys")


async def listing(store: Store, keyring: Keyring, max_ttl: float) -> list[dict[str, object]]:
    """Every code key, oldest first: id, whether current, made, retired, and from when it
    may be retired."""
    _, ring = await _read(store)
    entries = _with_root(ring, keyring)
    live = [e for e in entries if e.retired_at is None]
    out: list[dict[str, object]] = []
    for i, entry in enumerate(entries):
        later = entries[i + 1] if i + 1 < len(entries) else None
        out.append({
            "kid": entry.kid, "current": bool(live) and entry is live[-1],
            "source": "secret key" if not entry.wrapped else "rotated",
            "created_at": isoformat(entry.created_at) if entry.wrapped else None,
            "retired_at": isoformat(entry.retired_at) if entry.retired_at else None,
            "retirable_from": isoformat(later.created_at + hold(max_ttl))
            if later is not None and entry.retired_at is None else None,
        })
    return out


def parse_kid(kid: str) -> str:
    """``kid`` as the hex id a command takes; ``InvalidRequest`` if it is not one."""
    text = kid.strip().lower()
    if len(text) != 8 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidRequest("a code key id is 8 hex characters", "kid")
    return text

