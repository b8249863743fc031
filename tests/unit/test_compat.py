"""The pure parts of the compatibility surfaces: Twilio sids and forms, Supabase's secrets
and signatures, Kratos' courier body, and the ServiceSid registry."""

from __future__ import annotations

import base64
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from otpgate import services
from otpgate.compat import kratos, supabase, twilio
from otpgate.config import ServiceSettings
from otpgate.core import ids
from otpgate.core.policy import Policy
from otpgate.errors import ConfigurationError, InvalidRequest, Unauthorized

KEY = b"k" * 16 + b"e" * 16
NOW = 1_800_000_000.0


def test_a_verification_sid_leads_back_to_its_otp_and_only_with_the_key() -> None:
    sids = twilio.Sids(KEY)
    for _ in range(50):
        otp_id = ids.new_otp_id()
        sid = sids.verification(otp_id)
        assert re.fullmatch(r"VE[0-9a-f]{32}", sid)
        assert sids.verification(otp_id) == sid
        assert sids.otp_id(sid) == otp_id
        assert twilio.Sids(b"o" * 32).otp_id(sid) != otp_id


@pytest.mark.parametrize("sid", ["VE" + "0" * 31, "VE" + "A" * 32, "VA" + "0" * 32,
                                 "VE" + "g" * 32, "", "+14155550123"])
def test_anything_but_a_ve_sid_leads_to_no_otp(sid: str) -> None:
    assert twilio.Sids(KEY).otp_id(sid) is None


def test_attempt_and_account_sids_are_stable_keyed_digests() -> None:
    sids = twilio.Sids(KEY)
    assert sids.attempt("otp_x", 1) == sids.attempt("otp_x", 1) != sids.attempt("otp_x", 2)
    assert sids.account("acme").startswith("AC") and len(sids.account("acme")) == 34
    assert sids.account("acme") != twilio.Sids(b"o" * 32).account("acme")


def test_a_form_reads_each_field_once_and_empty_values_as_none() -> None:
    form = twilio.Form(b"To=%2B14155550123&Channel=sms&Locale=")
    assert (form.require("To"), form.get("Locale")) == ("+14155550123", None)
    with pytest.raises(InvalidRequest) as missing:
        form.require("Locale")
    assert missing.value.field == "Locale"
    for body in (b"To=1&To=2", "To=é".encode(), b"&".join([b"a%d=1" % n for n in range(65)])):
        with pytest.raises(InvalidRequest):
            twilio.Form(body)


def test_twilio_timestamps_are_seconds_with_a_z() -> None:
    assert twilio.timestamp(NOW + 0.9) == "2027-01-15T08:00:00Z"


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_supabase_secrets_are_read_as_supabase_writes_them() -> None:
    one, two = whsec(), whsec()
    assert len(supabase.parse_secrets(f"v1,{one}")) == 1
    assert len(supabase.parse_secrets(f"v1,{one}, v1,{two}")) == 2
    assert len(supabase.parse_secrets(f"v1,{one}|v1,{two}")) == 2
    for bad in ("", "v1,", "v1,secret", "v1,whsec_!!!", "v1,whsec_" + base64.b64encode(
            b"short").decode()):
        with pytest.raises(ConfigurationError):
            supabase.parse_secrets(bad)


def test_a_supabase_signature_verifies_among_several_within_five_minutes() -> None:
    mine, theirs = whsec(), whsec()
    keys = supabase.parse_secrets(f"v1,{mine}")
    body = b'{"sms": {"otp": "123456", "phone": "14155550123"}}'
    when = datetime.fromtimestamp(NOW, UTC)
    header = ", ".join(Webhook(s).sign("msg_1", when, body.decode()) for s in (theirs, mine))
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(NOW)),
               "webhook-signature": header}
    supabase.verify(keys, headers, body, NOW + 299)
    for now, sent in ((NOW + 301, body), (NOW - 301, body), (NOW, body + b" ")):
        with pytest.raises(Unauthorized):
            supabase.verify(keys, headers, sent, now)
    with pytest.raises(Unauthorized):
        supabase.verify(keys, {**headers, "webhook-signature": "v1,@@@@"}, body, NOW)


def test_the_supabase_phone_comes_from_the_sms_else_the_user() -> None:
    asked = supabase.parse(json.dumps({"user": {"phone": "4915112345678"},
                                       "sms": {"otp": "123456"}}).encode())
    assert (asked.phone, asked.otp, asked.purpose) == ("+4915112345678", "123456", "supabase")
    mfa = supabase.parse(b'{"sms": {"otp": "1", "phone": "+1415", "sms_type": "mfa"}}')
    assert (mfa.phone, mfa.purpose) == ("+1415", "supabase.mfa")
    for body in (b"[]", b"not json", b'{"sms": {"otp": "123456"}}', b'{"sms": {"phone": "1"}}'):
        with pytest.raises(InvalidRequest):
            supabase.parse(body)


def test_a_kratos_body_gives_its_recipient_text_code_and_purpose() -> None:
    found = kratos.parse(json.dumps({
        "recipient": "+14155550123", "template_type": "verification_code_valid",
        "to": "+14155550123", "verification_code": "482913", "recovery_code": None,
        "subject": "", "body": "Your verification code is: 482913", "extra": [1]}).encode())
    assert (found.recipient, found.code, found.subject) == ("+14155550123", "482913", None)
    assert found.purpose == "kratos.verification_code_valid"
    odd = kratos.parse(b'{"recipient": "a@b.example", "body": "x", "template_type": "A B", '
                       b'"recovery_code": "not-digits"}')
    assert (odd.purpose, odd.code) == ("kratos", None)


SID = "VA" + "1" * 32


def test_a_sid_configured_nowhere_gets_the_defaults_with_the_sid_as_purpose() -> None:
    found = services.Registry({}, None, Policy()).get(SID)
    assert found == services.Service(sid=SID, purpose=SID.lower())


def test_services_made_on_the_command_line_are_seen_at_once_and_toml_wins(
        tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    toml = {SID: ServiceSettings(purpose="from-toml")}
    registry = services.Registry(toml, path, Policy())
    made = services.create(path, ServiceSettings(brand="Acme", ttl=120), Policy())
    assert registry.get(made.sid).brand == "Acme" and registry.get(made.sid).ttl == 120
    assert registry.get(SID).purpose == "from-toml"
    assert [s.sid for s in registry.all()] == sorted([made.sid, SID])
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("settings", [
    ServiceSettings(code_length=4), ServiceSettings(ttl=5), ServiceSettings(purpose="Login"),
    ServiceSettings(brand=" Acme"), ServiceSettings(name="x" * 65)])
def test_a_service_the_policy_refuses_stops_the_start(settings: ServiceSettings) -> None:
    with pytest.raises(ConfigurationError, match=SID):
        services.Registry({SID: settings}, None, Policy())
    with pytest.raises(ConfigurationError):
        services.Registry({"VA123": ServiceSettings()}, None, Policy())
