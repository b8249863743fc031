"""The abuse rules over HTTP: every refusal a problem with its ``type`` and ``rule``
(``Retry-After`` on a 429), ``client_ip`` and ``rate_keys`` from server keys, the caller's
address for client keys (behind trusted proxies too), monitor mode and test numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar.datastructures import Headers

from otpgate.abuse.guard import limited_address
from otpgate.api import callers
from otpgate.audit import WOULD_BLOCK
from tests.integration.conftest import PHONE, Client, assert_problem, runtime_of


def number(i: int) -> str:
    return f"+1415555{i:04d}"


async def test_a_rate_rule_answers_429_with_its_type_rule_and_retry_after(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(rate_limits="key=2/60") as client:
        for i in range(2):
            assert (await client.post("/v1/otp", json={"to": number(i)})).status_code == 202
        refused = await client.post("/v1/otp", json={"to": number(3)})
    assert_problem(refused, 429, "rate-limited")
    assert refused.json()["rule"] == "key"
    assert refused.headers["retry-after"] == "30"


async def test_pumping_answers_429_pumping(make_client: Callable[..., Any]) -> None:
    async with make_client(pumping_min_sends=3) as client:
        answers = [await client.post("/v1/otp", json={"to": number(i)}) for i in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    assert_problem(answers[2], 429, "pumping")
    assert answers[2].json()["rule"] == "pumping"
    assert int(answers[3].headers["retry-after"]) > 11 * 3600


async def test_a_budget_answers_429_budget(make_client: Callable[..., Any]) -> None:
    async with make_client(abuse={"prices": {"*": 0.05},
                                  "budgets": {"countries": {"US": 0.05}}}) as client:
        assert (await client.post("/v1/otp", json={"to": number(1)})).status_code == 202
        refused = await client.post("/v1/otp", json={"to": number(2)})
    assert_problem(refused, 429, "budget")
    assert refused.json()["rule"] == "budget-country"


async def test_geo_and_number_types_answer_422_with_their_rule(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(geo_block=("GB",)) as client:
        geo = await client.post("/v1/otp", json={"to": "+447400123456"})
        premium = await client.post("/v1/otp", json={"to": "+19005550123"})
    assert_problem(geo, 422, "geo-blocked", field="to")
    assert geo.json()["rule"] == "geo"
    assert_problem(premium, 422, "number-type", field="to")
    assert premium.json()["rule"] == "number-type"


async def test_a_server_key_passes_the_users_address_and_keys(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(rate_limits="ip=1/60",
                           abuse={"rate_keys": {"user_id": {"limit": 1,
                                                            "window": 60}}}) as client:
        first = await client.post("/v1/otp", json={"to": number(1), "client_ip": "192.0.2.1"})
        again = await client.post("/v1/otp", json={"to": number(2), "client_ip": "192.0.2.1"})
        other = await client.post("/v1/otp", json={"to": number(3), "client_ip": "192.0.2.2",
                                                   "rate_keys": {"user_id": "u1"}})
        user = await client.post("/v1/otp", json={"to": number(4), "client_ip": "192.0.2.3",
                                                  "rate_keys": {"user_id": "u1"}})
        no_ip = [await client.post("/v1/otp", json={"to": number(10 + i)}) for i in range(3)]
    assert (first.status_code, other.status_code) == (202, 202)
    assert again.json()["rule"] == "ip" and user.json()["rule"] == "rate-key:user_id"
    assert [a.status_code for a in no_ip] == [202] * 3


@pytest.mark.parametrize("body", [
    {"client_ip": "not-an-address"}, {"client_ip": 7}, {"rate_keys": {"Bad Name": "x"}},
    {"rate_keys": {"user_id": ""}}, {"rate_keys": ["user_id"]},
    {"rate_keys": {f"k{i}": "v" for i in range(9)}},
])
async def test_malformed_client_ip_or_rate_keys_are_422(client: Client,
                                                        body: dict[str, Any]) -> None:
    response = await client.post("/v1/otp", json={"to": PHONE, **body})
    assert response.status_code == 422, response.text
    assert response.json()["field"] in {"client_ip", "rate_keys"}


async def test_a_client_key_is_limited_by_its_callers_address_not_its_client_ip(
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(callers, "is_client_key", lambda who: True)
    async with make_client(rate_limits="ip=1/60,ip-verify=1/60") as client:
        one = await client.post("/v1/otp", json={"to": number(1), "client_ip": "9.9.9.9"})
        spoofed = await client.post("/v1/otp", json={"to": number(2), "client_ip": "9.9.9.8"})
        verify = [await client.post("/v1/verify", json={"to": number(1), "code": "000000"})
                  for _ in range(2)]
    assert one.status_code == 202
    assert spoofed.status_code == 429 and spoofed.json()["rule"] == "ip"
    assert verify[0].status_code == 200
    assert_problem(verify[1], 429, "rate-limited")
    assert verify[1].json()["rule"] == "ip-verify"


class _Connection:
    def __init__(self, peer: str, *forwarded: str | None) -> None:
        self.scope = {"client": (peer, 50000)}
        self.headers = Headers([(b"x-forwarded-for", line.encode())
                                for line in forwarded if line is not None])


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("198.51.100.1", None, "198.51.100.1"),
    ("198.51.100.1", "203.0.113.9", "198.51.100.1"),       # not a trusted proxy: ignored
    ("10.0.0.5", "203.0.113.9", "203.0.113.9"),
    ("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),  # the last untrusted hop
    ("10.0.0.5", "10.0.0.6", "10.0.0.5"),                  # only proxies: the peer
    ("10.0.0.5", "garbage", "10.0.0.5"),
])
def test_the_callers_address_behind_trusted_proxies(peer: str, forwarded: str | None,
                                                    expected: str) -> None:
    connection: Any = _Connection(peer, forwarded)
    assert callers.peer_address(connection, ("10.0.0.0/8",)) == expected


def test_a_forged_line_before_the_proxys_own_is_not_the_callers_address() -> None:
    """A proxy that adds a header line of its own (HAProxy's ``option forwardfor``) leaves
    the line the client forged first: every line counts, the last untrusted hop wins."""
    connection: Any = _Connection("10.0.0.5", "198.51.100.77", "203.0.113.9")
    assert callers.peer_address(connection, ("10.0.0.0/8",)) == "203.0.113.9"


@pytest.mark.parametrize(("given", "counted"), [
    ("203.0.113.9", "203.0.113.9"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
])
def test_an_address_rule_counts_an_ipv4_address_or_an_ipv6_64(given: str, counted: str) -> None:
    assert limited_address(given) == counted


async def test_monitor_mode_answers_202_and_counts_a_would_block(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(rate_limits="key=1/60", rules_mode="monitor") as client:
        answers = [await client.post("/v1/otp", json={"to": number(i)}) for i in range(2)]
        assert runtime_of(client).audit.value(WOULD_BLOCK, rule="key") == 1
    assert [a.status_code for a in answers] == [202, 202]


async def test_a_test_number_answers_its_fixed_code_and_sends_nothing(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(test_numbers={"+15005550006": "246810"},
                           geo_block=("US",)) as client:
        made = await client.post("/v1/otp", json={"to": "+15005550006"})
        assert made.status_code == 202, made.text
        messages = await client.get("/v1/dev/messages", params={"to": "+15005550006"})
        answer = await client.post("/v1/verify", json={"to": "+15005550006",
                                                        "code": "246810"})
    assert messages.json() == []
    assert answer.json()["status"] == "approved"


def test_test_numbers_are_read_from_the_environment() -> None:
    from otpgate import config
    settings = config.from_env({"OTPGATE_TEST_NUMBERS": "+15005550006=123456, +1500555*=000000",
                                "OTPGATE_PUMPING_MODE": "monitor",
                                "OTPGATE_TRUSTED_PROXIES": "10.0.0.0/8"})
    assert settings.abuse.test_numbers == {"+15005550006": "123456", "+1500555*": "000000"}
    assert settings.abuse.pumping_mode == "monitor"
    assert settings.abuse.trusted_proxies == ("10.0.0.0/8",)


def test_the_abuse_tables_are_read_from_toml(tmp_path: Any) -> None:
    from otpgate import config
    path = tmp_path / "otpgate.toml"
    path.write_text('pumping_mode = "monitor"\n'
                    '[abuse.rules.prefix]\nlimit = 60\nwindow = 3600\nmode = "monitor"\n'
                    '[abuse.rate_keys.user_id]\nlimit = 5\nwindow = 3600\n'
                    '[abuse.prices]\nUS = 0.0079\n"*" = 0.05\n'
                    '[abuse.budgets]\ncountries = {"*" = 50.0}\n'
                    '[abuse.geo.sms]\nblock = ["XK"]\n'
                    '[abuse.test_numbers]\n"+1500555*" = "000000"\n')
    abuse = config.from_env({"OTPGATE_CONFIG": str(path), "OTPGATE_GEO_BLOCK": "RU"}).abuse
    assert abuse.pumping_mode == "monitor" and abuse.geo_block == ("RU",)
    assert (abuse.limits()["prefix"].limit, abuse.limits()["prefix"].mode) == (60, "monitor")
    assert abuse.rate_keys["user_id"].limit == 5 and abuse.prices["*"] == 0.05
    assert abuse.budgets.countries == {"*": 50.0} and abuse.geo["sms"].block == ("XK",)
    assert abuse.test_numbers == {"+1500555*": "000000"}


async def test_a_fallback_step_to_another_address_meets_the_rules_of_that_address(
    make_client: Callable[..., Any],
) -> None:
    """A step's own ``to`` is a send to that number: the geo rule of a request straight to
    it refuses it as a step too, and its sends count in that number's prefix."""
    async with make_client(geo_block=("GB",)) as client:
        straight = await client.post("/v1/otp", json={"to": "+447400123456"})
        as_step = await client.post("/v1/otp", json={
            "to": "g1@b.example",
            "fallback": [{"channel": "sms", "after": 1, "to": "+447400123456"}]})
    assert_problem(straight, 422, "geo-blocked")
    assert_problem(as_step, 422, "geo-blocked")
    assert as_step.json()["rule"] == "geo"
