"""A code-key rotation while codes are pending: they still verify, new ones use the new key."""

from __future__ import annotations

from otpgate import codekeys
from otpgate.clock import FrozenClock
from otpgate.core import recipients
from otpgate.core.lifecycle import Change
from otpgate.core.otp import RecipientState
from tests.integration.conftest import PHONE, Client, runtime_of, sent_code

OTHER = "+14155550199"


async def test_codes_made_before_a_rotation_verify_after_it(
    client: Client, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    before_id, before = await sent_code(client)
    kid = await codekeys.rotate(runtime.backend.store, runtime.keyring, clock.now())
    after_id, after = await sent_code(client, OTHER)

    state = await runtime.backend.store.transact(
        recipients.parse(OTHER).key(runtime.keyring.digest_key), _peek)
    assert state is not None and state[:4].hex() == kid

    for otp_id, code in ((before_id, before), (after_id, after)):
        answer = await client.post(f"/v1/otp/{otp_id}/verify", json={"code": code})
        assert answer.json()["status"] == "approved", answer.text
    # and by recipient, a wrong answer against an old-key code still counts as one
    _, right = await sent_code(client, PHONE, purpose="signup")
    await codekeys.rotate(runtime.backend.store, runtime.keyring, clock.now())
    guess = "000000" if right != "000000" else "111111"
    wrong = await client.post("/v1/verify", json={"to": PHONE, "purpose": "signup",
                                                  "code": guess})
    assert wrong.json()["attempts_left"] == 4


def _peek(state: RecipientState | None) -> Change[bytes | None]:
    otp = state.pending.get("default") if state is not None else None
    return Change(result=otp.digest if otp is not None else None)
