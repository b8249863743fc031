"""What an outsider can learn about a recipient: nothing from /v1/verify's answers, and
nothing from which limit refused a request but the problem's ``rule``."""

from __future__ import annotations

from typing import Any

from otpgate.clock import FrozenClock
from otpgate.core import recipients
from otpgate.core.lifecycle import Change
from otpgate.core.otp import RecipientState
from tests.integration.conftest import PHONE, Client, request_code, runtime_of

UNKNOWN = "+14155550199"


async def answers(client: Client, to: str, times: int) -> list[Any]:
    found = []
    for _ in range(times):
        response = await client.post("/v1/verify", json={"to": to, "code": "000000"})
        assert response.status_code == 200
        found.append(response.json())
    return found


async def test_by_recipient_a_live_code_and_no_code_answer_alike_until_and_after_it_dies(
    client: Client,
) -> None:
    runtime_of(client).service.codegen = lambda n: "482913"[:n]
    await request_code(client)
    known = await answers(client, PHONE, 8)
    unknown = await answers(client, UNKNOWN, 8)
    assert known == unknown
    assert [a.get("attempts_left") for a in known] == [4, 3, 2, 1, 0, 0, 0, 0]
    assert all("id" not in a for a in known + unknown), "no wrong answer names an OTP"


async def test_a_recipient_whose_code_expired_answers_like_one_never_asked_for(
    client: Client, clock: FrozenClock,
) -> None:
    await request_code(client)
    clock.advance(600)
    assert await answers(client, PHONE, 3) == await answers(client, UNKNOWN, 3)


async def test_a_lock_and_a_send_limit_are_told_apart_only_by_rule_and_retry_after(
    client: Client,
) -> None:
    for i in range(10):
        await request_code(client, UNKNOWN, purpose=f"p{i}")
    capped = await client.post("/v1/otp", json={"to": UNKNOWN, "purpose": "p10"})
    runtime = runtime_of(client)
    key = recipients.parse(PHONE).key(runtime.keyring.digest_key)

    def lock(state: RecipientState | None) -> Change[None]:
        locked, now = state or RecipientState.empty(key), runtime.clock.now()
        locked.locked_until, locked.streak, locked.last_failure_at = now + 86400, 100, now
        return Change(None, locked)

    await runtime.backend.store.transact(key, lock)
    locked = await client.post("/v1/otp", json={"to": PHONE})
    assert (capped.status_code, locked.status_code) == (429, 429)
    one, other = capped.json(), locked.json()
    assert (one.pop("rule"), other.pop("rule")) == ("recipient-send-limit", "recipient-lock")
    assert (one.pop("retry_after"), other.pop("retry_after")) == (3600, 86400)
    assert one == other
    assert capped.headers.keys() == locked.headers.keys()


async def test_the_openapi_document_says_a_verdict_may_come_without_an_id(
    client: Client,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert "id" in schemas["VerifyOut"]["properties"]
    assert "id" not in schemas["VerifyOut"].get("required", [])
