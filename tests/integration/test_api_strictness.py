"""The API is as strict as its OpenAPI document, and the document as strict as the API:
value rules, methods (OPTIONS, HEAD), repeated keys, long e-mail local parts, and clients
that leave mid-request."""

from __future__ import annotations

import logging
from typing import Any

import jsonschema_rs
import pytest

from tests.integration.conftest import (
    CONSOLE,
    PHONE,
    Client,
    assert_problem,
    request_code,
)


async def _document(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def _body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # With the components, so that a nested body's $ref (a fallback step) resolves.
    return {**doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]],
            "components": doc["components"]}


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/otp", {"to": ""}),
    ("/v1/otp", {"to": "+14155550123", "purpose": "Login!"}),
    ("/v1/otp", {"to": "+14155550123", "code_length": 11}),
    ("/v1/otp", {"to": "+14155550123", "channel": "pigeon"}),
    ("/v1/otp", {"to": "a" * 65 + "@example.com"}),
    ("/v1/otp", {"to": "+14155550123", "fallback": [{"channel": "pigeon", "after": 30}]}),
    ("/v1/otp", {"to": "+14155550123", "fallback": [{"channel": "email", "after": 0}]}),
    ("/v1/otp", {"to": "+14155550123", "fallback": [{"channel": "email", "after": 600}]}),
    ("/v1/otp", {"to": "+14155550123", "fallback": [{"channel": "email", "after": 30,
                                                     "to": "x" * 300}]}),
    ("/v1/otp/{otp_id}/verify", {"code": ""}),
    ("/v1/verify", {"to": "+14155550123", "code": "12 34"}),
])
async def test_what_the_service_refuses_the_document_declares_invalid(
    client: Client, path: str, body: dict[str, Any],
) -> None:
    doc = await _document(client)
    assert not jsonschema_rs.validator_for(_body_schema(doc, path)).is_valid(body)
    concrete = path.replace("{otp_id}", (await request_code(client, "+14155550100"))["id"])
    answer = await client.post(concrete, json=body)
    assert answer.status_code == 422, answer.text


async def test_the_document_accepts_what_the_service_accepts(client: Client) -> None:
    doc = await _document(client)
    otp = {"to": PHONE, "channel": "sms", "purpose": "login", "locale": "pt-BR",
           "code_length": 6, "ttl_seconds": 300, "reference": "order-42"}
    assert jsonschema_rs.validator_for(_body_schema(doc, "/v1/otp")).is_valid(otp)
    assert (await client.post("/v1/otp", json=otp)).status_code == 202


async def test_the_recipient_filter_of_the_dev_inbox_is_declared_non_empty(
    client: Client,
) -> None:
    doc = await _document(client)
    [to] = [p for p in doc["paths"]["/v1/dev/messages"]["get"]["parameters"]
            if p["name"] == "to"]
    assert not jsonschema_rs.validator_for(to["schema"]).is_valid("")
    assert_problem(await client.get("/v1/dev/messages?to="), 422, "invalid-recipient")


async def test_options_lists_every_method_of_a_path_and_needs_no_key(
    make_client: Any,
) -> None:
    async with make_client(dev=False, drivers=CONSOLE) as c:
        one = await c.options("/v1/otp/otp_" + "a" * 22)
        assert (one.status_code, one.headers["allow"]) == (204, "DELETE, GET, HEAD, OPTIONS")
        many = await c.options("/v1/otp")
        assert many.headers["allow"] == "OPTIONS, POST"


async def test_head_answers_like_get_without_a_body(client: Client) -> None:
    otp = await request_code(client)
    for path in ("/healthz", f"/v1/otp/{otp['id']}", "/v1/dev/messages", "/dev/inbox"):
        got, head = await client.get(path), await client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["content-type"] == got.headers["content-type"]


async def test_an_unknown_method_names_head_among_those_allowed(client: Client) -> None:
    response = await client.put("/healthz")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("body", [
    b'{"to": "+14155550123", "to": "+14155550199"}',
    b'{"to": "+14155550123", "t\\u006f": "+14155550199"}',
    b'{"to": "+14155550123", "purpose": "a", "purpose": "b"}',
])
async def test_a_field_given_twice_is_refused(client: Client, body: bytes) -> None:
    response = await client.post("/v1/otp", content=body)
    assert_problem(response, 422, "invalid-request")
    assert "twice" in response.json()["detail"]


async def test_a_field_name_inside_a_value_is_not_a_repeated_field(client: Client) -> None:
    response = await client.post(
        "/v1/otp", content=b'{"to": "+14155550123", "reference": "\\"to\\" and \\"to\\""}')
    assert response.status_code == 202, response.text
    otp = await request_code(client, "+14155550124")
    answer = await client.post(f"/v1/otp/{otp['id']}/verify",
                               content=b'{"code": "000000", "code": "111111"}')
    assert_problem(answer, 422, "invalid-request", field="code")


async def test_an_e_mail_local_part_over_64_characters_is_refused(client: Client) -> None:
    assert (await client.post("/v1/otp", json={"to": "a" * 64 + "@example.com"})
            ).status_code == 202
    assert_problem(await client.post("/v1/otp", json={"to": "a" * 65 + "@example.com"}),
                   422, "invalid-recipient", field="to")


async def test_a_client_that_leaves_mid_body_is_not_a_server_error(
    client: Client, caplog: pytest.LogCaptureFixture,
) -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"to": "+1415', "more_body": True},
        {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/otp", "raw_path": b"/v1/otp",
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8080),
             "client": ("127.0.0.1", 1234),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"content-length", b"100")]}
    with caplog.at_level(logging.DEBUG):
        await client.app(scope, receive, send)  # type: ignore[arg-type]
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] != [500]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_fallback_step_may_name_its_own_to_but_no_key_twice(client: Client) -> None:
    step = '{"channel": "email", "after": 30, "to": "jane@example.com"}'
    ok = await client.post("/v1/otp", content=f'{{"to": "+14155550188", "fallback": [{step}]}}',
                           headers={"content-type": "application/json"})
    assert ok.status_code == 202, ok.text
    twice = '{"channel": "email", "after": 30, "after": 40, "to": "jane@example.com"}'
    refused = await client.post(
        "/v1/otp", content=f'{{"to": "+14155550189", "fallback": [{twice}]}}',
        headers={"content-type": "application/json"})
    assert_problem(refused, 422, "invalid-request", "after")
