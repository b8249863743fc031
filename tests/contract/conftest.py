"""Fixtures of the contract suites: every test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from otpgate import events
from otpgate.backends import open_memory, open_sqlite
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Otp, RecipientState, Status
from otpgate.events import CloudEvent, EventType
from otpgate.registry import Backend

BACKENDS = ("memory", "sqlite")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def open_named(name: str, path: Path, clock: FrozenClock) -> Backend:
    if name == "memory":
        return await open_memory("memory://", clock, poll_interval=0.01)
    return await open_sqlite(sqlite_url(path), clock, poll_interval=0.01)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Backend]:
    opened = await open_named(request.param, tmp_path / "data" / "otpgate.db", clock)
    try:
        yield opened
    finally:
        await opened.close()


def make_otp(otp_id: str, recipient: str, now: float, *, ttl: float = 300,
             status: Status = Status.PENDING, send_count: int = 1,
             purpose: str = "login") -> Otp:
    return Otp(
        id=otp_id, recipient=recipient, to_masked="+1415•••0123", purpose=purpose,
        channels=["sms"], status=status, digest=b"\x01" * 32, code_length=6, locale="en",
        send_count=send_count, failed_attempts=0, max_attempts=5, created_at=now,
        expires_at=now + ttl, resend_after=now + 30, updated_at=now,
    )


def event(type_: EventType, subject: str, now: float, *, driver: str | None = None,
          channel: str | None = None) -> CloudEvent:
    return events.new(type_, subject, {"id": subject}, now, driver=driver, channel=channel)


def emitting(batch: Sequence[CloudEvent]) -> Change[None]:
    """A change that only publishes ``batch``."""
    return Change(result=None, events=list(batch))


def with_pending(key: str, otp: Otp) -> RecipientState:
    state = RecipientState.empty(key)
    state.pending[otp.purpose] = otp
    return state


class Recorder:
    """A handler that keeps what it is given."""

    def __init__(self) -> None:
        self.seen: list[CloudEvent] = []

    async def __call__(self, event: CloudEvent) -> None:
        self.seen.append(event)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.seen]
