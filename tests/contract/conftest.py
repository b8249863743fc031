"""Fixtures of the contract suites: every test runs once per backend in ``BACKENDS``.

A backend joins the suites by one entry there. One that needs a server the machine lacks
is skipped — except in CI (``CI`` set), where a missing server fails the run instead of
silently testing less.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otpgate import events
from otpgate.backends import Backend, open_memory, open_sqlite
from otpgate.bus.base import Bus, Handler, Limits, Subscription
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Otp, RecipientState, Status
from otpgate.events import CloudEvent, EventType, Filter
from tests.aws import moto
from tests.aws.backend import open_provisioned

Opener = Callable[[Path, FrozenClock, float], Awaitable[Backend]]
"""(database path, clock, poll interval) → an open backend."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class BackendCase:
    """How the suites open one backend; ``available`` says whether its server is here
    (a reason when it is not)."""

    name: str
    open: Opener
    available: Callable[[], str | None] = lambda: None
    bus_contract: bool = True
    """Whether the bus contract (timed by the injected clock) fits its bus; SNS/SQS time
    retries and leases by the wall clock and has a suite of its own (``tests/aws``)."""


BACKENDS: list[BackendCase] = [
    BackendCase("memory", lambda path, clock, poll: open_memory("memory://", clock,
                                                                poll_interval=poll)),
    BackendCase("sqlite", lambda path, clock, poll: open_sqlite(sqlite_url(path), clock,
                                                                poll_interval=poll)),
    BackendCase("dynamodb", lambda path, clock, poll: open_provisioned(clock, poll),
                available=moto.available, bus_contract=False),
]
BACKEND_NAMES = [case.name for case in BACKENDS]
BUS_BACKEND_NAMES = [case.name for case in BACKENDS if case.bus_contract]
_BY_NAME = {case.name: case for case in BACKENDS}


async def open_named(name: str, path: Path, clock: FrozenClock,
                     poll_interval: float = 0.01) -> Backend:
    """Open the backend ``name`` (skipped, or failed in CI, when its server is absent)."""
    require(_BY_NAME[name])
    return await _BY_NAME[name].open(path, clock, poll_interval)


def require(case: BackendCase) -> None:
    """Skip (or, in CI, fail) when ``case``'s server is not here."""
    if (missing := case.available()) is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{case.name} backend unavailable in CI: {missing}")
    pytest.skip(f"{case.name} backend unavailable: {missing}")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=BACKEND_NAMES)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Backend]:
    opened = await open_named(request.param, tmp_path / "data" / "otpgate.db", clock)
    try:
        yield opened
    finally:
        await opened.close()


async def subscribe(bus: Bus, name: str, filter_: Filter, handler: Handler,
                    **limits: Any) -> None:
    """Declare ``name`` and consume it with ``handler`` here (``limits`` as ``Limits``)."""
    await bus.declare(Subscription(name, filter_))
    bus.consume(name, handler, Limits(**limits))


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
