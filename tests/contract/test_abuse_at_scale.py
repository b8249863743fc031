"""The abuse rules under load, driven in-process on real backends: SMS pumping to one
number range (enforced and watched), and brute force on one recipient from many
addresses, keys and purposes."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from otpgate.abuse.guard import Guard, Requester
from otpgate.abuse.settings import AbuseSettings
from otpgate.audit import LOCKS, VERIFY_FAILURES, WOULD_BLOCK, Audit
from otpgate.backends import Backend
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring
from otpgate.errors import PumpingBlocked, RateLimited
from otpgate.events import CloudEvent, EventType, Filter
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService
from tests.contract.conftest import Recorder, open_named, subscribe

KEY = Keyring.from_secret(b"abuse-scale-secret-0123456789abc")
CODE = "123456"
ROUTES = {"sms": ("capture://",)}


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def scaled(request: pytest.FixtureRequest, tmp_path: Path,
                 clock: FrozenClock) -> AsyncIterator[Backend]:
    opened = await open_named(request.param, tmp_path / "data" / "otpgate.db", clock)
    try:
        yield opened
    finally:
        await opened.close()


def gateway(backend: Backend, clock: FrozenClock, **abuse: Any) -> OtpService:
    audit = Audit()

    async def publish(batch: list[CloudEvent]) -> None:
        await backend.store.transact("abuse.events",
                                     lambda _: Change(result=None, events=batch))

    guard = Guard(msgspec.convert(abuse, AbuseSettings), backend.limiter, KEY.digest_key,
                  audit, publish)
    return OtpService(backend.store, clock, KEY, Policy(), StaticRouter(ROUTES),
                      audit=audit, guard=guard, codegen=lambda n: CODE[:n])


async def pump(service: OtpService, count: int) -> tuple[int, int]:
    """Requests to ``count`` sequential numbers of one prefix, none verified: (accepted,
    refused for pumping)."""
    accepted = refused = 0
    rules: set[tuple[str | None, bool]] = set()
    for i in range(count):
        try:
            await service.request(OtpRequest(to=f"+1415555{i:04d}"))
            accepted += 1
        except PumpingBlocked as exc:
            rules.add((exc.rule, exc.retry_after > 11 * 3600))
            refused += 1
    assert rules <= {("pumping", True)}
    return accepted, refused


async def honest(service: OtpService, prefixes: range, per_prefix: int) -> int:
    """Requests to numbers of other prefixes, each verified with its code: how many
    went through."""
    flowed = 0
    for prefix in prefixes:
        for i in range(per_prefix):
            to = f"+1212555{prefix}{i:03d}"
            await service.request(OtpRequest(to=to))
            answer = await service.verify_recipient(to, None, CODE)
            flowed += answer.status is Status.APPROVED
    return flowed


async def test_pumping_one_prefix_is_blocked_after_the_threshold_while_others_flow(
    scaled: Backend, clock: FrozenClock
) -> None:
    service = gateway(scaled, clock)
    seen = Recorder()
    await subscribe(scaled.bus, "rules", Filter.of(type=EventType.RULE_BLOCKED.value), seen)
    accepted, refused = await pump(service, 1000)
    assert (accepted, refused) == (19, 981)  # the 20th send would make 20 with none verified
    assert await honest(service, range(10), 30) == 300
    await scaled.bus.pump()
    [why] = seen.seen
    assert why.data["rule"] == "pumping" and why.data["verified"] == 0
    assert why.data["sends"] == 20
    assert why.data["reason"].startswith("20 codes sent to this prefix in the last 1 h, 0")
    assert "5550" not in why.subject and why.subject.startswith("US-")


async def test_pumping_in_monitor_mode_lets_all_through_and_records_would_blocks(
    scaled: Backend, clock: FrozenClock
) -> None:
    service = gateway(scaled, clock, pumping_mode="monitor", rate_limits="prefix=off")
    accepted, refused = await pump(service, 1000)
    assert (accepted, refused) == (1000, 0)
    assert service.audit.value(WOULD_BLOCK, rule="pumping") == 981
    assert await honest(service, range(3), 20) == 60


GUESSES = {"memory": 100_000, "sqlite": 100_000,
           "redis": int(os.environ.get("OTPGATE_TEST_REDIS_GUESSES", "15000"))}
"""Guesses per backend. Redis answers one in about a millisecond of this process's time
(the client's), so ``make test`` sends it 15,000 of them — the lock comes after the
first 10,000 (20 codes of 5), and every later guess is the same read — and
``OTPGATE_TEST_REDIS_GUESSES=100000`` sends all."""
CONCURRENCY = 64


async def test_a_hundred_thousand_guesses_from_everywhere_check_a_few_and_lock(
    scaled: Backend, clock: FrozenClock, request: pytest.FixtureRequest
) -> None:
    """Many addresses, many keys of one tenant, many purposes: each code takes at most
    its 5 wrong answers, the recipient locks at 100, and a new code does not unlock it."""
    policy = Policy()
    service = gateway(scaled, clock)
    to = "+14155550100"
    purposes = itertools.cycle([f"p{n}" for n in range(7)])
    addresses = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count())
    wrong = (f"{n:06d}" for n in itertools.count(200_000))
    codes_made: list[str] = []
    made, guessed = 0, 0

    async def guess(purpose: str) -> None:
        who = Requester(f"key{made % 40}", ip=next(addresses))
        try:
            await service.verify_recipient(to, purpose, next(wrong), who=who)
        except RateLimited:
            pytest.fail("no address guesses twice, so none is limited")

    total = GUESSES[request.node.callspec.params["scaled"]]
    while guessed < total:
        purpose = next(purposes)
        try:
            got = await service.request(OtpRequest(to=to, purpose=purpose),
                                        who=Requester(f"key{made % 40}", ip=next(addresses)))
            codes_made.append(got.otp.id)
            made += 1
        except RateLimited as exc:
            if exc.rule == "recipient-lock":
                pass
            else:
                clock.advance(exc.retry_after)
                continue
        locked = service.audit.total(LOCKS) > 0
        batch = min(2_000 if locked else 500, total - guessed)
        for start in range(0, batch, CONCURRENCY):
            await asyncio.gather(*(guess(purpose) for _ in range(
                min(CONCURRENCY, batch - start))))
        guessed += batch
        clock.advance(30)

    assert service.audit.total(VERIFY_FAILURES) == policy.lock_after
    assert service.audit.total(LOCKS) == 1
    for otp_id in codes_made:
        otp = await scaled.store.get(otp_id)
        assert otp is not None and otp.failed_attempts <= policy.max_attempts
    with pytest.raises(RateLimited) as refused:
        await service.request(OtpRequest(to=to, purpose="fresh"))
    assert refused.value.rule == "recipient-lock"
    for purpose in (f"p{n}" for n in range(7)):  # the right code tells nothing while locked
        answer = await service.verify_recipient(to, purpose, CODE)
        assert not answer.valid
