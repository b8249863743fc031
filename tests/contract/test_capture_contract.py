"""The ``CaptureSink`` contract beyond one page, run against every backend."""

from __future__ import annotations

from otpgate.backends import Backend
from otpgate.capture.base import CapturedMessage
from otpgate.clock import FrozenClock

OTP = "otp_" + "c" * 22
ALICE, BOB = "+14155550123", "+14155550999"


def message(n: int, to: str, clock: FrozenClock) -> CapturedMessage:
    return CapturedMessage(id=f"m{n:03d}", otp_id=OTP, to=to, channel="sms",
                           body=f"code {n}", sent_at=clock.now() + n)


async def test_pages_named_by_the_last_id_of_the_previous_one_cover_everything_once(
    backend: Backend, clock: FrozenClock
) -> None:
    sink = backend.capture
    for n in range(25):
        assert await sink.add(message(n, ALICE if n % 2 else BOB, clock), f"key-{n}")

    pages, before = [], None
    while page := await sink.list(limit=10, before=before):
        pages.append([m.id for m in page])
        before = page[-1].id

    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == [f"m{n:03d}" for n in reversed(range(25))]


async def test_paging_one_recipient_skips_the_others_and_an_unknown_id_gives_nothing(
    backend: Backend, clock: FrozenClock
) -> None:
    sink = backend.capture
    for n in range(6):
        await sink.add(message(n, ALICE if n % 2 else BOB, clock), f"key-{n}")

    first = await sink.list(ALICE, limit=2)
    rest = await sink.list(ALICE, limit=2, before=first[-1].id)
    # Any message may name the page's end, one of another recipient's too.
    after_bob = await sink.list(ALICE, before="m002")

    assert [m.id for m in first] == ["m005", "m003"]
    assert [m.id for m in rest] == ["m001"]
    assert [m.id for m in after_bob] == ["m001"]
    assert await sink.list(before="no-such-message") == []
