"""Verification tokens: an approved answer carries a JWT that the JWKS verifies — checked
with two independent verifiers (joserfc and PyJWT) — and that fails when tampered with or
expired."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from joserfc import errors as jose_errors
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from otpgate import apikeys, codekeys
from otpgate.clock import FrozenClock
from otpgate.errors import ConfigurationError
from otpgate.runtime import Runtime
from otpgate.tokens import Tokens
from tests.integration.conftest import (
    PHONE,
    START,
    Client,
    code_in,
    runtime_of,
    sent_code,
    settings,
    wait_for_messages,
)

JWKS = "/.well-known/jwks.json"
NO_WALL_CLOCK = {"verify_exp": False, "verify_iat": False}
"""PyJWT checks times against the wall clock; the tests' clock is frozen elsewhere."""
# The contract names the algorithm "EdDSA" (RFC 8037); joserfc warns that RFC 9864 now
# prefers the fully specified "Ed25519" for the same signatures.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:Warning")


async def approve(client: Client, to: str = PHONE, **fields: Any) -> dict[str, Any]:
    otp_id, code = await sent_code(client, to, **fields)
    answer = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == "approved" and body["valid"] is True
    return body


async def key_set(client: Client) -> KeySet:
    response = await client.get(JWKS)
    assert response.status_code == 200
    return KeySet.import_key_set(response.json())


def claims_at(token: str, keys: KeySet, now: float, **expected: Any) -> dict[str, Any]:
    """The claims of ``token`` if joserfc verifies its signature and its claims at ``now``."""
    decoded = jose_jwt.decode(token, keys, algorithms=["EdDSA"])
    registry = jose_jwt.JWTClaimsRegistry(now=int(now), **{
        name: {"essential": True, "value": value} for name, value in expected.items()},
        exp={"essential": True}, iat={"essential": True})
    registry.validate(decoded.claims)
    return dict(decoded.claims)


async def test_an_approval_carries_a_token_the_jwks_verifies(client: Client) -> None:
    body = await approve(client, purpose="login")
    token = body["token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "EdDSA" and header["kid"]
    keys = (await client.get(JWKS)).json()["keys"]
    assert [k["kid"] for k in keys] == [header["kid"]]
    assert keys[0] | {"x": "…"} == {"kty": "OKP", "crv": "Ed25519", "x": "…", "use": "sig",
                                    "alg": "EdDSA", "kid": header["kid"]}

    claims = claims_at(token, await key_set(client), START, iss="otpgate", aud="default",
                       purpose="login", otp_id=body["id"])
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] == int(START)

    # PyJWT, from the same JWKS, agrees
    signing = pyjwt.PyJWKSet.from_dict((await client.get(JWKS)).json())[header["kid"]]
    again = pyjwt.decode(token, signing.key, algorithms=["EdDSA"], audience="default",
                         issuer="otpgate", options=NO_WALL_CLOCK)
    assert again == claims


async def test_the_subject_is_a_keyed_hmac_never_the_number(client: Client) -> None:
    first = (await approve(client))["token"]
    second = (await approve(client, purpose="other"))["token"]
    other = (await approve(client, "+14155550199"))["token"]
    subs = [pyjwt.decode(t, options={"verify_signature": False})["sub"]
            for t in (first, second, other)]
    assert subs[0] == subs[1] != subs[2]
    digits = PHONE.lstrip("+")
    plain = [PHONE, digits, hashlib.sha256(PHONE.encode()).hexdigest(),
             base64.urlsafe_b64encode(hashlib.sha256(PHONE.encode()).digest()).decode()
             .rstrip("=")]
    for sub in subs[:1]:
        assert len(sub) == 43 and set(sub) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert sub not in plain and digits not in sub and "0123" not in sub
    for token in (first, second, other):
        assert digits not in base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()


async def test_a_tampered_token_fails(client: Client) -> None:
    token = (await approve(client))["token"]
    keys = await key_set(client)
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_payload = base64.urlsafe_b64encode(json.dumps(
        {**claims, "purpose": "admin"}).encode()).decode().rstrip("=")
    unsigned_head = base64.urlsafe_b64encode(json.dumps(
        {"alg": "none", "typ": "JWT"}).encode()).decode().rstrip("=")
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BA")
    for forged in (f"{head}.{forged_payload}.{signature}", f"{head}.{payload}.{flipped}",
                   f"{unsigned_head}.{payload}."):
        with pytest.raises(jose_errors.JoseError):
            claims_at(forged, keys, START)
        with pytest.raises(pyjwt.PyJWTError):
            pyjwt.decode(forged, pyjwt.PyJWKSet.from_dict(
                (await client.get(JWKS)).json()).keys[0].key, algorithms=["EdDSA"],
                audience="default", options=NO_WALL_CLOCK)


async def test_a_token_fails_once_expired(client: Client) -> None:
    token = (await approve(client))["token"]
    keys = await key_set(client)
    assert claims_at(token, keys, START + 299)
    with pytest.raises(jose_errors.ExpiredTokenError):
        claims_at(token, keys, START + 301)
    # PyJWT checks against the wall clock: a token issued in 2001 has long expired there
    runtime = runtime_of(client)
    old = Tokens(runtime.keyring, FrozenClock(1_000_000_000.0)).issue(
        otp_id="otp_x", purpose="default", recipient="r", tenant="default")
    with pytest.raises(pyjwt.ExpiredSignatureError):
        pyjwt.decode(old, pyjwt.PyJWKSet.from_dict(
            (await client.get(JWKS)).json()).keys[0].key, algorithms=["EdDSA"],
            audience="default")


async def test_no_answer_but_an_approval_carries_a_token(client: Client) -> None:
    otp_id, code = await sent_code(client)
    wrong = "000000" if code != "000000" else "111111"
    answers = [await client.post(f"/v1/otp/{otp_id}/verify", json={"code": wrong}),
               await client.post("/v1/verify", json={"to": PHONE, "code": wrong}),
               await client.post("/v1/verify", json={"to": "+14155550100", "code": wrong})]
    assert (await client.post(f"/v1/otp/{otp_id}/verify",
                              json={"code": code})).json()["token"]
    answers.append(await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code}))
    for answer in answers:
        assert "token" not in answer.json(), answer.text
    # by recipient, an approval carries one too
    _, code = await sent_code(client, purpose="pay")
    by_to = await client.post("/v1/verify", json={"to": PHONE, "purpose": "pay",
                                                  "code": code})
    assert by_to.json()["status"] == "approved" and by_to.json()["token"]


async def test_issuer_ttl_and_audience_follow_the_settings_and_the_key(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(public_url="https://otp.example.com/", token_ttl=600) as client:
        store = runtime_of(client).backend.store
        _, acme = await apikeys.create(store, "acme", START, tenant="acme", kind="client")
        made = await client.post("/v1/otp", json={"to": PHONE},
                                 headers={"authorization": f"Bearer {acme}"})
        assert made.status_code == 202, made.text
        [message] = await wait_for_messages(client, PHONE)
        answer = await client.post(f"/v1/otp/{made.json()['id']}/verify",
                                   json={"code": code_in(message["body"], 6)},
                                   headers={"authorization": f"Bearer {acme}"})
        token = answer.json()["token"]
        claims = claims_at(token, await key_set(client), START,
                           iss="https://otp.example.com", aud="acme")
        assert claims["exp"] - claims["iat"] == 600
        # the key set needs no key, and may be cached a little
        assert (await client.get(JWKS)).headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize("ttl", [59, 601])
async def test_a_token_lifetime_out_of_bounds_stops_the_start(
    tmp_path: Path, clock: FrozenClock, ttl: int,
) -> None:
    with pytest.raises(ConfigurationError, match="OTPGATE_TOKEN_TTL"):
        await Runtime.open(settings(tmp_path, token_ttl=ttl), clock)


async def test_a_rotation_signs_with_a_new_kid_and_keeps_the_old_key_until_retired(
    client: Client, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    old = (await approve(client))["token"]
    await codekeys.rotate(runtime.backend.store, runtime.keyring, clock.now())
    new = (await approve(client, purpose="again"))["token"]
    old_kid, new_kid = (pyjwt.get_unverified_header(t)["kid"] for t in (old, new))
    assert old_kid != new_kid
    listed = [k["kid"] for k in (await client.get(JWKS)).json()["keys"]]
    assert listed == [new_kid, old_kid]
    keys = await key_set(client)
    assert claims_at(old, keys, clock.now()) and claims_at(new, keys, clock.now())

    clock.advance(codekeys.hold(runtime.settings.policy.max_ttl))
    await codekeys.retire(runtime.backend.store, runtime.keyring,
                          runtime.keyring.root_key.kid.hex(), clock.now(),
                          runtime.settings.policy.max_ttl)
    assert [k["kid"] for k in (await client.get(JWKS)).json()["keys"]] == [new_kid]
    with pytest.raises(jose_errors.JoseError):
        jose_jwt.decode(old, await key_set(client), algorithms=["EdDSA"])
