"""The routing table: the most specific destination wins, defaults come from the driver
lists, and a table that cannot work stops the server with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

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
