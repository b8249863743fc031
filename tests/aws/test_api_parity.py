"""The Lambda API answers as the ASGI app does: same statuses, headers that matter and
bodies, since it is the same app."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from litestar.testing import TestClient

from otpgate.api.app import create_app
from otpgate.aws.host import settings_from
from tests.aws.conftest import Deployment, http_event
from tests.aws.test_lambda_flow import api_key


def body_of(response: dict[str, Any]) -> bytes:
    raw = response.get("body", "")
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()


def test_the_lambda_handler_answers_every_request_exactly_as_the_asgi_app(
    deployment: Deployment,
) -> None:
    api = deployment.api()
    key = api_key(api)
    loop = asyncio.new_event_loop()
    try:
        settings = settings_from(deployment.env, loop)
    finally:
        loop.close()
    requests: list[tuple[str, str, Any, str | None, str]] = [
        ("GET", "/healthz", None, None, ""),
        ("GET", "/readyz", None, None, ""),
        ("GET", "/openapi.json", None, None, ""),
        ("GET", "/no/such/page", None, None, ""),
        ("POST", "/v1/otp", {"to": "+14155550123"}, None, ""),
        ("POST", "/v1/otp", "{not json", key, ""),
        ("POST", "/v1/otp", {"to": "12"}, key, ""),
        ("POST", "/v1/otp", {"to": "+14155550123", "colour": "red"}, key, ""),
        ("GET", "/v1/otp/otp_AAAAAAAAAAAAAAAAAAAAAA", None, key, ""),
        ("POST", "/v1/otp/otp_AAAAAAAAAAAAAAAAAAAAAA/verify", {"code": "123456"}, key, ""),
        ("GET", "/v1/dev/messages", None, key, "to=%2B19999999999"),
    ]
    with TestClient(create_app(settings)) as asgi:
        for method, path, body, caller, query in requests:
            lambda_answer = api.invoke(http_event(method, path, body, key=caller,
                                                  query=query), None)
            headers = {"authorization": f"Bearer {caller}"} if caller else {}
            content = None if body is None else body if isinstance(body, str) else \
                json.dumps(body)
            if content is not None:
                headers["content-type"] = "application/json"
            asgi_answer = asgi.request(method, path + (f"?{query}" if query else ""),
                                       content=content, headers=headers)
            where = f"{method} {path}"
            assert lambda_answer["statusCode"] == asgi_answer.status_code, where
            assert lambda_answer["headers"]["content-type"] == \
                asgi_answer.headers["content-type"], where
            assert body_of(lambda_answer) == asgi_answer.content, where
