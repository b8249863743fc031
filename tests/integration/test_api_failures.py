"""The failure policy over HTTP: what counts as a failure, the delay, the lock and the unlock,
the send cap across purposes, code lengths and repeated right answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.events import EventType
from tests.integration.conftest import (
    PHONE,
    Client,
    assert_problem,
    code_in,
    request_code,
    runtime_of,
    wait_for_messages,
    without_token,
)

CODE = "482913"
WRONG = "000000"
VICTIM = "+14155550199"


def fixed_codes(client: Client, code: str = CODE) -> None:
    """Every code the app makes from now on is ``code``."""
    runtime_of(client).service.codegen = lambda length: code[:length].rjust(length, "0")


def event_types(client: Client) -> list[str]:
    bus = runtime_of(client).backend.bus
    assert isinstance(bus, MemoryBus)
    return [e.type for e in bus.log]


async def verify(client: Client, to: str, code: str, purpose: str | None = None) -> Any:
    body = {"to": to, "code": code, **({"purpose": purpose} if purpose else {})}
    response = await client.post("/v1/verify", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def fail(client: Client, clock: FrozenClock, to: str, times: int) -> None:
    """``times`` wrong answers to live codes of ``to``, asking for codes as the limits allow
    (waiting out every delay on the frozen clock)."""
    left, first = 0, True
    while times:
        if left == 0:
            if not first:
                clock.advance(30)  # past the resend cooldown
            first = False
            response = await client.post("/v1/otp", json={"to": to})
            if response.status_code == 429:
                clock.advance(int(response.headers["retry-after"]))
                continue
            assert response.status_code == 202, response.text
            left = response.json()["attempts_left"]
        await verify(client, to, WRONG)
        left -= 1
        times -= 1


# -- item 1: anyone could lock a victim out ---------------------------------------------------


async def test_answers_for_purposes_with_no_code_never_lock_the_recipient_out(
    client: Client,
) -> None:
    for i in range(1, 11):  # the audit's reproduction: ten purposes, no live code
        await verify(client, VICTIM, WRONG, purpose=f"p{i}")
    response = await client.post("/v1/otp", json={"to": VICTIM})
    assert response.status_code == 202, response.text
    assert response.json()["attempts_left"] == 5


async def test_a_flood_of_answers_with_no_live_code_leaves_the_victims_code_whole(
    client: Client,
) -> None:
    fixed_codes(client)
    victim = await request_code(client, VICTIM, purpose="login")
    for i in range(300):
        await verify(client, VICTIM, WRONG, purpose=f"p{i % 40}")
    answer = await client.post(f"/v1/otp/{victim['id']}/verify", json={"code": CODE})
    assert without_token(answer.json()) == {"id": victim["id"], "valid": True,
                                            "status": "approved"}
    assert EventType.LOCKED not in event_types(client)
    assert EventType.VERIFICATION_FAILED not in event_types(client)


# -- item 2: consecutive failures, a growing delay, a lock ------------------------------------


async def test_failures_across_codes_are_not_forgotten_after_an_hour(
    client: Client, clock: FrozenClock,
) -> None:
    fixed_codes(client)
    await fail(client, clock, PHONE, 9)
    clock.advance(2 * 3600)  # the old hourly window would have forgotten them
    await fail(client, clock, PHONE, 1)
    clock.advance(30)
    refused = await client.post("/v1/otp", json={"to": PHONE})
    assert_problem(refused, 429, "rate-limited")
    assert refused.json()["rule"] == "failure-delay"
    assert refused.headers["retry-after"] == "30"  # 60 s after the last failure


@pytest.mark.parametrize(("streak", "delay"), [(10, 60), (11, 120), (12, 240), (15, 1920),
                                               (16, 3600), (40, 3600)])
async def test_from_ten_failures_on_each_new_code_waits_longer(
    client: Client, clock: FrozenClock, streak: int, delay: int,
) -> None:
    fixed_codes(client)
    await fail(client, clock, PHONE, streak)
    refused = await client.post("/v1/otp", json={"to": PHONE, "purpose": "other"})
    assert refused.status_code == 429
    assert (refused.json()["rule"], refused.headers["retry-after"]) == (
        "failure-delay", str(delay))
    clock.advance(delay)
    assert (await client.post("/v1/otp", json={"to": PHONE, "purpose": "other"})
            ).status_code == 202


async def test_a_right_answer_resets_the_consecutive_failures(
    client: Client, clock: FrozenClock,
) -> None:
    fixed_codes(client)
    await fail(client, clock, PHONE, 12)
    clock.advance(240)
    otp = await request_code(client)
    assert (await verify(client, PHONE, CODE))["valid"] is True
    again = await request_code(client, purpose="next")  # no delay any more
    assert again["attempts_left"] == 5
    assert otp["id"] != again["id"]


async def test_a_hundred_consecutive_failures_lock_the_recipient_for_a_day(
    client: Client, clock: FrozenClock,
) -> None:
    fixed_codes(client)
    await fail(client, clock, PHONE, 100)
    assert EventType.LOCKED in event_types(client)
    refused = await client.post("/v1/otp", json={"to": PHONE, "purpose": "any"})
    assert_problem(refused, 429, "rate-limited")
    assert (refused.json()["rule"], refused.headers["retry-after"]) == (
        "recipient-lock", "86400")
    # While locked, answers count nothing and read as they would without a lock: like the
    # dead code's for its purpose, like a fresh code's for any other.
    dead = {"valid": False, "status": "max_attempts_reached", "attempts_left": 0}
    assert await verify(client, PHONE, CODE) == dead
    for _ in range(3):
        assert await verify(client, PHONE, CODE, "other") == await verify(
            client, VICTIM, WRONG, "other")
    clock.advance(86400)
    fresh = await request_code(client)
    assert fresh["attempts_left"] == 5
    assert (await verify(client, PHONE, CODE))["valid"] is True


async def test_an_admin_unlock_ends_the_lock_at_once(
    client: Client, clock: FrozenClock,
) -> None:
    fixed_codes(client)
    await fail(client, clock, PHONE, 100)
    unlocked = await client.post("/v1/admin/unlock", json={"to": PHONE})
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json() == {"to": "+1415•••0123", "was_locked": True, "failures": 100}
    fresh = await request_code(client)
    assert fresh["attempts_left"] == 5
    again = await client.post("/v1/admin/unlock", json={"to": PHONE})
    assert again.json() == {"to": "+1415•••0123", "was_locked": False, "failures": 0}


async def test_unlocking_an_invalid_recipient_is_422(client: Client) -> None:
    assert_problem(await client.post("/v1/admin/unlock", json={"to": "12"}), 422,
                   "invalid-recipient", field="to")
    assert_problem(await client.post("/v1/admin/unlock", json={"to": PHONE, "x": 1}), 422,
                   "invalid-request")


# -- item 3: send flooding through purpose -------------------------------------------------


async def test_a_recipient_gets_at_most_ten_codes_an_hour_whatever_the_purpose(
    client: Client, clock: FrozenClock,
) -> None:
    answers = [await client.post("/v1/otp", json={"to": PHONE, "purpose": f"p{i}"})
               for i in range(1, 21)]
    assert [a.status_code for a in answers] == [202] * 10 + [429] * 10
    assert_problem(answers[10], 429, "rate-limited")
    assert answers[10].json()["rule"] == "recipient-send-limit"
    assert answers[10].headers["retry-after"] == "3600"
    assert len(await wait_for_messages(client, PHONE, 10)) == 10
    clock.advance(3600)
    assert (await client.post("/v1/otp", json={"to": PHONE, "purpose": "p11"})
            ).status_code == 202


# -- item 7: short codes only when the operator allows them ------------------------------------


@pytest.mark.parametrize("length", [4, 5])
async def test_codes_shorter_than_six_digits_are_refused_by_default(
    client: Client, length: int,
) -> None:
    response = await client.post("/v1/otp", json={"to": PHONE, "code_length": length})
    assert_problem(response, 422, "invalid-request", field="code_length")
    assert "between 6 and 10" in response.json()["detail"]


async def test_an_operator_may_allow_four_digit_codes(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(policy={"min_code_length": 4}) as client:
        otp = await request_code(client, code_length=4)
        [message] = await wait_for_messages(client, PHONE)
        assert message["otp_id"] == otp["id"]
        assert len(code_in(message["body"], 4)) == 4
        assert_problem(await client.post("/v1/otp", json={"to": PHONE, "code_length": 3}),
                       422, "invalid-request", field="code_length")


# -- item 8: a repeated right code is not a failure --------------------------------------------


async def test_a_right_code_repeated_after_approval_answers_approved_and_counts_nothing(
    client: Client, clock: FrozenClock,
) -> None:
    fixed_codes(client)
    otp = await request_code(client, purpose="login")
    assert (await verify(client, PHONE, CODE, "login"))["valid"] is True
    for _ in range(12):  # double submits and client retries
        again = await verify(client, PHONE, CODE, "login")
        assert again == {"id": otp["id"], "valid": False, "status": "approved"}
        by_id = await client.post(f"/v1/otp/{otp['id']}/verify", json={"code": CODE})
        assert by_id.json() == {"id": otp["id"], "valid": False, "status": "approved"}
    clock.advance(30)
    fresh = await request_code(client, purpose="login")
    assert fresh["attempts_left"] == 5
    assert EventType.VERIFICATION_FAILED not in event_types(client)


async def test_the_old_right_code_after_a_new_request_does_not_eat_the_new_codes_attempts(
    client: Client, clock: FrozenClock,
) -> None:
    fixed_codes(client)
    first = await request_code(client, purpose="login")
    assert (await verify(client, PHONE, CODE, "login"))["valid"] is True
    fixed_codes(client, "771234")
    second = await request_code(client, purpose="login")
    late = await verify(client, PHONE, CODE, "login")  # a retry of the first answer
    assert late == {"id": first["id"], "valid": False, "status": "approved"}
    wrong = await verify(client, PHONE, WRONG, "login")
    assert wrong["attempts_left"] == 4
    assert without_token(await verify(client, PHONE, "771234", "login")) == {
        "id": second["id"], "valid": True, "status": "approved"}
