"""API keys: shape, hashing at rest, authentication, revocation."""

from __future__ import annotations

import hashlib
import re

import pytest

from otpgate import apikeys
from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.errors import InvalidRequest, NotFound, Unauthorized
from otpgate.store.memory import MemoryStore

NOW = 1_800_000_000.0


@pytest.fixture
def store() -> MemoryStore:
    clock = FrozenClock(NOW)
    return MemoryStore(MemoryBus(clock), clock)


async def test_a_new_key_is_og_key_id_secret_and_only_its_hash_is_stored(
    store: MemoryStore,
) -> None:
    key, plaintext = await apikeys.create(store, "shop", NOW)
    assert re.fullmatch(r"og_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", plaintext)
    assert plaintext.split("_")[1] == key.id
    secret = plaintext[len("og_") + 8 + 1:]
    stored = await store.get_api_key(key.id)
    assert stored is not None
    assert stored.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret not in repr(stored)
    assert (stored.name, stored.created_at, stored.revoked_at) == ("shop", NOW, None)


async def test_two_keys_differ(store: MemoryStore) -> None:
    (a, pa), (b, pb) = (await apikeys.create(store, "a", NOW),
                        await apikeys.create(store, "b", NOW))
    assert a.id != b.id
    assert pa != pb


async def test_the_key_authenticates_as_itself(store: MemoryStore) -> None:
    key, plaintext = await apikeys.create(store, "shop", NOW)
    assert (await apikeys.authenticate(store, plaintext, NOW)).id == key.id


@pytest.mark.parametrize("mutate", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
    lambda k: "og_00000000" + k[11:],
    lambda k: k + "x",
    lambda k: k.replace("og_", "sk_"),
    lambda k: "",
])
async def test_a_wrong_or_malformed_key_is_unauthorized(store: MemoryStore, mutate: object) -> None:
    _, plaintext = await apikeys.create(store, "shop", NOW)
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, mutate(plaintext), NOW)  # type: ignore[operator]


async def test_a_revoked_key_is_unauthorized_and_cannot_be_revoked_twice(
    store: MemoryStore,
) -> None:
    key, plaintext = await apikeys.create(store, "shop", NOW)
    assert await apikeys.revoke(store, key.id, NOW + 1)
    assert not await apikeys.revoke(store, key.id, NOW + 2)
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, plaintext, NOW + 1)


async def test_revoking_an_unknown_key_says_so(store: MemoryStore) -> None:
    assert not await apikeys.revoke(store, "00000000", NOW)


async def test_keys_are_listed_oldest_first(store: MemoryStore) -> None:
    await apikeys.create(store, "first", NOW)
    await apikeys.create(store, "second", NOW + 1)
    assert [k.name for k in await apikeys.list_keys(store)] == ["first", "second"]


@pytest.mark.parametrize("name", ["", "n" * 65, "tab\tname", "ключ"])
async def test_a_key_name_must_be_short_printable_ascii(store: MemoryStore, name: str) -> None:
    with pytest.raises(InvalidRequest):
        await apikeys.create(store, name, NOW)


async def test_a_client_key_may_only_request_and_verify(store: MemoryStore) -> None:
    key, _ = await apikeys.create(store, "app", NOW, kind="client")
    assert apikeys.scopes_of(key) == {"otp:send", "otp:verify"}
    with pytest.raises(InvalidRequest):
        await apikeys.create(store, "app", NOW, kind="client", scopes=["otp:read"])
    with pytest.raises(InvalidRequest):
        await apikeys.create(store, "app", NOW, kind="client", admin=True)
    # even a stored record that says more grants no more
    key.scopes = ["otp:send", "admin"]
    assert apikeys.scopes_of(key) == {"otp:send"}


async def test_server_keys_keep_their_defaults_and_admin_adds_admin(store: MemoryStore) -> None:
    plain, _ = await apikeys.create(store, "srv", NOW)
    admin, _ = await apikeys.create(store, "ops", NOW, admin=True)
    assert plain.scopes is None and apikeys.scopes_of(plain) == apikeys.SERVER_DEFAULT
    assert apikeys.scopes_of(admin) == apikeys.SERVER_DEFAULT | {"admin"}
    with pytest.raises(InvalidRequest):
        await apikeys.create(store, "srv", NOW, scopes=["otp:everything"])


@pytest.mark.parametrize("origin", ["app.example", "https://app.example/path",
                                    "https://u@app.example", "ftp://app.example"])
async def test_an_origin_must_be_a_web_origin(store: MemoryStore, origin: str) -> None:
    with pytest.raises(InvalidRequest):
        await apikeys.create(store, "app", NOW, kind="client", origins=[origin])


async def test_a_rotation_keeps_two_secrets_then_one(store: MemoryStore) -> None:
    key, old = await apikeys.create(store, "shop", NOW)
    _, new = await apikeys.rotate(store, key.id, NOW, grace=100)
    assert (await apikeys.authenticate(store, old, NOW + 99)).id == key.id
    assert (await apikeys.authenticate(store, new, NOW + 99)).id == key.id
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, old, NOW + 100)
    assert (await apikeys.authenticate(store, new, NOW + 100)).id == key.id
    # a second rotation may start once the first is over
    _, newer = await apikeys.rotate(store, key.id, NOW + 100, grace=100)
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, old, NOW + 101)
    assert (await apikeys.authenticate(store, new, NOW + 101)).id == key.id
    assert await apikeys.finish_rotation(store, key.id, NOW + 101)
    with pytest.raises(Unauthorized):
        await apikeys.authenticate(store, new, NOW + 101)
    assert (await apikeys.authenticate(store, newer, NOW + 101)).id == key.id


async def test_a_revoked_key_cannot_be_rotated(store: MemoryStore) -> None:
    key, _ = await apikeys.create(store, "shop", NOW)
    await apikeys.revoke(store, key.id, NOW)
    with pytest.raises(NotFound):
        await apikeys.rotate(store, key.id, NOW)
