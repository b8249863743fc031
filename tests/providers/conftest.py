"""Fixtures of the provider driver tests: a stand-in server per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otpgate.capture.memory import MemoryCaptureSink
from otpgate.clock import FrozenClock
from otpgate.core.messages import Templates
from otpgate.drivers.base import DriverContext, Message
from tests.integration.conftest import clock as clock
from tests.integration.conftest import make_client as make_client
from tests.providers import aws
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


EMAIL = "jane@example.com"


def email_message(to: str = EMAIL, send_no: int = 1, locale: str = "en") -> Message:
    """An e-mail as the dispatcher renders it: the locale's text, subject and HTML."""
    text = Templates.default().render("email", locale, "Acme", CODE, 5)
    return Message(otp_id=OTP_ID, send_no=send_no, channel="email", to=to, body=text.body,
                   code=CODE, locale=locale, subject=text.subject, html=text.html,
                   idempotency_key=f"{OTP_ID}:{send_no}:email", expires_at=1_800_000_300.0)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for the AWS chain; no profile, shared file or instance role."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", aws.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws.SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[aws.MotoServer]:
    """One moto server (server mode, its own process) for the whole session."""
    server = aws.MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: aws.MotoServer, aws_credentials: None) -> aws.MotoServer:
    """The moto server, emptied and recording afresh for this test."""
    moto_server.reset()
    return moto_server
