"""API keys over every store backend: client keys, scopes, origins, secret rotation."""

from __future__ import annotations

import pytest

from otpgate import apikeys
from otpgate.backends import Backend
from otpgate.clock import FrozenClock
from otpgate.errors import Conflict, Unauthorized


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
