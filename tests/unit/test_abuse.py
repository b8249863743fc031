"""The abuse rules through the service on the in-memory backend: rate rules and their
monitor mode, caller keys, budgets, velocity of new countries, geo, number types and test
numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from otpgate.abuse.guard import Guard, Requester
from otpgate.abuse.settings import AbuseSettings, parse_compact
from otpgate.abuse.testnumbers import TestNumbers
from otpgate.audit import RULE_BLOCKS, WOULD_BLOCK, Audit
from otpgate.backends import Backend, open_memory
from otpgate.bus.memory import MemoryBus
from otpgate.clock import FrozenClock
from otpgate.core.lifecycle import Change
from otpgate.core.otp import Status
from otpgate.core.policy import Policy
from otpgate.crypto import Keyring
from otpgate.errors import (
    BudgetExceeded,
    ConfigurationError,
    GeoBlocked,
    NumberTypeRefused,
    RateLimited,
)
from otpgate.events import CloudEvent, EventType
from otpgate.routing import StaticRouter
from otpgate.service import OtpRequest, OtpService

ROUTES = {"sms": ("capture://",), "voice": ("capture://",), "whatsapp": ("capture://",),
          "email": ("capture://",)}
KEY = Keyring.from_secret(b"abuse-test-secret-0123456789abcd")
US = "+14155550123"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def backend(clock: FrozenClock) -> AsyncIterator[Backend]:
    opened = await open_memory("memory://", clock)
    yield opened
    await opened.close()


def gateway(backend: Backend, clock: FrozenClock, **abuse: Any) -> OtpService:
    audit = Audit()

    async def publish(batch: list[CloudEvent]) -> None:
        await backend.store.transact("abuse.events",
                                     lambda _: Change(result=None, events=batch))

    guard = Guard(msgspec.convert(abuse, AbuseSettings), backend.limiter, KEY.digest_key,
                  audit, publish)
    return OtpService(backend.store, clock, KEY, Policy(), StaticRouter(ROUTES),
                      audit=audit, guard=guard, codegen=lambda n: "123456"[:n])


def types(backend: Backend) -> list[str]:
    assert isinstance(backend.bus, MemoryBus)
    return [e.type for e in backend.bus.log]


def events_of(backend: Backend, kind: EventType) -> list[CloudEvent]:
    assert isinstance(backend.bus, MemoryBus)
    return [e for e in backend.bus.log if e.type == kind.value]


def number(i: int, area: str = "415", exchange: int = 555) -> str:
    return f"+1{area}{exchange}{i:04d}"


async def test_a_rate_rule_refuses_with_its_name_and_wait(backend: Backend,
                                                          clock: FrozenClock) -> None:
    service = gateway(backend, clock, rate_limits="key=3/60")
    for i in range(3):
        await service.request(OtpRequest(to=number(i)), who=Requester("k1"))
    with pytest.raises(RateLimited) as refused:
        await service.request(OtpRequest(to=number(9)), who=Requester("k1"))
    assert refused.value.rule == "key" and refused.value.slug == "rate-limited"
    assert 19 <= refused.value.retry_after <= 20
    await service.request(OtpRequest(to=number(9)), who=Requester("k2"))  # another key
    assert service.audit.value(RULE_BLOCKS, rule="key") == 1


async def test_monitor_mode_lets_through_and_records_a_would_block(
    backend: Backend, clock: FrozenClock
) -> None:
    service = gateway(backend, clock, rate_limits="key=1/60:monitor")
    await service.request(OtpRequest(to=number(1)), who=Requester("k1"))
    await service.request(OtpRequest(to=number(2)), who=Requester("k1"))
    assert service.audit.value(WOULD_BLOCK, rule="key") == 1
    [watched] = events_of(backend, EventType.RULE_WOULD_BLOCK)
    assert watched.data == {"rule": "key", "subject": "k1", "tenant": "default"}
    assert types(backend).count(EventType.REQUESTED.value) == 2


async def test_rules_mode_puts_every_rule_in_monitor_mode(backend: Backend,
                                                          clock: FrozenClock) -> None:
    service = gateway(backend, clock, rate_limits="recipient=1/60", rules_mode="monitor")
    await service.request(OtpRequest(to=US, purpose="a"))
    await service.request(OtpRequest(to=US, purpose="b"))
    assert service.audit.value(WOULD_BLOCK, rule="recipient") == 1
    [watched] = events_of(backend, EventType.RULE_WOULD_BLOCK)
    assert watched.data["subject"] == "+1415•••0123"


async def test_the_client_address_and_caller_keys_are_limited(backend: Backend,
                                                              clock: FrozenClock) -> None:
    service = gateway(backend, clock, rate_limits="ip=2/60",
                      rate_keys={"user_id": {"limit": 1, "window": 3600}})
    user = Requester("k", rate_keys={"user_id": "u-1", "unconfigured": "x"})
    await service.request(OtpRequest(to=number(1)), who=user)
    with pytest.raises(RateLimited) as refused:
        await service.request(OtpRequest(to=number(2)), who=user)
    assert refused.value.rule == "rate-key:user_id"
    at = Requester("k", ip="203.0.113.7")
    await service.request(OtpRequest(to=number(3)), who=at)
    await service.request(OtpRequest(to=number(4)), who=at)
    with pytest.raises(RateLimited) as refused:
        await service.request(OtpRequest(to=number(5)), who=at)
    assert refused.value.rule == "ip"
    await service.request(OtpRequest(to=number(6)), who=Requester("k", ip="203.0.113.8"))


async def test_a_refusal_spends_no_other_rule(backend: Backend, clock: FrozenClock) -> None:
    service = gateway(backend, clock, rate_limits="key=2/60,ip=1/60")
    await service.request(OtpRequest(to=number(1)), who=Requester("k", ip="192.0.2.1"))
    with pytest.raises(RateLimited):
        await service.request(OtpRequest(to=number(2)), who=Requester("k", ip="192.0.2.1"))
    # the refused request did not use the key's second slot
    await service.request(OtpRequest(to=number(3)), who=Requester("k", ip="192.0.2.2"))


async def test_verify_is_limited_per_address(backend: Backend, clock: FrozenClock) -> None:
    service = gateway(backend, clock, rate_limits="ip-verify=2/60")
    await service.request(OtpRequest(to=US))
    at = Requester("k", client=True, ip="198.51.100.1")
    for _ in range(2):
        await service.verify_recipient(US, None, "000000", who=at)
    with pytest.raises(RateLimited) as refused:
        await service.verify_recipient(US, None, "123456", who=at)
    assert refused.value.rule == "ip-verify"
    answer = await service.verify_recipient(US, None, "123456",
                                            who=Requester("k", ip="198.51.100.2"))
    assert answer.status is Status.APPROVED


async def test_a_daily_budget_per_country_stops_sending_there(backend: Backend,
                                                              clock: FrozenClock) -> None:
    service = gateway(backend, clock, prices={"US": 0.01, "*": 0.05},
                      budgets={"countries": {"US": 0.025}})
    await service.request(OtpRequest(to=number(1)))
    await service.request(OtpRequest(to=number(2)))
    with pytest.raises(BudgetExceeded) as refused:
        await service.request(OtpRequest(to=number(3)))
    assert refused.value.slug == "budget" and refused.value.rule == "budget-country"
    assert refused.value.retry_after <= 86400
    await service.request(OtpRequest(to="+442071838750", channel="voice"))  # GB: no cap
    clock.advance(86400)
    await service.request(OtpRequest(to=number(3)))


async def test_a_daily_budget_per_key(backend: Backend, clock: FrozenClock) -> None:
    service = gateway(backend, clock, prices={"*": 0.05}, budgets={"keys": {"*": 0.1}})
    for i in range(2):
        await service.request(OtpRequest(to=number(i)), who=Requester("k1"))
    with pytest.raises(BudgetExceeded) as refused:
        await service.request(OtpRequest(to=number(5)), who=Requester("k1"))
    assert refused.value.rule == "budget-key"
    await service.request(OtpRequest(to=number(5)), who=Requester("k2"))


async def test_budgets_are_off_until_prices_are_set(backend: Backend,
                                                    clock: FrozenClock) -> None:
    service = gateway(backend, clock, budgets={"countries": {"*": 0.0}})
    await service.request(OtpRequest(to=number(1)))


async def test_a_new_country_is_held_to_its_velocity_until_established(
    backend: Backend, clock: FrozenClock
) -> None:
    service = gateway(backend, clock, rate_limits="new-country=3/3600,new-prefix=off,"
                      "prefix=off", established=5, pumping_mode="off")
    for i in range(3):
        await service.request(OtpRequest(to=number(i)))
    with pytest.raises(RateLimited) as refused:
        await service.request(OtpRequest(to=number(3)))
    assert refused.value.rule == "new-country"
    clock.advance(3600)
    for i in range(3, 6):  # 6 seen in all: established now
        await service.request(OtpRequest(to=number(i)))
    for i in range(6, 12):
        await service.request(OtpRequest(to=number(i)))


async def test_blocked_and_unlisted_countries_are_refused(backend: Backend,
                                                          clock: FrozenClock) -> None:
    service = gateway(backend, clock, geo_block=("GB",),
                      geo={"whatsapp": {"allow": ["BR"]}})
    with pytest.raises(GeoBlocked) as refused:
        await service.request(OtpRequest(to="+447400123456"))
    assert refused.value.slug == "geo-blocked" and refused.value.rule == "geo"
    with pytest.raises(GeoBlocked):
        await service.request(OtpRequest(to=US, channel="whatsapp"))
    await service.request(OtpRequest(to=US))
    await service.request(OtpRequest(to="+5511987654321", channel="whatsapp"))
    await service.request(OtpRequest(to="a@example.com"))  # an address has no country


@pytest.mark.parametrize(("to", "channel", "refused"), [
    ("+19005550123", "sms", True),      # US premium rate
    ("+19005550123", "voice", True),
    ("+442071838750", "sms", True),     # GB fixed line: not for text
    ("+442071838750", "whatsapp", True),
    ("+442071838750", "voice", False),  # a landline can take a call
    ("+447400123456", "sms", False),    # GB mobile
    ("+14155550123", "sms", False),     # US fixed line or mobile
])
async def test_number_types_by_channel(backend: Backend, clock: FrozenClock, to: str,
                                       channel: str, refused: bool) -> None:
    service = gateway(backend, clock)
    if refused:
        with pytest.raises(NumberTypeRefused) as caught:
            await service.request(OtpRequest(to=to, channel=channel))
        assert caught.value.slug == "number-type" and caught.value.rule == "number-type"
    else:
        await service.request(OtpRequest(to=to, channel=channel))


async def test_number_types_can_be_allowed_blocked_or_watched(backend: Backend,
                                                              clock: FrozenClock) -> None:
    allowing = gateway(backend, clock, number_types_allow=("fixed_line",))
    await allowing.request(OtpRequest(to="+442071838750"))
    blocking = gateway(backend, clock, number_types_block=("fixed_line_or_mobile",))
    with pytest.raises(NumberTypeRefused):
        await blocking.request(OtpRequest(to=US))
    watching = gateway(backend, clock, number_types_mode="monitor")
    await watching.request(OtpRequest(to="+19005550123"))
    assert watching.audit.value(WOULD_BLOCK, rule="number-type") == 1


async def test_test_numbers_are_never_sent_answer_their_code_and_skip_every_rule(
    backend: Backend, clock: FrozenClock
) -> None:
    service = gateway(backend, clock, test_numbers={"+15005550006": "424242",
                                                    "+4474001234*": "111111"},
                      geo_block=("US", "GB"), rate_limits="key=1/60,recipient=1/60",
                      prices={"*": 1.0}, budgets={"countries": {"*": 0.5}})
    for purpose in ("a", "b", "c"):
        got = await service.request(OtpRequest(to="+15005550006", purpose=purpose))
        assert got.otp.test
    for _ in range(8):  # beyond the policy's send limit too
        await service.request(OtpRequest(to="+447400123456"))
        clock.advance(31)
    assert EventType.DISPATCH.value not in types(backend)
    requested = events_of(backend, EventType.REQUESTED)
    assert requested and all(e.data["test"] is True for e in requested)
    wrong = await service.verify_recipient("+15005550006", "a", "123456")
    assert not wrong.valid
    right = await service.verify_recipient("+15005550006", "a", "424242")
    assert right.valid and events_of(backend, EventType.APPROVED)[0].data["test"] is True
    assert service.audit.total(RULE_BLOCKS) == 0
    with pytest.raises(GeoBlocked):
        await service.request(OtpRequest(to="+15005550007"))


def test_settings_refuse_unknown_rules_and_bad_forms() -> None:
    with pytest.raises(ConfigurationError):
        parse_compact("nope=1/60")
    with pytest.raises(ConfigurationError):
        parse_compact("ip=ten/60")
    with pytest.raises(ConfigurationError):
        AbuseSettings(trusted_proxies=("not-a-network",))
    assert parse_compact("prefix=off")["prefix"].mode == "off"


async def test_a_request_that_sends_nothing_counts_no_send_for_pumping(
    backend: Backend, clock: FrozenClock
) -> None:
    service = gateway(backend, clock, pumping_min_sends=3)
    for _ in range(6):  # one code, five coalesced with it: one send in the prefix
        await service.request(OtpRequest(to=US))
    await service.request(OtpRequest(to=number(100)))  # the second
    with pytest.raises(RateLimited) as refused:  # the third, none verified
        await service.request(OtpRequest(to=number(101)))
    assert refused.value.rule == "pumping"


async def test_codes_made_elsewhere_meet_every_rule_but_the_pumping_guard(
    backend: Backend, clock: FrozenClock
) -> None:
    from otpgate.service import DeliverRequest

    service = gateway(backend, clock, pumping_min_sends=3, geo_block=("GB",),
                      rate_limits="recipient=2/60")
    for i in range(10):  # never verified here: their maker checks them
        await service.deliver(DeliverRequest(to=number(i), code="123456"))
    with pytest.raises(GeoBlocked):
        await service.deliver(DeliverRequest(to="+447400123456", code="123456"))
    await service.deliver(DeliverRequest(to=US, code="111111", purpose="a"))
    await service.deliver(DeliverRequest(to=US, code="222222", purpose="b"))
    with pytest.raises(RateLimited) as refused:
        await service.deliver(DeliverRequest(to=US, code="333333", purpose="c"))
    assert refused.value.rule == "recipient"


async def test_a_test_numbers_wrong_answers_end_its_code_but_never_lock_it(
    backend: Backend, clock: FrozenClock
) -> None:
    """An app-store reviewer who mistypes a hundred times still gets in: a test number's code
    is fixed and known, so its misses build no delay or lock; each code still takes 5."""
    service = gateway(backend, clock, test_numbers={"+15005550006": "424242"})
    for round_ in range(25):  # 125 wrong answers, past the lock at 100
        otp = (await service.request(OtpRequest(to="+15005550006"))).otp
        answers = [await service.verify(otp.id, "000000") for _ in range(5)]
        assert answers[-1].status is Status.MAX_ATTEMPTS_REACHED, round_
        clock.advance(31)
    assert not events_of(backend, EventType.LOCKED)
    otp = (await service.request(OtpRequest(to="+15005550006"))).otp
    assert (await service.verify(otp.id, "424242")).valid


@pytest.mark.parametrize("pattern", ["*", "+1*", "+44*", "*@example.com", "+141555?*",
                                     "[0-9]*"])
def test_a_test_number_pattern_must_stay_a_small_block_of_numbers(pattern: str) -> None:
    """A test number answers a known code and meets no rule: a pattern as wide as a
    country, or as everyone, would be a way in for all of them."""
    with pytest.raises(ConfigurationError, match="pattern"):
        TestNumbers({pattern: "123456"})
    assert TestNumbers({"+1500555*": "123456"}).code_for("+15005550042") == "123456"
