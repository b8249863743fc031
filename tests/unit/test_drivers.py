"""The capture and console drivers, table-driven over their URLs."""

from __future__ import annotations

import msgspec
import pytest

from otpgate.capture.memory import MemoryCaptureSink
from otpgate.clock import FrozenClock
from otpgate.drivers import open_driver
from otpgate.drivers.base import Driver, DriverContext, Message, stable_id
from otpgate.drivers.capture import CaptureDriver
from otpgate.errors import ConfigurationError, PermanentDeliveryError

TO = "+14155550123"
CODE = "482913"


def context(allow_capture: bool = True) -> DriverContext:
    return DriverContext(FrozenClock(), MemoryCaptureSink(), allow_capture)


def message(channel: str = "sms", to: str = TO, send_no: int = 1) -> Message:
    return Message(otp_id="otp_q7Hk2LmN9xP4vR8sT1wYzA", send_no=send_no, channel=channel,
                   to=to, body=f"Your Acme code is {CODE}. It expires in 5 minutes.",
                   subject="Your Acme code" if channel == "email" else None,
                   idempotency_key=f"otp_q7Hk2LmN9xP4vR8sT1wYzA:{send_no}:{channel}",
                   expires_at=1_800_000_300.0)


@pytest.mark.parametrize(("url", "shown"), [
    ("capture://", "capture://"),
    ("capture:///", "capture://"),
    ("capture://?latency_ms=60", "capture://?latency_ms=60"),
    ("console://", "console://"),
    ("console://?stream=stdout", "console://"),
    ("console://?stream=stderr", "console://?stream=stderr"),
])
def test_each_driver_url_opens_through_the_registry_and_shows_itself(url: str,
                                                                       shown: str) -> None:
    driver: Driver = open_driver(url, context())
    assert driver.url() == shown == driver.url(privacy=False)
    assert driver.name == url.split(":")[0]
    assert {"sms", "email", "voice", "whatsapp"} <= driver.channels


@pytest.mark.parametrize("url", [
    "capture://?latency_ms=soon", "capture://?latency_ms=-5", "capture://?colour=red",
    "capture://somewhere", "console://?stream=printer", "console://?verbose=1",
    "console://host",
])
def test_a_driver_url_with_unknown_or_bad_options_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_driver(url, context())


def test_capture_refuses_to_start_unless_captures_are_allowed() -> None:
    with pytest.raises(ConfigurationError, match="dev mode"):
        open_driver("capture://", context(allow_capture=False))


async def test_capture_keeps_the_message_for_the_dev_inbox() -> None:
    ctx = context()
    driver = open_driver("capture://", ctx)
    receipt = await driver.send(message("email", to="jane@example.com"))
    [kept] = await ctx.capture.list("jane@example.com")
    assert receipt.provider_id == kept.id
    assert kept.id.startswith("cap_")
    assert kept.otp_id == "otp_q7Hk2LmN9xP4vR8sT1wYzA"
    assert kept.channel == "email"
    assert CODE in kept.body
    assert kept.subject == "Your Acme code"
    assert kept.sent_at == ctx.clock.now()


async def test_capture_keeps_a_repeated_send_once_and_answers_with_the_same_id() -> None:
    ctx = context()
    driver = open_driver("capture://", ctx)
    first = await driver.send(message())
    again = await driver.send(message())
    resend = await driver.send(message(send_no=2))
    assert first.provider_id == again.provider_id == stable_id("cap", message().idempotency_key)
    assert resend.provider_id != first.provider_id
    assert [m.id for m in await ctx.capture.list(TO)] == [resend.provider_id,
                                                          first.provider_id]


async def test_capture_counts_sms_segments_in_its_receipt() -> None:
    driver = CaptureDriver(MemoryCaptureSink(), FrozenClock())
    long = msgspec.structs.replace(message(), body="x" * 161)
    assert (await driver.send(long)).segments == 2
    assert (await driver.send(message())).segments == 1


async def test_capture_refuses_a_channel_it_does_not_know_for_good() -> None:
    driver = open_driver("capture://", context())
    with pytest.raises(PermanentDeliveryError):
        await driver.send(message("fax"))


async def test_console_prints_one_masked_line_without_the_code_or_the_body(
    capsys: pytest.CaptureFixture[str],
) -> None:
    driver = open_driver("console://", context())
    receipt = await driver.send(message())
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count("\n") == 1
    assert "+1415•••0123" in out
    assert "sms" in out
    assert "otp_q7Hk2LmN9xP4vR8sT1wYzA" in out
    assert CODE not in out
    assert TO not in out
    assert TO[1:] not in out
    assert "Acme" not in out
    assert receipt.provider_id.startswith("con_")


async def test_console_writes_to_standard_error_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    driver = open_driver("console://?stream=stderr", context())
    await driver.send(message("email", to="jane@example.com"))
    out, err = capsys.readouterr()
    assert out == ""
    assert "j•••@example.com" in err
    assert "jane@" not in err
