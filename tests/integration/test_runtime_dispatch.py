"""The assembly's dispatchers: how many sends each keeps in flight, from its driver URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from otpgate import registry
from otpgate.clock import FrozenClock
from otpgate.config import build
from otpgate.drivers.base import Driver, DriverContext
from otpgate.errors import ConfigurationError
from otpgate.runtime import Runtime, name_drivers
from otpgate.service import OtpRequest
from otpgate.urls import Url
from tests.contract.test_sqlite_dispatch import GateDriver
from tests.integration.conftest import SECRET, START


def gate_from_url(url: Url, ctx: DriverContext) -> Driver:
    return GateDriver(ctx.name or "gate", open_at=int(url.option("open_at") or 1))


@pytest.mark.parametrize(("options", "expected"), [("concurrency=3&open_at=3", 3),
                                                   ("open_at=256", 256)])
async def test_a_driver_urls_concurrency_bounds_the_sends_its_dispatcher_has_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: str, expected: int
) -> None:
    monkeypatch.setitem(registry.DRIVERS, "gate",
                        ("tests.integration.test_runtime_dispatch:gate_from_url", None))
    settings = build({"store_url": "memory://", "data_dir": tmp_path, "secret_key": SECRET,
                      "drivers": {"sms": [f"gate://?{options}"]}, "poll_interval": 0.005,
                      "sweep_interval": 3600.0,
                      # sequential numbers, never verified: what the pumping guard stops
                      "pumping_mode": "off", "rate_limits": "prefix=off,new-prefix=off"})
    runtime = await Runtime.open(settings, FrozenClock(START))
    try:
        await runtime.start_workers()
        for n in range(expected + 20):
            await runtime.service.request(OtpRequest(to=f"+1415200{n:04d}"))
        gate = runtime.drivers["gate"]
        assert isinstance(gate, GateDriver)
        async with asyncio.timeout(10):
            while len(gate.sent) < expected + 20:
                await asyncio.sleep(0.005)
    finally:
        await runtime.close()
    assert gate.most == expected


@pytest.mark.parametrize("bad", ["0", "-1", "ten", "10001", "2.5"])
def test_a_concurrency_that_is_not_a_whole_number_from_1_to_10000_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        name_drivers({"sms": (f"capture://?concurrency={bad}",)})
