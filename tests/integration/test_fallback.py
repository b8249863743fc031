"""Fan-out and fallback steps through the runtime on the embedded (SQLite) backend, with
an injected clock: the SMS at once, the voice call 30 s later unless the code was verified
meanwhile; a restart between the request and the step fires the step once."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from otpgate import config
from otpgate.api.routes_otp import status_body
from otpgate.bus.base import Handler, delivery_number
from otpgate.clock import FrozenClock
from otpgate.core.intake import FallbackRequest
from otpgate.core.otp import DeliveryStatus, Status
from otpgate.errors import InvalidRequest
from otpgate.events import CloudEvent
from otpgate.housekeeping import FailureWatcher
from otpgate.runtime import Runtime
from otpgate.service import OtpRequest

TO = "+14155550123"
VOICE_AFTER_30 = [FallbackRequest("voice", 30)]


async def open_runtime(tmp_path: Path, clock: FrozenClock,
                       seen: list[tuple[str, float, int]] | None = None,
                       **env: str) -> Runtime:
    """The runtime, its dispatchers consumed by hand; ``seen`` (if given) gets the channel,
    time and delivery number of every dispatch event delivered."""
    settings = config.from_env({"OTPGATE_DATA_DIR": str(tmp_path), "OTPGATE_DEV": "true",
                                **env})
    runtime = await Runtime.open(settings, clock)
    bus = runtime.backend.bus

    def noting(handle: Handler) -> Handler:
        async def noted(event: CloudEvent) -> None:
            if seen is not None:
                seen.append((event.data["channel"], clock.now(), delivery_number.get()))
            await handle(event)
        return noted

    for dispatcher in runtime.dispatchers():
        bus.consume(dispatcher.subscription().name, noting(dispatcher.handle),
                    dispatcher.limits())
    watcher = FailureWatcher(runtime.housekeeping)
    bus.consume(watcher.subscription.name, watcher.handle, runtime.limits)
    return runtime


async def drain(runtime: Runtime) -> None:
    while await runtime.backend.bus.pump():
        pass


async def captured(runtime: Runtime, to: str = TO) -> list[tuple[str, str]]:
    """(channel, body) of what was sent to ``to``, oldest first."""
    found = await runtime.backend.capture.list(to)
    return [(m.channel, m.body) for m in reversed(found)]


async def test_sms_at_once_then_voice_after_30_s_while_the_code_is_pending(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    runtime = await open_runtime(tmp_path, clock)
    try:
        otp = (await runtime.service.request(OtpRequest(
            to=TO, fallback=VOICE_AFTER_30))).otp
        await drain(runtime)
        assert [c for c, _ in await captured(runtime)] == ["sms"]
        clock.advance(29)
        await drain(runtime)
        assert [c for c, _ in await captured(runtime)] == ["sms"]
        clock.advance(1)
        await drain(runtime)
        assert [c for c, _ in await captured(runtime)] == ["sms", "voice"]
        clock.advance(120)
        await drain(runtime)
        assert [c for c, _ in await captured(runtime)] == ["sms", "voice"]
        status = status_body(otp, await runtime.service.store.deliveries(otp.id)).decode()
        assert '"channel":"sms"' in status and '"step":1' in status
        rows = {d.channel: d for d in await runtime.service.store.deliveries(otp.id)}
        assert (rows["sms"].status, rows["voice"].status) == (DeliveryStatus.SENT,
                                                              DeliveryStatus.SENT)
    finally:
        await runtime.close()


async def test_a_step_waiting_longer_than_its_deliveries_allow_goes_out_at_its_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # Two deliveries allowed, as on the AWS template; the bus asks a waiting step again
    # every backoff cap (300 s), so a step 599 s on is delivered three times: twice early.
    clock = FrozenClock()
    seen: list[tuple[str, float, int]] = []
    runtime = await open_runtime(tmp_path, clock, seen, OTPGATE_BUS_MAX_DELIVERIES="2")
    caplog.set_level(logging.DEBUG, logger="otpgate")
    caplog.clear()  # opening a fresh data directory warns of its new secret key
    try:
        start = clock.now()
        otp = (await runtime.service.request(OtpRequest(
            to=TO, ttl_seconds=600, fallback=[FallbackRequest("voice", 599)]))).otp
        for _ in range(59):
            await drain(runtime)
            assert [c for c, _ in await captured(runtime)] == ["sms"]
            clock.advance(10)
        clock.advance(8)
        await drain(runtime)
        assert [c for c, _ in await captured(runtime)] == ["sms"]
        clock.advance(1)
        await drain(runtime)

        assert [c for c, _ in await captured(runtime)] == ["sms", "voice"]
        voice = [(at - start, number) for channel, at, number in seen if channel == "voice"]
        assert voice == [(0, 1), (300, 1), (599, 1)]
        assert await runtime.backend.bus.dead_letters() == []
        rows = {d.channel: d for d in await runtime.service.store.deliveries(otp.id)}
        assert rows["voice"].status is DeliveryStatus.SENT
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert warned == []
    finally:
        await runtime.close()


async def test_a_code_verified_before_its_step_sends_nothing_more(tmp_path: Path) -> None:
    clock = FrozenClock()
    runtime = await open_runtime(tmp_path, clock)
    try:
        otp = (await runtime.service.request(OtpRequest(
            to=TO, fallback=VOICE_AFTER_30))).otp
        await drain(runtime)
        [(_, sms)] = await captured(runtime)
        code = re.search(r"\d{6}", sms)
        assert code is not None
        clock.advance(10)
        assert (await runtime.service.verify(otp.id, code.group())).valid
        clock.advance(30)
        await drain(runtime)
        assert [c for c, _ in await captured(runtime)] == ["sms"]
        rows = {d.channel: d for d in await runtime.service.store.deliveries(otp.id)}
        assert rows["voice"].status is DeliveryStatus.EXPIRED
        assert rows["voice"].error == "the OTP is approved"
    finally:
        await runtime.close()


async def test_a_restart_between_the_request_and_the_step_fires_the_step_once(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    first = await open_runtime(tmp_path, clock)
    try:
        otp = (await first.service.request(OtpRequest(to=TO, fallback=VOICE_AFTER_30))).otp
        await drain(first)
        clock.advance(5)
        await drain(first)
    finally:
        await first.close()
    clock.advance(30)
    for _ in range(2):  # started twice over: the step still goes out once
        again = await open_runtime(tmp_path, clock)
        try:
            await drain(again)
            assert [c for c, _ in await captured(again)] == ["sms", "voice"]
            stored = await again.service.store.get(otp.id)
            assert stored is not None and stored.status is Status.PENDING
        finally:
            await again.close()
        clock.advance(60)


async def test_a_step_may_go_to_an_address_of_its_own_and_fan_out_is_at_once(
    tmp_path: Path,
) -> None:
    clock = FrozenClock()
    runtime = await open_runtime(tmp_path, clock)
    try:
        await runtime.service.request(OtpRequest(
            to=TO, channels=["sms", "whatsapp"],
            fallback=[FallbackRequest("email", 60, "jane@example.com")]))
        await drain(runtime)
        assert sorted(c for c, _ in await captured(runtime)) == ["sms", "whatsapp"]
        clock.advance(60)
        await drain(runtime)
        [(channel, body)] = await captured(runtime, "jane@example.com")
        assert channel == "email"
        [(_, sms), *_] = await captured(runtime)
        code = re.search(r"\d{6}", sms)
        assert code is not None and code.group() in body, "the step carries the same code"
    finally:
        await runtime.close()


@pytest.mark.parametrize(("steps", "field"), [
    ([FallbackRequest("sms", 30)], "fallback.channel"),  # the request's own channel
    ([FallbackRequest("voice", 300)], "fallback.after"),  # not within the code's life
    ([FallbackRequest("voice", 0)], "fallback.after"),
    ([FallbackRequest("email", 30)], "fallback.channel"),  # e-mail cannot reach a number
    ([FallbackRequest("email", 30, "not an address")], "fallback.to"),
    ([FallbackRequest("voice", 30), FallbackRequest("whatsapp", 20)], "fallback.after"),
    ([FallbackRequest("voice", 30), FallbackRequest("voice", 40)], "fallback.channel"),
])
async def test_a_step_the_service_cannot_honour_is_refused_naming_it(
    tmp_path: Path, steps: list[FallbackRequest], field: str,
) -> None:
    runtime = await open_runtime(tmp_path, FrozenClock())
    try:
        with pytest.raises(InvalidRequest) as refused:
            await runtime.service.request(OtpRequest(to=TO, fallback=steps))
        assert refused.value.field == field
    finally:
        await runtime.close()


async def test_a_step_on_a_channel_no_route_serves_is_refused(tmp_path: Path) -> None:
    runtime = await open_runtime(tmp_path, FrozenClock(),
                                 OTPGATE_DRIVERS_SMS="console://", OTPGATE_DEV="false")
    try:
        with pytest.raises(InvalidRequest) as refused:
            await runtime.service.request(OtpRequest(to=TO, fallback=VOICE_AFTER_30))
        assert refused.value.field == "fallback.channel"
        assert "no driver is configured for channel 'voice'" in refused.value.detail
    finally:
        await runtime.close()
