"""The handlers as Lambda calls them: module functions, built once per environment."""

from __future__ import annotations

import pytest

from otpgate.aws import api, receipts, refs, sweep
from otpgate.aws.clients import Clients
from otpgate.drivers.capture import CaptureDriver
from otpgate.drivers.wrappers import Guarded, Paced, Wrapper
from otpgate.errors import ConfigurationError
from tests.aws import moto
from tests.aws.conftest import Deployment, answer, fixture, http_event


@pytest.fixture
def lambda_env(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    for name, value in deployment.env.items():
        monkeypatch.setenv(name, value)
    for module in (api, receipts, sweep):
        module._host.cache_clear()
    yield deployment
    for module in (api, receipts, sweep):
        if module._host.cache_info().currsize:
            module._host().close()
        module._host.cache_clear()


def test_each_handler_builds_its_environment_once_and_reuses_it(
    lambda_env: Deployment,
) -> None:
    first = api.handler(http_event("GET", "/healthz"), None)
    again = api.handler(http_event("GET", "/readyz"), None)

    ready = answer(again)
    assert (first["statusCode"], ready["status"]) == (200, "ok")
    assert {s["subscription"] for s in ready["subscriptions"]} >= {"dispatch.capture"}
    assert api._host.cache_info().misses == 1
    assert sweep.handler(fixture("eventbridge_schedule.json"), None) == {
        "expired": 0, "republished": 0}


def test_the_receipts_handler_serves_the_same_app_as_the_api_handler(
    lambda_env: Deployment,
) -> None:
    for method, path in (("GET", "/healthz"), ("POST", "/v1/receipts/capture"),
                         ("GET", "/v1/receipts/capture"), ("GET", "/openapi.json")):
        through_api = api.handler(http_event(method, path, "{}"), None)
        through_receipts = receipts.handler(http_event(method, path, "{}"), None)
        for part in ("statusCode", "body", "isBase64Encoded"):
            assert through_receipts[part] == through_api[part], (method, path, part)
        assert through_receipts["headers"]["content-type"] == \
            through_api["headers"]["content-type"]


async def test_a_reference_to_a_missing_parameter_stops_the_cold_start_naming_it() -> None:
    clients = Clients(moto.REGION, moto.endpoint())
    try:
        with pytest.raises(ConfigurationError, match="/otpgate/nowhere"):
            await refs.resolve({"OTPGATE_SECRET_KEY": "ssm:/otpgate/nowhere"}, clients)
    finally:
        await clients.close()


async def test_a_driver_list_may_mix_urls_and_references() -> None:
    import boto3

    ssm = boto3.client("ssm", endpoint_url=moto.endpoint(), region_name=moto.REGION)
    ssm.put_parameter(Name="/otpgate/mixed/sms", Type="SecureString", Overwrite=True,
                      Value="capture://?name=first,capture://?name=second")
    clients = Clients(moto.REGION, moto.endpoint())
    try:
        resolved = await refs.resolve({
            "OTPGATE_DRIVERS_SMS": "ssm:/otpgate/mixed/sms, console://",
            "OTPGATE_BRAND": "ssm: is only a reference at the start",
            "PATH": "ssm:/not/ours"}, clients)
    finally:
        await clients.close()
    assert resolved["OTPGATE_DRIVERS_SMS"] == \
        "capture://?name=first,capture://?name=second,console://"
    assert resolved["PATH"] == "ssm:/not/ours"


def test_the_dispatch_function_assembles_its_dispatcher_as_serve_does(
    deployment: Deployment,
) -> None:
    host = deployment.dispatcher("capture", OTPGATE_DRIVERS_SMS="capture://?mps=5&burst=2",
                                 OTPGATE_PUBLIC_URL="https://otp.example.com")
    layers = []
    driver: object = host.dispatcher._driver
    while isinstance(driver, Wrapper):
        layers.append(type(driver).__name__)
        if isinstance(driver, Guarded):
            assert driver.breaker is host.runtime.breakers.of("capture")
        if isinstance(driver, Paced):
            assert driver.pace is host.runtime.paces["capture"]
            assert (driver.pace.rate, driver.pace.burst) == (5, 2)
        driver = driver.inner
    assert layers == ["Bounded", "Guarded", "Paced", "Metered"]
    assert isinstance(driver, CaptureDriver)
    assert host.runtime.settings.public_url == "https://otp.example.com"
