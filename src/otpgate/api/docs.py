"""What ``/openapi.json`` (and with it ``/docs``) adds to what Litestar generates: an
example for every request body and every answer, and the list of problem types.

``annotate`` runs once per process, when the document is first rendered.
"""

from __future__ import annotations

from typing import Any

from otpgate.api import problems

OTP_ID = "otp_3q2-7wHk0QdUe1n9Xy5ZbA"
_TIMES = {"expires_at": "2026-01-02T10:05:00Z", "resend_after": "2026-01-02T10:00:30Z"}

PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The body is not JSON, or a parameter cannot be read."),
    "unauthorized": (401, "No API key, or an unknown or revoked one (outside dev mode)."),
    "forbidden": (403, "This key may not do that (an admin route without an admin key, "
                       "any route but request and verify with a client key, a route "
                       "outside the key's scopes), or a provider's receipt whose "
                       "signature does not verify."),
    "cross-origin-refused": (403, "A browser request from another site: allow its origin "
                                  "(OTPGATE_ALLOWED_ORIGINS), or use a client key bound to "
                                  "it (otpgate keys create --client --origin …)."),
    "not-found": (404, "No OTP with this id, or no such route or driver."),
    "method-not-allowed": (405, "The route exists, not with this method."),
    "payload-too-large": (413, "The body is larger than OTPGATE_MAX_BODY_BYTES."),
    "unsupported-media-type": (415, "The body's media type cannot be read."),
    "invalid-request": (422, "A field is missing, of the wrong type, unknown or invalid; "
                             "`field` names it."),
    "invalid-recipient": (422, "`to` is not an E.164 number or an e-mail address."),
    "idempotency-key-reused": (422, "The Idempotency-Key answered another request."),
    "rate-limited": (429, "A send limit, a lockout or a rate rule; `Retry-After` says when "
                          "to try again, `rule` which refused."),
    "pumping": (429, "The number's prefix is blocked for SMS pumping (`rule: pumping`)."),
    "budget": (429, "A daily spend budget (per country or per key) is used up."),
    "geo-blocked": (422, "Codes are not sent to the number's country on this channel "
                         "(`rule: geo`)."),
    "number-type": (422, "Codes are not sent to numbers of this type (premium-rate, pager, "
                         "fixed-line for SMS, ...; `rule: number-type`)."),
    "internal": (500, "Something unexpected; it is logged, and nothing is revealed."),
    "store-unavailable": (503, "The store cannot be reached; try again shortly."),
    "bus-unavailable": (503, "The event bus cannot be reached; try again shortly."),
}
"""Every problem type the API answers with: its status and when."""

_DEFAULT_SLUG = {400: "malformed-request", 401: "unauthorized", 403: "forbidden",
                 404: "not-found", 413: "payload-too-large", 415: "unsupported-media-type",
                 422: "invalid-request", 429: "rate-limited", 503: "store-unavailable"}
_DETAILS = {
    "malformed-request": "request body must be a JSON object (UTF-8)",
    "unauthorized": "an API key is required: Authorization: Bearer <key>",
    "forbidden": "this route needs an admin key (otpgate keys create --admin)",
    "not-found": "no OTP with this id",
    "payload-too-large": "request body is too large",
    "invalid-request": "code_length must be between 6 and 10",
    "invalid-recipient": "not a valid E.164 number (+ and country code) or e-mail address",
    "rate-limited": "too many codes for this recipient; try again later",
    "store-unavailable": "the store cannot be reached",
}

_ACCEPTED = {"id": OTP_ID, "status": "pending", "to": "+1415•••0123", "channels": ["sms"],
             **_TIMES, "send_count": 1, "attempts_left": 5}
_STATUS = {"id": OTP_ID, "status": "pending", "to": "+1415•••0123", "purpose": "login",
           "channels": [{"channel": "sms", "driver": "twilio", "status": "delivered",
                         "attempts": 1, "updated_at": "2026-01-02T10:00:02Z"}],
           "send_count": 1, "attempts_left": 5, "expires_at": _TIMES["expires_at"],
           "created_at": "2026-01-02T10:00:00Z", "reference": "order-42"}
_VERDICTS = {
    "approved": {"summary": "The right code: with a verification token", "value": {
        "id": OTP_ID, "valid": True, "status": "approved",
        "token": "eyJhbGciOiJFZERTQSIsImtpZCI6IkN1Q3VGdlZfcW9RX1lfbmtmbXVZX1VEZ0NyNGU2bFFiUEl"
                 "GeGpHYVpfS0UiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJvdHBnYXRlIiwiYXVkIjoiZGVmYXVsdCJ9."
                 "c2lnbmF0dXJl"}},
    "wrong": {"summary": "A wrong code", "value": {
        "id": OTP_ID, "valid": False, "status": "pending", "attempts_left": 4}},
    "dead": {"summary": "A code that can no longer be used", "value": {
        "id": OTP_ID, "valid": False, "status": "expired"}},
}
_METRICS = ('# HELP otpgate_otps_total OTP lifecycle outcomes …\n# TYPE otpgate_otps_total '
            'counter\notpgate_otps_total{country="US",outcome="approved"} 42.0\n')
_DASHBOARD = {"time": 1767348000.0, "requests": 1234.0,
              "sends": [{"driver": "twilio", "outcome": "sent", "value": 40.0}],
              "queues": [{"subscription": "dispatch.twilio", "depth": 2,
                          "oldest_due_age": 0.4}],
              "conversion": [{"country": "US", "requested": 50.0, "approved": 42.0,
                              "rate": 0.84}],
              "breakers": [{"driver": "twilio", "state": "closed"}],
              "blocked_prefixes": [], "rule_blocks": [], "dead_letters": 0.0}

ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    ("requestOtp", "202"): {"example": _ACCEPTED},
    ("verifyOtp", "200"): {"examples": _VERDICTS},
    ("verifyRecipient", "200"): {"examples": _VERDICTS},
    ("getOtp", "200"): {"example": _STATUS},
    ("cancelOtp", "200"): {"example": {**_STATUS, "status": "canceled"}},
    ("devMessages", "200"): {"example": [{
        "id": "cap_8c1d2e", "otp_id": OTP_ID, "to": "+14155550123", "channel": "sms",
        "body": "Your otpgate code is 123456.", "sent_at": "2026-01-02T10:00:01Z"}]},
    ("health", "200"): {"example": {"status": "ok"}},
    ("jwks", "200"): {"example": {"keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "use": "sig", "alg": "EdDSA", "kid": "CuCuFvV_qoQ_Y_nkfmuY_UDgCr4e6lQbPIFxjGaZ_KE"}]}},
    ("ready", "200"): {"example": {"status": "ok"}},
    ("getReceipt", "200"): {"example": {"received": True, "moved": 1}},
    ("postReceipt", "200"): {"example": {"received": True, "moved": 1}},
    ("metrics", "200"): {"example": _METRICS},
    ("dashboardData", "200"): {"example": _DASHBOARD},
    ("unlockRecipient", "200"): {"example": {"to": "+1415•••0123", "was_locked": True,
                                             "failures": 100}},
}
"""Examples of the answers that are not problems, by operation id and status."""

BODIES: dict[str, dict[str, Any]] = {
    "requestOtp": {"examples": {
        "sms": {"summary": "A code by SMS", "value": {
            "to": "+14155550123", "purpose": "login", "reference": "order-42"}},
        "email": {"summary": "A code by e-mail, 8 digits", "value": {
            "to": "jane@example.com", "code_length": 8, "ttl_seconds": 600}},
        "fan-out": {"summary": "SMS and WhatsApp at once", "value": {
            "to": "+14155550123", "channels": ["sms", "whatsapp"]}}}},
    "verifyOtp": {"example": {"code": "123456"}},
    "verifyRecipient": {"example": {"to": "+14155550123", "purpose": "login",
                                    "code": "123456"}},
    "unlockRecipient": {"example": {"to": "+14155550123"}},
}
_ROUTE_SLUGS = {("requestOtp", "422"): ("invalid-request", "invalid-recipient"),
                ("requestOtp", "429"): ("rate-limited",)}


def problem_example(slug: str) -> dict[str, Any]:
    status, _ = PROBLEM_TYPES[slug]
    body: dict[str, Any] = {
        "type": problems.TYPE_BASE + slug, "title": problems.title_of(slug),
        "status": status, "detail": _DETAILS.get(slug, PROBLEM_TYPES[slug][1])}
    if slug in ("invalid-request", "invalid-recipient"):
        body["field"] = "code_length" if slug == "invalid-request" else "to"
    if slug == "rate-limited":
        body["retry_after"] = 30
    return body


def _problem_examples(operation_id: str, status: str) -> dict[str, Any]:
    slugs = _ROUTE_SLUGS.get((operation_id, status)) or (_DEFAULT_SLUG[int(status)],)
    return {slug: {"summary": PROBLEM_TYPES[slug][1], "value": problem_example(slug)}
            for slug in slugs}


def _types_table() -> str:
    rows = "\n".join(f"| `{slug}` | {status} | {problems.title_of(slug)} | {when} |"
                     for slug, (status, when) in PROBLEM_TYPES.items())
    return ("\n\n## Problem types\n\nEvery error is `application/problem+json` (RFC 9457) "
            f"with `type` = `{problems.TYPE_BASE}<slug>`:\n\n"
            "| slug | status | title | when |\n|---|---|---|---|\n" + rows)


def annotate(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with examples and the problem types (changed in place, and returned)."""
    info = document.setdefault("info", {})
    info["description"] = info.get("description", "") + _types_table()
    problem = document.get("components", {}).get("schemas", {}).get("Problem")
    if problem is not None:
        problem.setdefault("properties", {}).setdefault("type", {})["examples"] = [
            problems.TYPE_BASE + slug for slug in PROBLEM_TYPES]
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "operationId" in operation:
                _annotate(operation)
    return document


def _annotate(operation: dict[str, Any]) -> None:
    name = operation["operationId"]
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and name in BODIES:
        body.update(BODIES[name])
    for status, answer in operation.get("responses", {}).items():
        for media, content in answer.get("content", {}).items():
            if media == problems.MEDIA_TYPE or status.startswith(("4", "5")):
                content["examples"] = _problem_examples(name, status)
            elif (name, status) in ANSWERS:
                content.update(ANSWERS[(name, status)])
