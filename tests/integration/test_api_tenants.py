"""Tenants: a key sees its own tenant's OTPs, recipients, limits and idempotency keys only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from otpgate import apikeys
from otpgate.core import recipients
from otpgate.core.lifecycle import Change
from otpgate.core.otp import RecipientState, Status
from otpgate.errors import NotFound
from tests.integration.conftest import (
    CONSOLE,
    PHONE,
    START,
    Client,
    assert_problem,
    runtime_of,
    without_token,
)

CODE = "482913"


@pytest.fixture
async def keyed(make_client: Callable[..., Any]) -> AsyncIterator[Client]:
    async with make_client(dev=False, drivers=CONSOLE) as c:
        runtime_of(c).service.codegen = lambda n: CODE[:n]
        yield c


async def key_of(client: Client, tenant: str, *, admin: bool = False) -> dict[str, str]:
    _, plaintext = await apikeys.create(runtime_of(client).backend.store, f"{tenant}-app",
                                        START, tenant=tenant, admin=admin)
    return {"authorization": f"Bearer {plaintext}"}


async def test_another_tenants_otp_id_is_404_on_every_route(keyed: Client) -> None:
    acme, other = await key_of(keyed, "acme"), await key_of(keyed, "globex")
    otp_id = (await keyed.post("/v1/otp", json={"to": PHONE}, headers=acme)).json()["id"]
    for response in (await keyed.get(f"/v1/otp/{otp_id}", headers=other),
                     await keyed.delete(f"/v1/otp/{otp_id}", headers=other),
                     await keyed.post(f"/v1/otp/{otp_id}/verify", json={"code": CODE},
                                      headers=other)):
        assert_problem(response, 404, "not-found")
    # Nothing the other tenant did touched it: it is still pending and verifies.
    assert (await keyed.get(f"/v1/otp/{otp_id}", headers=acme)).json()["status"] == "pending"
    approved = await keyed.post(f"/v1/otp/{otp_id}/verify", json={"code": CODE},
                                headers=acme)
    assert without_token(approved.json()) == {"id": otp_id, "valid": True, "status": "approved"}


async def test_verifying_by_recipient_sees_only_the_keys_tenant(keyed: Client) -> None:
    acme, other = await key_of(keyed, "acme"), await key_of(keyed, "globex")
    mine = (await keyed.post("/v1/otp", json={"to": PHONE}, headers=acme)).json()
    theirs = await keyed.post("/v1/verify", json={"to": PHONE, "code": CODE}, headers=other)
    assert theirs.json() == {"valid": False, "status": "pending", "attempts_left": 4}
    answer = await keyed.post("/v1/verify", json={"to": PHONE, "code": CODE}, headers=acme)
    assert without_token(answer.json()) == {"id": mine["id"], "valid": True, "status": "approved"}


async def test_one_recipient_has_limits_and_codes_of_its_own_in_each_tenant(
    keyed: Client,
) -> None:
    acme, other = await key_of(keyed, "acme"), await key_of(keyed, "globex")
    for i in range(10):
        assert (await keyed.post("/v1/otp", json={"to": PHONE, "purpose": f"p{i}"},
                                 headers=acme)).status_code == 202
    assert (await keyed.post("/v1/otp", json={"to": PHONE, "purpose": "p10"},
                             headers=acme)).status_code == 429
    a = await keyed.post("/v1/otp", json={"to": PHONE, "purpose": "p0"}, headers=other)
    assert a.status_code == 202  # neither coalesced with acme's code nor over acme's cap
    assert a.json()["send_count"] == 1


async def test_a_lock_in_one_tenant_is_not_a_lock_in_another(keyed: Client) -> None:
    acme, other = await key_of(keyed, "acme"), await key_of(keyed, "globex")
    runtime = runtime_of(keyed)
    key = recipients.parse(PHONE).key(runtime.keyring.digest_key, "acme")

    def lock(state: RecipientState | None) -> Change[None]:
        locked = state or RecipientState.empty(key)
        locked.locked_until, locked.streak, locked.last_failure_at = START + 86400, 100, START
        return Change(None, locked)

    await runtime.backend.store.transact(key, lock)
    refused = await keyed.post("/v1/otp", json={"to": PHONE}, headers=acme)
    assert refused.json()["rule"] == "recipient-lock"
    assert (await keyed.post("/v1/otp", json={"to": PHONE}, headers=other)).status_code == 202


async def test_idempotency_keys_are_scoped_by_tenant(keyed: Client) -> None:
    acme, other = await key_of(keyed, "acme"), await key_of(keyed, "globex")
    a = await keyed.post("/v1/otp", json={"to": PHONE},
                         headers={**acme, "idempotency-key": "k"})
    b = await keyed.post("/v1/otp", json={"to": PHONE, "purpose": "x"},
                         headers={**other, "idempotency-key": "k"})
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


async def test_unlock_needs_an_admin_key_and_unlocks_in_its_own_tenant(keyed: Client) -> None:
    plain, admin = await key_of(keyed, "acme"), await key_of(keyed, "acme", admin=True)
    assert_problem(await keyed.post("/v1/admin/unlock", json={"to": PHONE}, headers=plain),
                   403, "forbidden")
    assert_problem(await keyed.post("/v1/admin/unlock", json={"to": PHONE}), 401,
                   "unauthorized")
    ok = await keyed.post("/v1/admin/unlock", json={"to": PHONE}, headers=admin)
    assert ok.status_code == 200
    assert ok.json()["was_locked"] is False


async def test_keyless_dev_mode_acts_as_the_default_tenant(client: Client) -> None:
    otp_id = (await client.post("/v1/otp", json={"to": PHONE})).json()["id"]
    service = runtime_of(client).service
    otp, _ = await service.status(otp_id)
    assert (otp.tenant, otp.status) == ("default", Status.PENDING)
    with pytest.raises(NotFound):
        await service.status(otp_id, tenant="acme")


async def test_keys_are_made_for_the_default_tenant_unless_told(keyed: Client) -> None:
    store = runtime_of(keyed).backend.store
    key, _ = await apikeys.create(store, "plain", START)
    other, _ = await apikeys.create(store, "acme", START, tenant="acme", admin=True)
    assert (key.tenant, key.admin) == ("default", False)
    stored = await store.get_api_key(other.id)
    assert stored is not None and (stored.tenant, stored.admin) == ("acme", True)
