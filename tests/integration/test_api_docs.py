"""``/openapi.json`` documents every route with examples and every problem type."""

from __future__ import annotations

from typing import Any

from otpgate import errors
from otpgate.api import problems
from otpgate.api.docs import PROBLEM_TYPES
from tests.integration.conftest import Client


def subclasses(kind: type[errors.OtpgateError]) -> list[type[errors.OtpgateError]]:
    found = []
    for sub in kind.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_every_answer_and_every_request_body_has_an_example(client: Client) -> None:
    doc = await document(client)
    checked = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                assert "example" in media or "examples" in media, (method, path)
            for status, answer in operation["responses"].items():
                for media in answer.get("content", {}).values():
                    assert "example" in media or "examples" in media, (method, path, status)
                    checked += 1
    assert checked > 40


async def test_problem_examples_are_problems_of_their_status(client: Client) -> None:
    doc = await document(client)
    answers = doc["paths"]["/v1/otp"]["post"]["responses"]
    for status in ("400", "401", "413", "422", "429", "503"):
        for example in answers[status]["content"][problems.MEDIA_TYPE]["examples"].values():
            value = example["value"]
            assert value["status"] == int(status)
            assert value["type"].startswith(problems.TYPE_BASE)
    assert set(answers["422"]["content"][problems.MEDIA_TYPE]["examples"]) == {
        "invalid-request", "invalid-recipient"}


async def test_every_problem_type_the_api_answers_with_is_documented(client: Client) -> None:
    description = (await document(client))["info"]["description"]
    answered = {cls.slug for cls in subclasses(errors.OtpgateError)
                if problems.status_of(cls.__new__(cls)) != 500}
    assert answered <= set(PROBLEM_TYPES), answered - set(PROBLEM_TYPES)
    for slug, (status, _) in PROBLEM_TYPES.items():
        assert f"| `{slug}` | {status} |" in description
    for slug in ("malformed-request", "method-not-allowed", "payload-too-large"):
        assert slug in PROBLEM_TYPES
