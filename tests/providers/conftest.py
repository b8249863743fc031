"""Fixtures of the provider driver tests: a stand-in server per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from otpgate.capture.memory import MemoryCaptureSink
from otpgate.clock import FrozenClock
from otpgate.drivers.base import DriverContext, Message
from tests.integration.conftest import clock as clock
from tests.integration.conftest import make_client as make_client
from tests.providers.stand_in import Handler, StandIn

TO = "+14155550123"
CODE = "482913"
OTP_ID = "otp_q7Hk2LmN9xP4vR8sT1wYzA"
PUBLIC = "https://otp.example.com"


@pytest.fixture
def stand_in() -> Iterator[Callable[[Handler], StandIn]]:
    """``server = stand_in(handler)``: a started stand-in, stopped after the test."""
    started: list[StandIn] = []

    def start(handler: Handler) -> StandIn:
        server = StandIn(handler).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def context(public_url: str | None = PUBLIC) -> DriverContext:
    return DriverContext(FrozenClock(), MemoryCaptureSink(), allow_capture=False,
                         public_url=public_url)


def message(channel: str = "sms", to: str = TO, body: str | None = None,
            send_no: int = 1) -> Message:
    text = body if body is not None else f"Your Acme code is {CODE}. It expires in 5 minutes."
    return Message(otp_id=OTP_ID, send_no=send_no, channel=channel, to=to, body=text,
                   code=CODE, locale="en",
                   subject="Your Acme code" if channel == "email" else None,
                   idempotency_key=f"{OTP_ID}:{send_no}:{channel}",
                   expires_at=1_800_000_300.0)
