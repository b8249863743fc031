"""The OtpService over the in-memory backend: validation, channels, verification, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from otpgate.backends import Backend, open_memory
from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Outcome
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring
from otpgate.errors import InvalidRecipient, InvalidRequest, NotFound, RateLimited
from otpgate.events import EventType
from otpgate.housekeeping import Housekeeping
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService, VerifyAnswer

TO = "+14155550123"
CODE = "123456"
ROUTES = {"sms": ("capture://",), "voice": ("capture://",), "email": ("capture://",)}


class Codes:
    """A code generator that hands out ``CODE`` unless told otherwise."""

    def __init__(self) -> None:
        self.next = CODE

    def __call__(self, length: int) -> str:
        return self.next[:length].rjust(length, "0")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def backend(clock: FrozenClock) -> AsyncIterator[Backend]:
    opened = await open_memory("memory://", clock)
    yield opened
    await opened.close()


@pytest.fixture
def codegen() -> Codes:
    return Codes()


def make_gateway(backend: Backend, clock: FrozenClock, codegen: Codes,
                 routes: dict[str, tuple[str, ...]] | None = None,
                 policy: Policy | None = None) -> OtpService:
    return OtpService(backend.store, clock,
                      Keyring.from_secret(b"service-test-secret-0123456789ab"),
                      policy or Policy(), StaticRouter(ROUTES if routes is None else routes),
                      codegen=codegen)


@pytest.fixture
def gateway(backend: Backend, clock: FrozenClock, codegen: Codes) -> OtpService:
    return make_gateway(backend, clock, codegen)


def bus_types(backend: Backend) -> list[str]:
    assert isinstance(backend.bus, MemoryBus)
    return [e.type for e in backend.bus.log]


async def test_a_phone_number_is_reached_by_sms_by_default(gateway: OtpService) -> None:
    got = await gateway.request(OtpRequest(to="+1 415 555 0123"))
    assert got.outcome is Outcome.CREATED
    assert got.otp.channels == ["sms"]
    assert got.otp.to_masked == "+1415•••0123"
    assert got.otp.purpose == "default"
    assert got.otp.locale == "en"
    assert got.otp.code_length == 6


async def test_an_email_address_is_reached_by_email_by_default(gateway: OtpService) -> None:
    got = await gateway.request(OtpRequest(to="jane@example.com"))
    assert got.otp.channels == ["email"]
    assert got.otp.to_masked == "j•••@example.com"


async def test_several_channels_can_be_asked_for_at_once(gateway: OtpService,
                                                         backend: Backend) -> None:
    got = await gateway.request(OtpRequest(to=TO, channels=["sms", "voice"]))
    assert got.otp.channels == ["sms", "voice"]
    assert bus_types(backend).count(EventType.DISPATCH) == 2


@pytest.mark.parametrize(("to", "channel"), [(TO, "email"), ("jane@example.com", "sms"),
                                             ("jane@example.com", "voice")])
async def test_a_channel_that_cannot_reach_the_recipient_is_refused(
    gateway: OtpService, to: str, channel: str,
) -> None:
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=to, channel=channel))
    assert err.value.field == "channel"


@pytest.mark.parametrize("channel", ["pigeon", "", "SMS"])
async def test_an_unknown_channel_is_refused(gateway: OtpService, channel: str) -> None:
    with pytest.raises(InvalidRequest):
        await gateway.request(OtpRequest(to=TO, channel=channel))


async def test_a_channel_without_a_configured_driver_is_refused(
    backend: Backend, clock: FrozenClock, codegen: Codes,
) -> None:
    gateway = make_gateway(backend, clock, codegen, routes={"sms": ("capture://",)})
    with pytest.raises(InvalidRequest, match="no driver") as err:
        await gateway.request(OtpRequest(to=TO, channel="voice"))
    assert err.value.field == "channel"
    with pytest.raises(InvalidRequest, match="no driver"):
        await gateway.request(OtpRequest(to="jane@example.com"))


async def test_channel_and_channels_together_are_refused(gateway: OtpService) -> None:
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=TO, channel="sms", channels=["sms"]))
    assert err.value.field == "channels"


@pytest.mark.parametrize("channels", [["sms", "sms"], [], ["sms", "voice", "sms"]])
async def test_channel_lists_that_are_empty_or_repeat_themselves_are_refused(
    gateway: OtpService, channels: list[str],
) -> None:
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=TO, channels=channels))
    assert err.value.field == "channels"


async def test_a_refused_request_sends_nothing(gateway: OtpService, backend: Backend) -> None:
    with pytest.raises(InvalidRequest):
        await gateway.request(OtpRequest(to=TO, channel="email"))
    assert bus_types(backend) == []


@pytest.mark.parametrize("purpose", ["login", "a", "reset.password-v2_x", "x" * 64])
async def test_well_formed_purposes_are_accepted(gateway: OtpService, purpose: str) -> None:
    assert (await gateway.request(OtpRequest(to=TO, purpose=purpose))).otp.purpose == purpose


@pytest.mark.parametrize("purpose", ["", "Login", "log in", "x" * 65, "login\n", "café", "a/b"])
async def test_malformed_purposes_are_refused(gateway: OtpService, purpose: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=TO, purpose=purpose))
    assert err.value.field == "purpose"


@pytest.mark.parametrize("locale", ["en", "pt-BR", "fil"])
async def test_well_formed_locales_are_accepted(gateway: OtpService, locale: str) -> None:
    assert (await gateway.request(OtpRequest(to=TO, locale=locale))).otp.locale == locale


@pytest.mark.parametrize("locale", ["", "EN", "pt_BR", "pt-br", "english", "e", "en-US\n"])
async def test_malformed_locales_are_refused(gateway: OtpService, locale: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=TO, locale=locale))
    assert err.value.field == "locale"


async def test_a_printable_reference_is_kept(gateway: OtpService) -> None:
    got = await gateway.request(OtpRequest(to=TO, reference="order-42 #7"))
    assert got.otp.reference == "order-42 #7"


@pytest.mark.parametrize("reference", ["", "x" * 129, "line\nbreak", "tab\there", "café"])
async def test_malformed_references_are_refused(gateway: OtpService, reference: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        await gateway.request(OtpRequest(to=TO, reference=reference))
    assert err.value.field == "reference"


async def test_code_length_and_ttl_are_checked_and_used(gateway: OtpService,
                                                        clock: FrozenClock) -> None:
    got = await gateway.request(OtpRequest(to=TO, code_length=8, ttl_seconds=60))
    assert got.otp.code_length == 8
    assert got.otp.expires_at == clock.now() + 60
    with pytest.raises(InvalidRequest):
        await gateway.request(OtpRequest(to=TO, purpose="b", code_length=11))
    with pytest.raises(InvalidRequest):
        await gateway.request(OtpRequest(to=TO, purpose="c", ttl_seconds=10))


async def test_invalid_recipients_are_refused(gateway: OtpService) -> None:
    with pytest.raises(InvalidRecipient):
        await gateway.request(OtpRequest(to="4155550123"))
    got = await gateway.request(OtpRequest(to="4155550123", country="US"))
    assert got.otp.to_masked == "+1415•••0123"


async def test_the_right_code_approves_once(gateway: OtpService) -> None:
    otp = (await gateway.request(OtpRequest(to=TO))).otp
    assert await gateway.verify(otp.id, CODE) == VerifyAnswer(otp.id, True, Status.APPROVED)
    assert await gateway.verify(otp.id, CODE) == VerifyAnswer(otp.id, False, Status.APPROVED)


async def test_a_wrong_code_answers_with_the_attempts_left(gateway: OtpService) -> None:
    otp = (await gateway.request(OtpRequest(to=TO))).otp
    assert await gateway.verify(otp.id, "000000") == VerifyAnswer(otp.id, False,
                                                                  Status.PENDING, 4)


@pytest.mark.parametrize("otp_id", ["otp_" + "A" * 22, "nope", "", "otp_", "otp_" + "A" * 23,
                                    "otp_" + "A" * 21 + "!", "../otp_" + "A" * 22])
async def test_verifying_an_unknown_or_malformed_id_is_not_found(gateway: OtpService,
                                                                 otp_id: str) -> None:
    with pytest.raises(NotFound):
        await gateway.verify(otp_id, CODE)


async def test_a_malformed_code_is_refused_before_anything_is_counted(gateway: OtpService) -> None:
    otp = (await gateway.request(OtpRequest(to=TO))).otp
    with pytest.raises(InvalidRequest):
        await gateway.verify(otp.id, "１２３４５６")
    assert await gateway.verify(otp.id, "000000") == VerifyAnswer(otp.id, False,
                                                                  Status.PENDING, 4)


async def test_verifying_by_recipient_approves_the_pending_code(gateway: OtpService) -> None:
    otp = (await gateway.request(OtpRequest(to=TO, purpose="login"))).otp
    answer = await gateway.verify_recipient("+1 (415) 555-0123", "login", CODE)
    assert answer == VerifyAnswer(otp.id, True, Status.APPROVED)


async def test_verifying_a_recipient_with_no_code_answers_like_a_wrong_code(
    gateway: OtpService,
) -> None:
    other = "+14155550199"
    await gateway.request(OtpRequest(to=other, purpose="login"))
    wrong = await gateway.verify_recipient(other, "login", "000000")
    missing = await gateway.verify_recipient(TO, "login", "000000")
    assert missing == wrong == VerifyAnswer(None, False, Status.PENDING, 4)


async def test_fifty_concurrent_right_answers_approve_exactly_once(
    gateway: OtpService, backend: Backend,
) -> None:
    otp = (await gateway.request(OtpRequest(to=TO))).otp
    answers = await asyncio.gather(*(gateway.verify(otp.id, CODE) for _ in range(50)))
    assert sum(a.valid for a in answers) == 1
    assert all(a.status is Status.APPROVED and a.id == otp.id for a in answers)
    assert bus_types(backend).count(EventType.APPROVED) == 1


async def test_fifty_concurrent_right_answers_by_recipient_approve_exactly_once(
    gateway: OtpService,
) -> None:
    await gateway.request(OtpRequest(to=TO))
    answers = await asyncio.gather(*(gateway.verify_recipient(TO, None, CODE)
                                     for _ in range(50)))
    assert sum(a.valid for a in answers) == 1


async def test_status_expires_an_overdue_pending_code(gateway: OtpService, clock: FrozenClock,
                                                      backend: Backend) -> None:
    otp = (await gateway.request(OtpRequest(to=TO, ttl_seconds=60))).otp
    clock.advance(59)
    assert (await gateway.status(otp.id))[0].status is Status.PENDING
    clock.advance(1)
    current, deliveries = await gateway.status(otp.id)
    assert current.status is Status.EXPIRED
    assert deliveries == []
    assert bus_types(backend)[-1] == EventType.EXPIRED
    assert await gateway.verify(otp.id, CODE) == VerifyAnswer(otp.id, False, Status.EXPIRED)


async def test_verifying_by_id_after_expiry_reports_expired_without_a_status_call(
    gateway: OtpService, clock: FrozenClock,
) -> None:
    otp = (await gateway.request(OtpRequest(to=TO, ttl_seconds=60))).otp
    clock.advance(60)
    assert await gateway.verify(otp.id, CODE) == VerifyAnswer(otp.id, False, Status.EXPIRED)


async def test_expire_due_expires_every_overdue_code_and_only_those(
    gateway: OtpService, clock: FrozenClock, backend: Backend,
) -> None:
    short = [(await gateway.request(OtpRequest(to=f"+1415555{n:04d}", ttl_seconds=60))).otp
             for n in range(3)]
    long = (await gateway.request(OtpRequest(to="jane@example.com", ttl_seconds=600))).otp
    sweeps = Housekeeping(backend.store, clock, gateway.policy)
    assert await sweeps.expire_due() == 0
    clock.advance(60)
    assert await sweeps.expire_due() == 3
    assert await sweeps.expire_due() == 0
    for otp in short:
        assert (await gateway.status(otp.id))[0].status is Status.EXPIRED
    assert (await gateway.status(long.id))[0].status is Status.PENDING
    assert bus_types(backend).count(EventType.EXPIRED) == 3


async def test_cancel_kills_a_pending_code_and_leaves_dead_ones_as_they_are(
    gateway: OtpService,
) -> None:
    otp = (await gateway.request(OtpRequest(to=TO))).otp
    assert (await gateway.cancel(otp.id)).status is Status.CANCELED
    assert (await gateway.cancel(otp.id)).status is Status.CANCELED
    assert await gateway.verify(otp.id, CODE) == VerifyAnswer(otp.id, False, Status.CANCELED)
    with pytest.raises(NotFound):
        await gateway.cancel("otp_" + "Z" * 22)


async def test_a_coalesced_request_sends_nothing_new(gateway: OtpService, backend: Backend,
                                                     clock: FrozenClock) -> None:
    first = await gateway.request(OtpRequest(to=TO))
    sent = len(bus_types(backend))
    clock.advance(10)
    again = await gateway.request(OtpRequest(to=TO))
    assert again.outcome is Outcome.COALESCED
    assert again.otp.id == first.otp.id
    assert len(bus_types(backend)) == sent


async def test_a_resend_replaces_the_code_under_the_same_id(
    gateway: OtpService, clock: FrozenClock, codegen: Codes,
) -> None:
    first = (await gateway.request(OtpRequest(to=TO))).otp
    clock.advance(30)
    codegen.next = "654321"
    again = await gateway.request(OtpRequest(to=TO))
    assert again.outcome is Outcome.RESENT
    assert again.otp.id == first.id
    assert again.otp.send_count == 2
    assert (await gateway.verify(first.id, CODE)).valid is False
    assert (await gateway.verify(first.id, "654321")).valid is True


async def test_the_send_limit_surfaces_as_rate_limited(gateway: OtpService,
                                                       clock: FrozenClock) -> None:
    for _ in range(5):
        await gateway.request(OtpRequest(to=TO, ttl_seconds=600))
        clock.advance(30)
    with pytest.raises(RateLimited) as err:
        await gateway.request(OtpRequest(to=TO, ttl_seconds=600))
    assert err.value.retry_after == 600 - 150


async def test_the_store_never_holds_the_code_or_the_full_number(
    gateway: OtpService, backend: Backend,
) -> None:
    otp = (await gateway.request(OtpRequest(to=TO))).otp
    stored = await backend.store.get(otp.id)
    assert stored is not None
    text = repr(stored)
    assert CODE not in text
    assert "4155550123" not in text
    assert stored.digest != CODE.encode()


async def test_a_recipient_with_no_code_for_a_purpose_answers_as_one_with_a_code_would(
    gateway: OtpService,
) -> None:
    with_code, without = "+14155550101", "+14155550102"
    for to in (with_code, without):
        login = await gateway.request(OtpRequest(to=to, purpose="login"))
        for _ in range(5):  # the login code dies of wrong answers
            await gateway.verify(login.otp.id, "000000")
    await gateway.request(OtpRequest(to=with_code, purpose="reset"))

    pending = await gateway.verify_recipient(with_code, "reset", "000000")
    missing = await gateway.verify_recipient(without, "reset", "000000")

    assert pending == missing == VerifyAnswer(None, False, Status.PENDING, 4)


async def test_case_variants_of_an_address_share_one_send_limit(gateway: OtpService) -> None:
    first = await gateway.request(OtpRequest(to="jane.doe@example.com"))
    again = await gateway.request(OtpRequest(to="JANE.DOE@example.com"))
    assert again.otp.id == first.otp.id  # coalesced: the same recipient
