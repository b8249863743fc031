"""API keys over every store backend: client keys, scopes, origins, secret rotation."""

from __future__ import annotations

import asyncio

import pytest

from otpgate import apikeys
from otpgate.backends import Backend
from otpgate.clock import FrozenClock
from otpgate.errors import Conflict, NotFound, Unauthorized


async def test_a_client_key_is_kept_with_its_kind_scopes_and_origins(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    _, plaintext = await apikeys.create(store, "web", now, tenant="acme", kind="client",
                                        origins=["https://app.example"])
    found = await apikeys.authenticate(store, plaintext, now)
    assert (found.kind, found.tenant, found.origins) == ("client", "acme",
                                                         ["https://app.example"])
    assert apikeys.scopes_of(found) == {"otp:send", "otp:verify"}
    reader, _ = await apikeys.create(store, "ro", now, scopes=["otp:read"])
    assert apikeys.scopes_of(await store.get_api_key(reader.id) or reader) == {"otp:read"}


async def test_a_rotation_keeps_both_secrets_until_it_ends(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    key, old = await apikeys.create(store, "shop", now)
    _, new = await apikeys.rotate(store, key.id, now, grace=60)
    for plaintext in (old, new):
        assert (await apikeys.authenticate(store, plaintext, now + 59)).id == key.id
    with pytest.raises(Conflict):
        await apikeys.rotate(store, key.id, now + 1)
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, old, now + 60)
    assert [k.id for k in await apikeys.list_keys(store)] == [key.id]
    assert await apikeys.finish_rotation(store, key.id, now + 61) is False
    _, newer = await apikeys.rotate(store, key.id, now + 61)
    assert await apikeys.finish_rotation(store, key.id, now + 62) is True
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, new, now + 62)
    assert (await apikeys.authenticate(store, newer, now + 62)).id == key.id
    assert await apikeys.revoke(store, key.id, now + 63)
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, newer, now + 63)


async def test_a_rotation_racing_a_revocation_never_undoes_it(
    backend: Backend, clock: FrozenClock
) -> None:
    store, now = backend.store, clock.now()
    for n in range(10):
        key, _ = await apikeys.create(store, f"k{n}", now)
        rotated, revoked = await asyncio.gather(
            apikeys.rotate(store, key.id, now), store.revoke_api_key(key.id, now),
            return_exceptions=True)
        assert revoked is True
        assert isinstance(rotated, (tuple, NotFound))
        final = await store.get_api_key(key.id)
        assert final is not None and final.revoked_at == now


async def test_a_change_that_declines_writes_nothing(backend: Backend, clock: FrozenClock) -> None:
    store = backend.store
    key, _ = await apikeys.create(store, "k", clock.now())
    assert await store.change_api_key(key.id, lambda k: None) is None
    assert await store.change_api_key("ffffffff", lambda k: k) is None
    assert await store.get_api_key(key.id) == key
