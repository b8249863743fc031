"""The routing table: the most specific destination wins, defaults come from the driver
lists, and a table that cannot work stops the server with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from otpgate.breaker import BreakerPolicy, Breakers
from otpgate.clock import FrozenClock
from otpgate.config import from_env
from otpgate.core.recipients import parse
from otpgate.errors import ConfigurationError, InvalidRequest
from otpgate.routing import Route, RouteTable, parse_compact, table_of
from otpgate.runtime import route_table

UK_MOBILE = parse("+447912345678")
US = parse("+14155550123")
JERSEY = parse("+447797123456")  # +44 7797: Jersey, not GB
TABLE = table_of({"sms": ["twilio", "vonage"], "email": ["smtp"]}, [
    Route("sms", ("vonage", "twilio"), prefix="+44"),
    Route("sms", ("sinch",), prefix="+447912"),
    Route("sms", ("telnyx", "twilio"), country="GB"),
    Route("sms", ("plivo",), prefix="+1"),
])


@pytest.mark.parametrize(("recipient", "chain"), [
    (UK_MOBILE, ("sinch",)),                   # the longest prefix wins
    (parse("+447400123456"), ("telnyx", "twilio")),  # a country beats its calling code
    (JERSEY, ("vonage", "twilio")),             # +44 but not GB: the prefix route
    (US, ("plivo",)),
    (parse("+33612345678"), ("twilio", "vonage")),   # nothing matches: the default
])
def test_the_most_specific_route_gives_the_chain(recipient: object, chain: tuple[str, ...]
                                                 ) -> None:
    assert TABLE.route(recipient, "sms") == chain  # type: ignore[arg-type]


def test_an_address_gets_its_channels_default_route() -> None:
    assert TABLE.route(parse("jane@example.com"), "email") == ("smtp",)


def test_a_channel_no_route_serves_is_an_invalid_request_naming_it() -> None:
    with pytest.raises(InvalidRequest, match="voice"):
        TABLE.route(US, "voice")
    only_uk = RouteTable([Route("sms", ("vonage",), prefix="+44")])
    with pytest.raises(InvalidRequest, match="no route"):
        only_uk.route(US, "sms")


@pytest.mark.parametrize(("route", "problem"), [
    (Route("sms", ()), "names no driver"),
    (Route("sms", ("a", "a")), "twice"),
    (Route("sms", ("a",), prefix="44"), "prefix"),
    (Route("sms", ("a",), prefix="+4x"), "prefix"),
    (Route("sms", ("a",), country="XX"), "country"),
    (Route("sms", ("a",), prefix="+44", country="GB"), "not both"),
    (Route("email", ("a",), prefix="+44"), "e-mail"),
])
def test_a_route_that_cannot_work_is_refused(route: Route, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        RouteTable([route])


def test_two_routes_to_one_destination_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="two routes"):
        RouteTable([Route("sms", ("a",), prefix="+44"), Route("sms", ("b",), prefix="+44")])


def test_a_route_naming_an_unknown_driver_or_one_that_cannot_carry_it_is_refused() -> None:
    table = RouteTable([Route("sms", ("vonage", "smtp"), prefix="+44")])
    with pytest.raises(ConfigurationError, match=r"'ghost'.*not configured"):
        RouteTable([Route("sms", ("ghost",))]).check({"vonage": frozenset({"sms"})})
    with pytest.raises(ConfigurationError, match=r"'smtp'.*cannot send on sms"):
        table.check({"vonage": frozenset({"sms"}), "smtp": frozenset({"email"})})


def test_the_compact_form_reads_prefixes_countries_and_defaults() -> None:
    assert parse_compact("sms:+44=vonage,twilio; sms:gb=twilio ;voice=twilio;") == [
        Route("sms", ("vonage", "twilio"), prefix="+44"),
        Route("sms", ("twilio",), country="GB"),
        Route("voice", ("twilio",)),
    ]
    with pytest.raises(ConfigurationError):
        parse_compact("sms+44 vonage")


def test_routes_come_from_the_toml_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "otpgate.toml"
    path.write_text("""
[drivers]
sms = ["console://", "console://?name=backup"]

[[routes]]
channel = "sms"
prefix = "+44"
drivers = ["backup", "console"]
""")
    table = route_table(from_env({"OTPGATE_CONFIG": str(path)}))
    assert table.route(UK_MOBILE, "sms") == ("backup", "console")
    assert table.route(US, "sms") == ("console", "backup")
    env = {"OTPGATE_CONFIG": str(path), "OTPGATE_ROUTES": "sms:US=backup"}
    assert route_table(from_env(env)).route(US, "sms") == ("backup",)


def test_an_explicit_default_route_replaces_the_driver_list_order() -> None:
    table = table_of({"sms": ["a", "b"]}, [Route("sms", ("b",))])
    assert table.route(US, "sms") == ("b",)


LEAST_COST = """
[drivers]
sms = ["console://?name=twilio", "console://?name=vonage", "console://?name=sinch"]

[[routes]]
channel = "sms"
drivers = ["twilio", "vonage", "sinch"]
strategy = "cost"

[prices.twilio]
GB = 0.0400
US = 0.0079
"*" = 0.05

[prices.vonage]
GB = 0.0350
US = 0.0079
"*" = 0.06

[prices.sinch]
GB = 0.0350
"*" = 0.045
"""


def least_cost(tmp_path: Path, text: str = LEAST_COST) -> RouteTable:
    path = tmp_path / "otpgate.toml"
    path.write_text(text)
    return route_table(from_env({"OTPGATE_CONFIG": str(path)}))


def test_a_least_cost_route_puts_the_cheapest_driver_for_the_country_first(
    tmp_path: Path,
) -> None:
    table = least_cost(tmp_path)
    assert table.route(parse("+447400123456"), "sms") == ("vonage", "sinch", "twilio")
    assert table.route(parse("+33612345678"), "sms") == ("sinch", "twilio", "vonage")
    # A country without a price of its own takes "*"; a tie keeps the listed order.
    assert table.route(US, "sms") == ("twilio", "vonage", "sinch")


class Health:
    def __init__(self, open_: set[str], rates: dict[str, float]) -> None:
        self.open, self.rates = open_, rates

    def healthy(self, driver: str) -> bool:
        return driver not in self.open

    def delivery_rate(self, driver: str) -> float:
        return self.rates.get(driver, 1.0)


def test_ties_go_to_the_better_recent_delivery_rate_and_an_open_breaker_goes_last(
    tmp_path: Path,
) -> None:
    table = least_cost(tmp_path)
    table.health = Health(set(), {"vonage": 0.9, "sinch": 0.99})
    assert table.route(parse("+447400123456"), "sms") == ("sinch", "vonage", "twilio")
    table.health = Health({"sinch"}, {"vonage": 0.9})
    assert table.route(parse("+447400123456"), "sms") == ("vonage", "twilio", "sinch")


def test_the_breakers_of_the_process_are_the_health_of_least_cost_routes(
    tmp_path: Path,
) -> None:
    breakers = Breakers(BreakerPolicy(min_calls=10), FrozenClock())
    table = least_cost(tmp_path)
    table.health = breakers
    breakers.of("vonage").record(False, broken=True)
    assert table.route(parse("+447400123456"), "sms") == ("sinch", "twilio", "vonage")
    breakers.of("twilio").record(True)
    breakers.of("twilio").record(False)
    assert breakers.delivery_rate("twilio") == 0.5
    assert breakers.delivery_rate("sinch") == 1.0


@pytest.mark.parametrize(("change", "problem"), [
    ('[prices.sinch]\nGB = 0.0350\n"*" = 0.045\n', "'sinch' has no prices"),
    ("[prices.nexmo]\nGB = 1\n", "driver 'nexmo', which is not configured"),
    ("[prices.twilio]\nGB = 0.04\nUS = 0.0079\n\"*\" = 0.05\nXX = 1\n", "name 'XX'"),
])
def test_a_price_table_that_cannot_work_is_refused(tmp_path: Path, change: str,
                                                  problem: str) -> None:
    base = LEAST_COST
    if "nexmo" in change:
        text = base + change
    elif "XX" in change:
        text = base.replace('[prices.twilio]\nGB = 0.0400\nUS = 0.0079\n"*" = 0.05\n', change)
    else:
        text = base.replace(change, "")
    with pytest.raises(ConfigurationError, match=problem):
        least_cost(tmp_path, text)


def test_a_negative_price_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=">= 0"):
        least_cost(tmp_path, LEAST_COST.replace("GB = 0.0400", "GB = -1"))
