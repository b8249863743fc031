"""Code key rotation over every store backend: rotate, adopt, retire."""

from __future__ import annotations

import asyncio

import pytest

from otpgate import codekeys
from otpgate.backends import Backend
from otpgate.clock import FrozenClock
from otpgate.crypto import Keyring, Sealed, seal_aad
from otpgate.errors import InvalidRequest, NotFound, SealError

MASTER = bytes.fromhex("4fedfc15e87f0c7d608e8c13c2d55a3e50a3e0a1bf7d8caf5e42e84c0cc34339")
MAX_TTL = 600.0


async def test_a_rotation_is_adopted_by_every_process_and_old_codes_still_check(
    backend: Backend, clock: FrozenClock
) -> None:
    store = backend.store
    here, there = Keyring.from_secret(MASTER), Keyring.from_secret(MASTER)
    await codekeys.load(store, here)
    old_digest = here.code_digest("otp_a", "123456")
    old_sealed = here.seal(Sealed(to="+14155550123", code="123456"), seal_aad("otp_a", 1))

    kid = await codekeys.rotate(store, here, clock.now())
    assert here.current.kid.hex() == kid
    await codekeys.load(store, there)  # another process, at its next refresh
    assert there.current.kid.hex() == kid
    new_digest = there.code_digest("otp_b", "654321")
    assert new_digest[:4].hex() == kid
    assert here.code_matches("otp_b", "654321", new_digest)
    assert there.code_matches("otp_a", "123456", old_digest)
    assert there.open(old_sealed, seal_aad("otp_a", 1)).code == "123456"

    listed = await codekeys.listing(store, here, MAX_TTL)
    assert [(e["kid"], e["current"], e["source"]) for e in listed] == [
        (here.root_key.kid.hex(), False, "secret key"), (kid, True, "rotated")]
    assert listed[0]["retirable_from"] is not None


async def test_a_key_retires_only_once_nothing_it_made_can_be_alive(
    backend: Backend, clock: FrozenClock
) -> None:
    store, keyring = backend.store, Keyring.from_secret(MASTER)
    await codekeys.load(store, keyring)
    root = keyring.root_key.kid.hex()
    old_digest = keyring.code_digest("otp_a", "123456")
    old_sealed = keyring.seal(Sealed(to="x@example.com", code="1"), seal_aad("otp_a", 1))
    kid = await codekeys.rotate(store, keyring, clock.now())

    with pytest.raises(InvalidRequest, match="current"):
        await codekeys.retire(store, keyring, kid, clock.now(), MAX_TTL)
    with pytest.raises(InvalidRequest, match="may still be alive"):
        await codekeys.retire(store, keyring, root, clock.now() + MAX_TTL, MAX_TTL)
    with pytest.raises(NotFound):
        await codekeys.retire(store, keyring, "00000000", clock.now(), MAX_TTL)

    clock.advance(codekeys.hold(MAX_TTL))
    await codekeys.retire(store, keyring, root, clock.now(), MAX_TTL)
    assert [k.kid.hex() for k in keyring.code_keys] == [kid]
    assert not keyring.code_matches("otp_a", "123456", old_digest)
    with pytest.raises(SealError):
        keyring.open(old_sealed, seal_aad("otp_a", 1))
    with pytest.raises(NotFound):
        await codekeys.retire(store, keyring, root, clock.now(), MAX_TTL)
    fresh = Keyring.from_secret(MASTER)
    await codekeys.load(store, fresh)
    assert [k.kid.hex() for k in fresh.code_keys] == [kid]
    # the key check of the master secret is untouched by rotations
    assert await store.keep_key_check(fresh.check) == fresh.check


async def test_concurrent_rotations_each_add_one_key(
    backend: Backend, clock: FrozenClock
) -> None:
    store = backend.store
    rings = [Keyring.from_secret(MASTER) for _ in range(4)]
    kids = await asyncio.gather(*(codekeys.rotate(store, r, clock.now()) for r in rings))
    assert len(set(kids)) == 4
    final = Keyring.from_secret(MASTER)
    await codekeys.load(store, final)
    assert {k.kid.hex() for k in final.code_keys} == {*kids, final.root_key.kid.hex()}
