"""What the compatibility surfaces ask of the OtpService: codes another service made
(``deliver``), custom codes, approval without an answer, a recipient's standing, and the
address kept sealed."""

from __future__ import annotations

import pytest

from otpgate.backends import Backend
from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Outcome
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.crypto import seal_aad
from otpgate.errors import InvalidRequest, RateLimited
from otpgate.events import EventType
from otpgate.service import DeliverRequest, OtpRequest, OtpService
from tests.unit.test_service import TO, Codes, backend, clock, codegen, gateway, make_gateway

__all__ = ["backend", "clock", "codegen", "gateway"]  # fixtures

THEIRS = "573912"


def handed(code: str = THEIRS, **fields: str) -> DeliverRequest:
    return DeliverRequest(to=TO, code=code, channel="sms", purpose="supabase", **fields)


def dispatches(backend: Backend) -> list[dict[str, object]]:
    assert isinstance(backend.bus, MemoryBus)
    return [e.data for e in backend.bus.log if e.type == EventType.DISPATCH]


async def test_a_handed_over_code_is_sealed_into_its_dispatch_and_kept_as_no_digest(
        gateway: OtpService, backend: Backend) -> None:
    got = await gateway.deliver(handed())
    assert got.outcome is Outcome.CREATED and got.otp.external
    [data] = dispatches(backend)
    assert THEIRS not in str(data)
    opened = gateway.keyring.open(str(data["sealed"]), seal_aad(got.otp.id, 1))
    assert (opened.to, opened.code, opened.body) == (TO, THEIRS, None)


async def test_the_same_hand_over_again_is_coalesced_and_a_new_code_goes_out_at_once(
        gateway: OtpService, backend: Backend, clock: FrozenClock) -> None:
    first = await gateway.deliver(handed())
    again = await gateway.deliver(handed())
    assert again.outcome is Outcome.COALESCED and again.otp.id == first.otp.id
    clock.advance(1)  # well before resend_after
    fresh = await gateway.deliver(handed("680244"))
    assert fresh.outcome is Outcome.RESENT and fresh.otp.send_count == 2
    assert len(dispatches(backend)) == 2


async def test_handed_over_codes_count_against_the_send_limit(
        backend: Backend, clock: FrozenClock, codegen: Codes) -> None:
    gateway = make_gateway(backend, clock, codegen, policy=Policy(max_sends=2))
    await gateway.deliver(handed("100001"))
    await gateway.deliver(handed("100002"))
    with pytest.raises(RateLimited):
        await gateway.deliver(handed("100003"))


async def test_a_handed_over_code_is_never_verified_and_no_answer_to_it_counts(
        gateway: OtpService) -> None:
    got = await gateway.deliver(handed())
    with pytest.raises(InvalidRequest):
        await gateway.verify(got.otp.id, THEIRS)
    for _ in range(3):
        answer = await gateway.verify_recipient(TO, "supabase", THEIRS)
        assert (answer.valid, answer.id) == (False, None)
    kept = await gateway.get(got.otp.id)
    assert (kept.status, kept.failed_attempts) == (Status.PENDING, 0)
    with pytest.raises(InvalidRequest):
        await gateway.approve(got.otp.id)
    assert (await gateway.standing(TO, "supabase")).otp is None


async def test_otpgates_own_request_does_not_coalesce_with_a_handed_over_code(
        gateway: OtpService) -> None:
    theirs = await gateway.deliver(handed())
    ours = await gateway.request(OtpRequest(to=TO, purpose="supabase"))
    assert ours.outcome is Outcome.RESENT and not ours.otp.external
    assert ours.otp.id == theirs.otp.id
    assert (await gateway.verify(ours.otp.id, "123456")).status is Status.APPROVED


@pytest.mark.parametrize(("fields", "field"), [
    ({"code": None}, "code"),
    ({"code": "12ab"}, "code"),
    ({"body": "hi", "channel": "voice"}, "channel"),
    ({"body": "\x00"}, "body"),
    ({"body": "x" * 1601}, "body"),
])
async def test_a_hand_over_without_a_proper_code_or_text_is_refused(
        gateway: OtpService, fields: dict[str, str | None], field: str) -> None:
    asked = {"to": TO, "code": THEIRS, "channel": "sms", **fields}
    with pytest.raises(InvalidRequest) as err:
        await gateway.deliver(DeliverRequest(**asked))
    assert err.value.field == field


async def test_a_whole_message_travels_sealed_with_its_subject_for_email(
        gateway: OtpService, backend: Backend) -> None:
    got = await gateway.deliver(DeliverRequest(to="ada@example.com", body="Code: 573912",
                                               subject="Your code"))
    [data] = dispatches(backend)
    opened = gateway.keyring.open(str(data["sealed"]), seal_aad(got.otp.id, 1))
    assert (opened.body, opened.subject, data["channel"]) == ("Code: 573912", "Your code",
                                                              "email")


async def test_a_custom_code_is_the_code_sent_and_verified(gateway: OtpService,
                                                           backend: Backend) -> None:
    got = await gateway.request(OtpRequest(to=TO, custom_code="48291077"))
    assert got.otp.code_length == 8
    [data] = dispatches(backend)
    assert gateway.keyring.open(str(data["sealed"]), seal_aad(got.otp.id, 1)).code == \
        "48291077"
    assert (await gateway.verify(got.otp.id, "48291077")).status is Status.APPROVED


@pytest.mark.parametrize(("code", "length"), [("4829", None), ("482910", 8), ("48 291", None)])
async def test_a_custom_code_is_refused_when_the_policy_or_its_length_says_no(
        gateway: OtpService, code: str, length: int | None) -> None:
    with pytest.raises(InvalidRequest):
        await gateway.request(OtpRequest(to=TO, custom_code=code, code_length=length))


async def test_a_brand_named_by_the_request_travels_in_the_dispatch(
        gateway: OtpService, backend: Backend) -> None:
    await gateway.request(OtpRequest(to=TO, brand="Acme Pay"))
    assert dispatches(backend)[0]["brand"] == "Acme Pay"
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=TO, purpose="other", brand="x" * 31))
    assert err.value.field == "brand"


async def test_approval_without_an_answer_approves_a_pending_code_once(
        gateway: OtpService, backend: Backend) -> None:
    got = await gateway.request(OtpRequest(to=TO))
    assert (await gateway.approve(got.otp.id)).status is Status.APPROVED
    assert (await gateway.approve(got.otp.id)).status is Status.APPROVED
    assert isinstance(backend.bus, MemoryBus)
    assert [e.type for e in backend.bus.log].count(EventType.APPROVED) == 1


async def test_standing_tells_a_live_code_a_spent_one_and_none(gateway: OtpService) -> None:
    assert (await gateway.standing(TO, "login")).otp is None
    got = await gateway.request(OtpRequest(to=TO, purpose="login"))
    standing = await gateway.standing(TO, "login")
    assert standing.otp is not None and standing.otp.id == got.otp.id
    for _ in range(5):
        await gateway.verify(got.otp.id, "000000")
    assert await gateway.standing(TO, "login") == type(standing)(None, spent=True)
    assert (await gateway.standing(TO, "other")).spent is False


async def test_the_address_is_kept_sealed_only_when_asked_for(gateway: OtpService) -> None:
    kept = await gateway.request(OtpRequest(to=TO, purpose="a"), keep_address=True)
    plain = await gateway.request(OtpRequest(to=TO, purpose="b"))
    assert gateway.address(kept.otp) == TO and TO not in kept.otp.address
    assert gateway.address(plain.otp) is None
