"""The limiter's cells (``otpgate.ratelimit.cells``), one behaviour on every backend: the
Python ``plan`` (memory, SQLite, DynamoDB) and the Redis script alike."""

from __future__ import annotations

import asyncio

from otpgate.backends import Backend
from otpgate.clock import FrozenClock
from otpgate.ratelimit.cells import Count, Flag, Peek, Put, Rate, Spend


async def test_a_rate_allows_its_limit_then_refuses_with_the_wait(
    backend: Backend, clock: FrozenClock
) -> None:
    limiter, now = backend.limiter, clock.now()
    rule = Rate("t:rate:a", limit=3, window=60)
    for _ in range(3):
        assert (await limiter.apply([rule], now))[0].allowed
    refused = (await limiter.apply([rule], now))[0]
    assert not refused.allowed and 19.9 < refused.retry_after <= 20.0
    later = (await limiter.apply([rule], now + 20))[0]
    assert later.allowed


async def test_an_enforced_refusal_writes_nothing_of_the_batch(
    backend: Backend, clock: FrozenClock
) -> None:
    limiter, now = backend.limiter, clock.now()
    tight, loose = Rate("t:rate:tight", 1, 60), Rate("t:rate:loose", 2, 60)
    counter = Count("t:count:c", ttl=3600)
    assert [o.allowed for o in await limiter.apply([tight, loose, counter], now)] == [
        True, True, True]
    refused = await limiter.apply([tight, loose, counter], now)
    assert [o.allowed for o in refused] == [False, True, True]
    # the loose rule's second slot and the counter were not spent
    assert (await limiter.apply([loose], now))[0].allowed
    assert (await limiter.apply([Peek("t:count:c")], now))[0].value == 1


async def test_a_monitored_refusal_lets_the_batch_through_without_spending_its_own(
    backend: Backend, clock: FrozenClock
) -> None:
    limiter, now = backend.limiter, clock.now()
    watched = Rate("t:rate:watch", 1, 60, enforce=False)
    other = Count("t:count:w", ttl=60)
    assert (await limiter.apply([watched, other], now))[0].allowed
    outcomes = await limiter.apply([watched, other], now)
    assert not outcomes[0].allowed and outcomes[1].value == 2
    assert 59 < outcomes[0].retry_after <= 60


async def test_counts_and_peeks_and_their_expiry(backend: Backend, clock: FrozenClock) -> None:
    limiter, now = backend.limiter, clock.now()
    for expected in (1, 2, 3):
        assert (await limiter.apply([Count("t:n", ttl=10)], now))[0].value == expected
    assert (await limiter.apply([Peek("t:n")], now + 9))[0].value == 3
    assert (await limiter.apply([Peek("t:n")], now + 11))[0].value == 0
    assert (await limiter.apply([Peek("t:never")], now))[0].value == 0


async def test_a_spend_stops_at_its_cap(backend: Backend, clock: FrozenClock) -> None:
    limiter, now = backend.limiter, clock.now()
    budget = Spend("t:spend", cost=0.04, cap=0.1, ttl=86400)
    assert [(await limiter.apply([budget], now))[0].allowed for _ in range(3)] == [
        True, True, False]
    assert abs((await limiter.apply([Peek("t:spend")], now))[0].value - 0.08) < 1e-9
    watched = Spend("t:spend", cost=0.04, cap=0.1, ttl=86400, enforce=False)
    over = (await limiter.apply([watched], now))[0]
    assert not over.allowed and abs(over.value - 0.12) < 1e-9


async def test_a_flag_refuses_until_its_time(backend: Backend, clock: FrozenClock) -> None:
    limiter, now = backend.limiter, clock.now()
    assert (await limiter.apply([Flag("t:block")], now))[0].allowed
    await limiter.apply([Put("t:block", now + 100, ttl=100)], now)
    blocked = (await limiter.apply([Flag("t:block"), Count("t:after", 60)], now + 1))
    assert not blocked[0].allowed and 98.9 < blocked[0].retry_after <= 99.0
    assert (await limiter.apply([Peek("t:after")], now))[0].value == 0
    assert (await limiter.apply([Flag("t:block")], now + 101))[0].allowed


async def test_concurrent_batches_never_pass_a_limit(
    backend: Backend, clock: FrozenClock
) -> None:
    limiter, now = backend.limiter, clock.now()
    rule = Rate("t:rate:race", limit=5, window=60)
    outcomes = await asyncio.gather(*(limiter.apply([rule], now) for _ in range(20)))
    assert sum(o[0].allowed for o in outcomes) == 5


async def test_a_count_takes_back(backend: Backend, clock: FrozenClock) -> None:
    limiter, now = backend.limiter, clock.now()
    await limiter.apply([Count("t:back", 60), Count("t:back", 60)], now)
    assert (await limiter.apply([Count("t:back", 60, by=-1.0)], now))[0].value == 1
