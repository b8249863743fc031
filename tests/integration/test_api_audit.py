"""Security events over HTTP: each is counted, and logged with ids and masked recipients —
never a code, a full number or a key's secret."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from otpgate import apikeys, audit
from otpgate.clock import FrozenClock
from otpgate.core.policy import Policy
from tests.integration.conftest import CONSOLE, PHONE, START, Client, runtime_of

CODE = "482913"
WRONG = "000000"


@pytest.fixture
async def keyed(make_client: Callable[..., Any]) -> AsyncIterator[Client]:
    async with make_client(dev=False, drivers=CONSOLE,
                           policy=Policy(lock_after=3, delay_after=3)) as c:
        runtime_of(c).service.codegen = lambda n: CODE[:n]
        yield c


def counted(client: Client, name: str, **labels: str) -> int:
    return runtime_of(client).audit.value(name, **labels)


async def test_security_events_are_counted_and_logged_without_secrets(
    keyed: Client, clock: FrozenClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="otpgate.audit")
    store = runtime_of(keyed).backend.store
    key, plaintext = await apikeys.create(store, "shop", START, tenant="acme")
    admin_key, admin = await apikeys.create(store, "ops", START, tenant="acme", admin=True)
    auth = {"authorization": f"Bearer {plaintext}"}

    otp = (await keyed.post("/v1/otp", json={"to": PHONE}, headers=auth)).json()
    for _ in range(3):
        await keyed.post(f"/v1/otp/{otp['id']}/verify", json={"code": WRONG}, headers=auth)
    await keyed.post("/v1/verify", json={"to": "+14155550199", "code": WRONG}, headers=auth)
    refused = await keyed.post("/v1/otp", json={"to": PHONE}, headers=auth)
    await keyed.post("/v1/admin/unlock", json={"to": PHONE},
                     headers={"authorization": f"Bearer {admin}"})
    await keyed.post("/v1/otp", json={"to": PHONE}, headers={"authorization": "Bearer nope"})
    await keyed.post("/v1/otp", json={"to": PHONE})
    forged = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
    await keyed.post("/v1/otp", json={"to": PHONE}, headers={"authorization": f"Bearer {forged}"})

    assert refused.json()["rule"] == "recipient-lock"
    assert counted(keyed, audit.VERIFY_FAILURES, tenant="acme") == 3
    assert counted(keyed, audit.VERIFY_UNCOUNTED, tenant="acme", reason="no-code") == 1
    assert counted(keyed, audit.LOCKS, tenant="acme") == 1
    assert counted(keyed, audit.UNLOCKS, tenant="acme") == 1
    assert counted(keyed, audit.RULE_BLOCKS, rule="recipient-lock") == 1
    assert counted(keyed, audit.KEY_USES, key_id=key.id) == 6
    assert counted(keyed, audit.KEY_USES, key_id=admin_key.id) == 1
    assert counted(keyed, audit.KEY_FAILURES, reason="malformed") == 1
    assert counted(keyed, audit.KEY_FAILURES, reason="missing") == 1
    assert counted(keyed, audit.KEY_FAILURES, reason="refused") == 1

    lines = [r.getMessage() for r in caplog.records if r.name == "otpgate.audit"]
    text = "\n".join(lines)
    assert f"wrong answer for {otp['id']}" in text
    assert "recipient +1415•••0123 (tenant acme) locked until" in text
    assert "unlocked by api key" in text
    assert f"api key refused (refused): key id {key.id}" in text
    for secret in (CODE, PHONE, PHONE[1:], plaintext, plaintext.removeprefix(f"og_{key.id}_"),
                   admin):
        assert secret not in text


async def test_every_counter_is_listed_even_before_it_counts(client: Client) -> None:
    counters = runtime_of(client).audit.counters()
    assert set(counters) == set(audit.COUNTERS)
    assert all(name.startswith("otpgate_") and name.endswith("_total") for name in counters)
