"""Every error is an RFC 9457 problem; bad input never causes a 500."""

from __future__ import annotations

from typing import Any

import pytest

from otpgate.errors import StoreError
from otpgate.service import OtpService
from tests.integration.conftest import PHONE, PROBLEM, Client, assert_problem


@pytest.mark.parametrize("body", [b"", b"nope", b'{"to": "+14155550123"', b"\xff\xfe{}",
                                  b'{"to": "\xff"}', b'{"to":"x"} trailing'])
async def test_a_body_that_is_not_json_is_400(client: Client, body: bytes) -> None:
    response = await client.post("/v1/otp", content=body)
    assert_problem(response, 400, "malformed-request")


@pytest.mark.parametrize("body", [b"[]", b'["+14155550123"]', b"null", b"42", b'"text"'])
async def test_json_that_is_not_an_object_is_422(client: Client, body: bytes) -> None:
    response = await client.post("/v1/otp", content=body)
    assert_problem(response, 422, "invalid-request")
    assert "object" in response.json()["detail"]


@pytest.mark.parametrize("body", [
    b'{"to": "+14155550123", "code_length": 1e400}',
    b'{"to": "+14155550123", "ttl_seconds": 123456789012345678901234567890}',
    b'{"to": "+14155550123", "purpose": "lo\\u0000gin"}',
    b'{"to": "\\ud800"}',
    b'{"to\\u0000": 1}',
    b'{"to": "+14155550123", "channels": [[["sms"]]]}',
    b'{"to": [' + b"[" * 500 + b"]" * 500 + b"]}",
    b'{"to": "+14155550123", "reference": "\\u202eevil"}',
])
async def test_fuzzed_bodies_are_refused_as_client_errors(client: Client, body: bytes) -> None:
    response = await client.post("/v1/otp", content=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM


async def test_a_body_over_the_limit_is_413(client: Client) -> None:
    body = b'{"to": "+14155550123", "reference": "' + b"r" * 20_000 + b'"}'
    assert_problem(await client.post("/v1/otp", content=body), 413, "payload-too-large")


async def test_a_chunked_body_over_the_limit_is_413(client: Client) -> None:
    """No Content-Length: the limit is enforced on the bytes as they arrive."""
    chunks = [b'{"to": "+14155550123", "reference": "', *[b"r" * 1024] * 40, b'"}']
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/otp", "raw_path": b"/v1/otp",
             "root_path": "", "query_string": b"", "server": ("testserver", 80),
             "client": ("127.0.0.1", 1234),
             "headers": [(b"host", b"127.0.0.1:8080"), (b"transfer-encoding", b"chunked")]}
    await client.app(scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    assert start["status"] == 413
    assert (b"content-type", PROBLEM.encode()) in start["headers"]
    assert messages, "the server stopped reading once the limit was passed"


async def test_the_body_limit_follows_the_settings(make_client: object) -> None:
    async with make_client(max_body_bytes=64) as small:  # type: ignore[operator]
        ok = await small.post("/v1/otp", json={"to": PHONE})
        assert ok.status_code == 202
        big = await small.post("/v1/otp", json={"to": PHONE, "reference": "r" * 64})
        assert_problem(big, 413, "payload-too-large")


async def test_an_unknown_route_is_a_404_problem(client: Client) -> None:
    for path in ("/nope", "/v1/nope", "/v1/otp/a/b/c", "/openapi.json/x"):
        assert_problem(await client.get(path), 404, "not-found")


async def test_a_wrong_method_is_a_405_problem_naming_the_allowed_ones(client: Client) -> None:
    response = await client.put("/v1/otp")
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["allow"]


async def test_an_unexpected_error_is_a_generic_500_that_leaks_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals at 0xdeadbeef")

    monkeypatch.setattr(OtpService, "request", boom)
    response = await client.post("/v1/otp", json={"to": PHONE})
    assert_problem(response, 500, "internal")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert "secret internals" in caplog.text


async def test_a_store_outage_is_a_503_problem_with_retry_after_and_no_internal_text(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: object, **__: object) -> None:
        raise StoreError("write batch failed: OperationalError: database or disk is full")

    monkeypatch.setattr(OtpService, "request", down)
    response = await client.post("/v1/otp", json={"to": PHONE})
    assert_problem(response, 503, "store-unavailable")
    assert response.headers["retry-after"] == "1"
    assert response.json()["retry_after"] == 1
    assert "disk" not in response.text
    assert "OperationalError" not in response.text
