"""The URL parser every backend and driver shares: hosts keep their case, secrets stay
hidden, options are checked."""

from __future__ import annotations

import pytest

from otpgate.errors import ConfigurationError
from otpgate.urls import Url, mask, parse


def test_a_provider_url_keeps_its_sender_verbatim_and_decodes_its_credentials() -> None:
    url = parse("twilio://AC123:t%40k%3Aen@MGabc123XYZ?content_sid=HX1&timeout=3")
    assert (url.scheme, url.user, url.password) == ("twilio", "AC123", "t@k:en")
    assert url.host == "MGabc123XYZ"
    assert url.port is None
    assert url.query == {"content_sid": "HX1", "timeout": "3"}


@pytest.mark.parametrize(("raw", "host", "port"), [
    ("twilio://SID:TOKEN@+15550001111", "+15550001111", None),
    ("vonage://KEY:SECRET@AcmeBank", "AcmeBank", None),
    ("smtp://user:pass@mail.example.com:587?from=a@b.example", "mail.example.com", 587),
    ("redis://:pw@[::1]:6379/0", "::1", 6379),
    ("capture://", "", None),
])
def test_hosts_and_ports_are_read_as_written(raw: str, host: str, port: int | None) -> None:
    url = parse(raw)
    assert (url.host, url.port) == (host, port)


def test_the_last_value_of_a_repeated_option_wins() -> None:
    assert parse("console://?stream=stdout&stream=stderr").option("stream") == "stderr"


def test_a_lone_user_is_a_secret_and_is_masked_whole() -> None:
    assert mask("clickatell://APIKEY123@") == "clickatell://***@"
    assert "APIKEY123" not in repr(parse("clickatell://APIKEY123@"))


def test_a_parsed_url_never_shows_its_secrets_in_repr() -> None:
    url = parse("sinch://PLAN:s3cr3t@Acme?api_token=zzz&region=eu")
    shown = repr(url)
    assert "s3cr3t" not in shown
    assert "zzz" not in shown
    assert "region=eu" in shown


@pytest.mark.parametrize("raw", ["", "not a url", "://nohost", "smtp://h:99999"])
def test_what_is_not_a_url_is_a_configuration_error_without_its_secrets(raw: str) -> None:
    with pytest.raises(ConfigurationError):
        parse(raw)


def test_unknown_options_are_named_in_the_error() -> None:
    url: Url = parse("console://?colour=red")
    with pytest.raises(ConfigurationError, match="colour"):
        url.check_options({"stream"}, "console://[?stream=stderr]")
