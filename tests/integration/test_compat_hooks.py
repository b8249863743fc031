"""Supabase Auth's Send-SMS hook and Ory Kratos' HTTP courier: their requests as those
services build and sign them, the codes they made delivered — and never kept or verified
by otpgate."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from otpgate import apikeys
from otpgate.clock import FrozenClock
from otpgate.core import codes
from tests.integration.conftest import (
    CONSOLE,
    PHONE,
    START,
    Client,
    assert_problem,
    runtime_of,
    wait_for_messages,
)

SUPABASE = "/hooks/supabase/send-sms"
KRATOS = "/hooks/kratos/courier"
CODE = "573912"


def secret() -> str:
    """A hook secret as Supabase's dashboard shows it."""
    return "v1,whsec_" + base64.b64encode(os.urandom(32)).decode()


OLD, NEW = secret(), secret()


def supabase_payload(otp: str = CODE, phone: str = PHONE[1:], sms_type: str = "") -> bytes:
    """``v0hooks.SendSMSInput`` as Supabase Auth marshals it (``omitempty`` fields left
    out), with the user its ``models.User`` JSON gives."""
    sms = {"otp": otp, "phone": phone, **({"sms_type": sms_type} if sms_type else {})}
    return json.dumps({
        "metadata": {"uuid": str(uuid.uuid4()), "time": "2027-01-15T08:00:00.123456Z",
                     "name": "send-sms", "ip_address": "203.0.113.7"},
        "user": {"id": str(uuid.uuid4()), "aud": "authenticated", "role": "authenticated",
                 "email": "", "phone": phone, "confirmation_sent_at": "2027-01-15T07:59:00Z",
                 "app_metadata": {"provider": "phone", "providers": ["phone"]},
                 "user_metadata": {}, "identities": [], "created_at": "2027-01-15T07:59:00Z",
                 "updated_at": "2027-01-15T07:59:00Z", "is_anonymous": False},
        "sms": sms,
    }).encode()


def signed(body: bytes, *secrets: str, at: float = START) -> dict[str, str]:
    """The headers Supabase Auth sends: one signature per secret, joined by ", "."""
    msg_id = str(uuid.uuid4())
    when = datetime.fromtimestamp(at, UTC)
    signatures = [Webhook(s.removeprefix("v1,")).sign(msg_id, when, body.decode())
                  for s in secrets]
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(int(at)), "webhook-signature": ", ".join(signatures)}


@pytest.fixture
def hooked(make_client: Callable[..., Any]) -> Callable[..., Any]:
    def make(**changes: Any) -> Any:
        return make_client(**{"supabase_hook_secret": f"{OLD},{NEW}", **changes})

    return make


async def test_supabases_code_arrives_by_sms_and_the_hook_answers_an_empty_object(
        hooked: Callable[..., Any]) -> None:
    async with hooked() as client:
        body = supabase_payload()
        response = await client.post(SUPABASE, content=body, headers=signed(body, NEW))
        assert (response.status_code, response.content) == (200, b"{}")
        assert response.headers["content-type"] == "application/json"
        [message] = await wait_for_messages(client, PHONE)
        assert CODE in message["body"] and message["channel"] == "sms"


@pytest.mark.parametrize("tamper", ["signature", "body", "old", "new", "unsigned", "key"])
async def test_a_hook_request_that_does_not_verify_is_401_and_sends_nothing(
        hooked: Callable[..., Any], clock: FrozenClock, tamper: str) -> None:
    async with hooked() as client:
        body = supabase_payload()
        headers = signed(body, NEW, at=START - 301 if tamper == "old" else
                         START + 301 if tamper == "new" else START)
        if tamper == "signature":
            headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        if tamper == "unsigned":
            del headers["webhook-signature"]
        if tamper == "key":
            headers = signed(body, secret())
        sent = body.replace(CODE.encode(), b"111111") if tamper == "body" else body
        assert_problem(await client.post(SUPABASE, content=sent, headers=headers), 401,
                       "unauthorized")
        assert (await client.get("/v1/dev/messages")).json() == []


async def test_either_secret_verifies_while_one_is_rotated_and_one_good_signature_is_enough(
        hooked: Callable[..., Any]) -> None:
    async with hooked() as client:
        for n, secrets in enumerate([(OLD,), (NEW,), (secret(), NEW), (OLD, secret())]):
            body = supabase_payload(otp=f"57391{n}")
            response = await client.post(SUPABASE, content=body, headers=signed(body, *secrets))
            assert response.content == b"{}", secrets
    async with hooked(supabase_hook_secret=NEW) as client:
        body = supabase_payload()
        assert_problem(await client.post(SUPABASE, content=body, headers=signed(body, OLD)),
                       401, "unauthorized")


async def test_a_retried_hook_sends_once_and_a_new_code_goes_out_at_once(
        hooked: Callable[..., Any]) -> None:
    async with hooked() as client:
        body = supabase_payload()
        for _ in range(2):  # Supabase retries with a new webhook-id each time
            assert (await client.post(SUPABASE, content=body,
                                      headers=signed(body, NEW))).content == b"{}"
        fresh = supabase_payload(otp="680244")
        assert (await client.post(SUPABASE, content=fresh,
                                  headers=signed(fresh, NEW))).content == b"{}"
        messages = await wait_for_messages(client, PHONE, 2)
        assert "680244" in messages[0]["body"] and CODE in messages[1]["body"]
        assert len((await client.get("/v1/dev/messages")).json()) == 2


async def test_a_refusal_is_in_supabases_hook_error_form(hooked: Callable[..., Any]) -> None:
    async with hooked(policy={"max_sends": 1}) as client:
        for n, expected in ((1, 200), (2, 429)):
            body = supabase_payload(otp=f"57391{n}")
            answer = (await client.post(SUPABASE, content=body, headers=signed(body, NEW)))
            assert answer.status_code == 200
            assert answer.json().get("error", {}).get("http_code", 200) == expected
        body = supabase_payload(phone="12")
        answer = await client.post(SUPABASE, content=body, headers=signed(body, NEW))
        assert answer.json()["error"]["http_code"] == 400


async def test_a_server_without_the_secret_refuses_every_hook(client: Client) -> None:
    body = supabase_payload()
    assert_problem(await client.post(SUPABASE, content=body, headers=signed(body, NEW)), 401,
                   "unauthorized")


async def test_otpgate_neither_keeps_nor_verifies_a_code_another_service_made(
        hooked: Callable[..., Any], tmp_path: Path) -> None:
    db = tmp_path / "hooks.db"
    async with hooked(store_url=f"sqlite:///{db}") as client:
        body = supabase_payload(sms_type="mfa")
        assert (await client.post(SUPABASE, content=body,
                                  headers=signed(body, NEW))).content == b"{}"
        [message] = await wait_for_messages(client, PHONE)
        runtime = runtime_of(client)
        otp = await runtime.backend.store.get(message["otp_id"])
        assert otp is not None and otp.external and otp.purpose == "supabase.mfa"
        assert otp.digest != codes.digest(runtime.keyring.digest_key, otp.id, CODE)
        answer = await client.post("/v1/verify", json={"to": PHONE, "purpose": "supabase.mfa",
                                                       "code": CODE})
        assert answer.json()["valid"] is False
        by_id = await client.post(f"/v1/otp/{otp.id}/verify", json={"code": CODE})
        assert_problem(by_id, 422, "invalid-request")
    with sqlite3.connect(db) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE "
                                             "type = 'table' AND name != 'captured'")]
        rows = [row for t in tables for row in conn.execute(f"SELECT * FROM {t}")]
    kept = b"".join(v if isinstance(v, bytes) else str(v).encode() for r in rows for v in r)
    assert CODE.encode() not in kept and PHONE[1:].encode() not in kept


def kratos_body(template_type: str = "login_code_valid", recipient: str = PHONE,
                **template: Any) -> dict[str, Any]:
    """What Kratos' default courier request template renders."""
    text = {"login_code_valid": "Your login code is: 482913\n\nIt expires in 15 minutes.\n",
            "verification_code_valid": "Your verification code is: 482913\n\nIf this was "
                                       "not you, do nothing. It expires in 15 minutes.\n"}
    return {"recipient": recipient, "template_type": template_type, "to": recipient,
            "recovery_code": None, "recovery_url": None, "verification_url": None,
            "verification_code": None, "subject": template.pop("subject", ""),
            "body": template.pop("body", text.get(template_type, "")), **template}


async def test_kratos_sms_goes_out_as_kratos_wrote_it(client: Client) -> None:
    response = await client.post(KRATOS, json=kratos_body())
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    [message] = await wait_for_messages(client, PHONE)
    assert message["body"] == kratos_body()["body"] and message["channel"] == "sms"
    verification = kratos_body("verification_code_valid", verification_code="482913")
    assert (await client.post(KRATOS, json=verification)).status_code == 200
    messages = await wait_for_messages(client, PHONE, 2)
    assert messages[0]["body"].startswith("Your verification code is: 482913")


async def test_a_kratos_email_goes_out_with_its_subject(client: Client) -> None:
    mail = kratos_body("verification_code_valid", recipient="ada@example.com",
                       subject="Please verify your email address",
                       body="Your code is 482913", verification_code="482913")
    assert (await client.post(KRATOS, json=mail)).status_code == 200
    [message] = await wait_for_messages(client, "ada@example.com")
    assert message["channel"] == "email" and message["body"] == "Your code is 482913"


async def test_a_kratos_body_without_recipient_or_text_is_422(client: Client) -> None:
    assert_problem(await client.post(KRATOS, json={"body": "x"}), 422, "invalid-request")
    assert_problem(await client.post(KRATOS, json=kratos_body(body="")), 422,
                   "invalid-request")


async def test_kratos_must_bring_a_server_key_outside_dev_mode(
        make_client: Callable[..., Any]) -> None:
    async with make_client(dev=False, drivers=CONSOLE) as client:
        key, whole = await apikeys.create(runtime_of(client).backend.store, "kratos", START)
        for header in (None, "Bearer og_deadbeef_" + "A" * 43,
                       "Basic " + base64.b64encode(f"{key.id}:{'A' * 43}".encode()).decode()):
            headers = {"authorization": header} if header else {}
            assert_problem(await client.post(KRATOS, json=kratos_body(), headers=headers),
                           401, "unauthorized")
        basic = base64.b64encode(f"{key.id}:{whole.split('_', 2)[2]}".encode()).decode()
        for header in (f"Bearer {whole}", f"Basic {basic}"):
            answer = await client.post(KRATOS, json=kratos_body(),
                                       headers={"authorization": header})
            assert answer.status_code == 200, answer.text
