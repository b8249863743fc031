"""The official ``twilio`` SDK against a live ``otpgate serve``, with only its Verify base
URL changed and an otpgate key as its credentials: what an app on Twilio Verify sees."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.rest.verify.v2.service import ServiceContext
from twilio.rest.verify.v2.service.verification import VerificationInstance
from twilio.rest.verify.v2.service.verification_check import VerificationCheckInstance

from tests.e2e import server as srv

PLAIN = "VA" + "0" * 31 + "1"
"""A ServiceSid configured nowhere: the defaults, with the sid as its purpose."""
CUSTOM = "VA" + "c" * 32
"""A configured service: its own purpose and brand, custom codes allowed."""
CODE = re.compile(r"\b(\d{6})\b")
SERVICES = f"""
[services.{CUSTOM}]
name = "Checkout"
purpose = "checkout"
brand = "Acme Pay"
custom_code = true
"""


@dataclass
class Live:
    server: srv.Server
    key: str
    admin: str
    """An operator's key: outside dev mode only an admin key reads the capture inbox."""

    @property
    def key_id(self) -> str:
        return self.key.split("_")[1]

    def sdk(self, password: str | None = None) -> Client:
        client = Client(self.key_id, password or self.key.split("_", 2)[2])
        client.verify.base_url = self.server.url
        return client

    def inbox(self, to: str, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found: list[dict[str, Any]] = httpx.get(
                self.server.url + "/v1/dev/messages", params={"to": to},
                headers={"Authorization": f"Bearer {self.admin}"}).json()
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no message for {to}")

    def code(self, to: str, count: int = 1) -> str:
        found = CODE.search(self.inbox(to, count)[0]["body"])
        assert found is not None
        return found.group(1)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("twilio-sdk")
    config = base / "otpgate.toml"
    config.write_text(SERVICES)
    env = {"OTPGATE_DATA_DIR": str(base / "var"), "OTPGATE_CONFIG": str(config),
           "OTPGATE_DRIVERS_SMS": "capture://", "OTPGATE_ALLOW_CAPTURE": "true",
           "OTPGATE_POLICY_RESEND_COOLDOWN": "0"}
    made, admin = (subprocess.run(
        [sys.executable, "-m", "otpgate", "keys", "create", "--name", name, *flags],
        env=srv._environment(env), capture_output=True, text=True, check=True,
        timeout=60).stdout.strip().splitlines()[-1]
        for name, flags in (("sdk", ()), ("operator", ("--admin",))))
    server = srv.start(base / "var", base / "server.log", env, dev=False)
    yield Live(server, made, admin)
    server.stop()


def verify(live: Live, sid: str = PLAIN, password: str | None = None) -> ServiceContext:
    return live.sdk(password).verify.v2.services(sid)


def test_a_verification_is_created_checked_wrong_then_right_and_then_is_gone(live: Live,
                                                                             ) -> None:
    to = "+14155550101"
    service = verify(live)
    created = service.verifications.create(to=to, channel="sms")
    assert (created.status, created.to, created.channel, created.valid) == (
        "pending", to, "sms", False)
    assert re.fullmatch(r"VE[0-9a-f]{32}", created.sid or "")
    assert created.service_sid == PLAIN
    code = live.code(to)
    wrong = "000000" if code != "000000" else "111111"
    checked = service.verification_checks.create(to=to, code=wrong)
    assert (checked.status, checked.valid, checked.sid) == ("pending", False, created.sid)
    approved = service.verification_checks.create(to=to, code=code)
    assert (approved.status, approved.valid) == ("approved", True)
    with pytest.raises(TwilioRestException) as again:
        service.verification_checks.create(to=to, code=code)
    assert (again.value.status, again.value.code) == (404, 20404)


def test_five_wrong_checks_end_it_and_the_next_check_is_max_check_attempts(live: Live,
                                                                           ) -> None:
    to = "+14155550102"
    service = verify(live)
    created = service.verifications.create(to=to, channel="sms")
    code = live.code(to)
    wrong = "000000" if code != "000000" else "111111"
    statuses = [service.verification_checks.create(verification_sid=created.sid,
                                                   code=wrong).status for _ in range(5)]
    assert statuses == ["pending"] * 4 + ["max_attempts_reached"]
    for by in ({"to": to}, {"verification_sid": created.sid}):
        with pytest.raises(TwilioRestException) as spent:
            service.verification_checks.create(code=code, **by)
        assert (spent.value.status, spent.value.code) == (429, 60202)


def test_the_sixth_send_in_ten_minutes_is_max_send_attempts(live: Live) -> None:
    to = "+14155550103"
    service = verify(live)
    sids = {service.verifications.create(to=to, channel="sms").sid for _ in range(5)}
    assert len(sids) == 1  # every resend stays the one verification
    with pytest.raises(TwilioRestException) as capped:
        service.verifications.create(to=to, channel="sms")
    assert (capped.value.status, capped.value.code) == (429, 60203)


def test_a_canceled_verification_can_no_longer_be_checked(live: Live) -> None:
    to = "+14155550104"
    service = verify(live)
    created = service.verifications.create(to=to, channel="sms")
    code = live.code(to)
    canceled = service.verifications(created.sid).update(status="canceled")
    assert canceled.status == "canceled"
    with pytest.raises(TwilioRestException) as gone:
        service.verification_checks.create(to=to, code=code)
    assert gone.value.code == 20404


def test_a_verification_is_fetched_by_its_sid_and_by_its_to(live: Live) -> None:
    to = "+14155550105"
    service = verify(live)
    created = service.verifications.create(to=to, channel="sms")
    by_sid = service.verifications(created.sid).fetch()
    by_to = service.verifications(to).fetch()
    assert by_sid.sid == by_to.sid == created.sid
    assert by_sid.to == by_to.to == to
    assert by_sid.date_created == created.date_created
    assert by_sid.send_code_attempts == created.send_code_attempts
    with pytest.raises(TwilioRestException) as unknown:
        service.verifications("+14155550199").fetch()
    assert unknown.value.code == 20404


def test_the_json_has_every_property_of_the_sdks_resources(live: Live) -> None:
    to = "+14155550106"
    auth = (live.key_id, live.key)  # the whole key as the password works too
    base = f"{live.server.url}/v2/Services/{PLAIN}"
    created = httpx.post(f"{base}/Verifications", data={"To": to, "Channel": "sms"},
                         auth=auth)
    assert created.status_code == 201, created.text
    checked = httpx.post(f"{base}/VerificationCheck", data={"To": to, "Code": "000000"},
                         auth=auth)
    assert checked.status_code == 200, checked.text

    version = live.sdk().verify.v2
    wanted = {n for n in vars(VerificationInstance(version, {}, PLAIN)) if n[0] != "_"}
    assert set(created.json()) == wanted
    wanted = {n for n in vars(VerificationCheckInstance(version, {}, PLAIN)) if n[0] != "_"}
    assert set(checked.json()) == wanted
    body = created.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["date_created"])
    assert body["url"] == f"{base}/Verifications/{body['sid']}"
    assert body["lookup"] == {} and body["sna"] is None and body["amount"] is None


def test_wrong_credentials_are_twilios_authentication_error(live: Live) -> None:
    with pytest.raises(TwilioRestException) as refused:
        verify(live, password="not-the-secret").verifications.create(to="+14155550107",
                                                                     channel="sms")
    assert (refused.value.status, refused.value.code) == (401, 20003)


def test_a_service_that_allows_it_sends_the_apps_own_code_with_its_brand(live: Live,
                                                                          ) -> None:
    to = "+14155550108"
    service = verify(live, CUSTOM)
    service.verifications.create(to=to, channel="sms", custom_code="482910")
    message = live.inbox(to)[0]["body"]
    assert "482910" in message and "Acme Pay" in message
    assert service.verification_checks.create(to=to, code="482910").status == "approved"
    with pytest.raises(TwilioRestException) as refused:
        verify(live).verifications.create(to=to, channel="sms", custom_code="482910")
    assert (refused.value.status, refused.value.code) == (400, 60200)


def test_a_verification_the_app_approves_is_approved(live: Live) -> None:
    to = "+14155550109"
    service = verify(live)
    created = service.verifications.create(to=to, channel="sms")
    assert service.verifications(created.sid).update(status="approved").status == "approved"
    assert service.verifications(created.sid).fetch().status == "approved"
