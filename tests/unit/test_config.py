"""Settings: defaults, OTPGATE_* variables, the TOML file, and which wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from otpgate.config import DEV_DRIVERS, Settings, from_env
from otpgate.core.policy import Policy
from otpgate.errors import ConfigurationError


def write_toml(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "otpgate.toml"
    path.write_text(text)
    return {"OTPGATE_CONFIG": str(path)}


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = from_env({})
    assert settings == Settings()
    server = settings.server
    assert (server.host, server.port, server.workers) == ("127.0.0.1", 8080, 1)
    assert settings.dev is False
    assert settings.allow_capture is False
    assert settings.policy == Policy()
    assert settings.drivers == {}
    assert settings.store_url == f"sqlite:///{Path('var') / 'otpgate.db'}"
    assert settings.driver_urls == DEV_DRIVERS
    assert settings.captures is False


def test_from_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTPGATE_PORT", "9191")
    assert from_env().server.port == 9191


def test_scalars_are_read_and_converted() -> None:
    settings = from_env({
        "OTPGATE_HOST": "0.0.0.0", "OTPGATE_PORT": "9000", "OTPGATE_WORKERS": "4",
        "OTPGATE_DATA_DIR": "/srv/otp", "OTPGATE_STORE_URL": "memory://",
        "OTPGATE_BUS_LEASE": "12.5", "OTPGATE_BRAND": "Acme", "OTPGATE_LOG_LEVEL": "debug",
        "OTPGATE_SECRET_KEY": "00" * 32,
    })
    server = settings.server
    assert (server.host, server.port, server.workers) == ("0.0.0.0", 9000, 4)
    assert settings.data_dir == Path("/srv/otp")
    assert settings.store_url == "memory://"
    assert settings.bus.lease == 12.5
    assert settings.brand == "Acme"
    assert settings.server.log_level == "debug"
    assert settings.secret_key == "00" * 32


def test_the_shutdown_grace_and_the_late_send_limit_default_to_10_and_30_seconds() -> None:
    assert (Settings().server.shutdown_grace, Settings().server.ready_max_due_age) == (10, 30)
    server = from_env({"OTPGATE_SHUTDOWN_GRACE": "2.5",
                       "OTPGATE_READY_MAX_DUE_AGE": "0"}).server
    assert (server.shutdown_grace, server.ready_max_due_age) == (2.5, 0)


def test_the_data_dir_decides_where_the_default_database_lives() -> None:
    settings = from_env({"OTPGATE_DATA_DIR": "/srv/otp"})
    assert settings.store_url == "sqlite:////srv/otp/otpgate.db"


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("true", True), ("YES", True),
                                            (" on ", True), ("0", False), ("false", False),
                                            ("No", False), ("off", False)])
def test_booleans_take_the_usual_spellings(raw: str, value: bool) -> None:
    assert from_env({"OTPGATE_DEV": raw}).dev is value
    assert from_env({"OTPGATE_ALLOW_CAPTURE": raw}).captures is value


@pytest.mark.parametrize("raw", ["", "maybe", "2", "y"])
def test_other_boolean_spellings_are_refused(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="dev"):
        from_env({"OTPGATE_DEV": raw})


@pytest.mark.parametrize(("name", "raw"), [("OTPGATE_PORT", "eighty"),
                                           ("OTPGATE_WORKERS", "1.5"),
                                           ("OTPGATE_BUS_LEASE", "soon")])
def test_numbers_that_do_not_parse_are_configuration_errors(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError):
        from_env({name: raw})


def test_driver_lists_are_read_per_channel_in_order() -> None:
    settings = from_env({"OTPGATE_DRIVERS_SMS": "twilio://A:B@+15550001111, console://",
                         "OTPGATE_DRIVERS_EMAIL": "capture://"})
    assert settings.drivers == {"sms": ("twilio://A:B@+15550001111", "console://"),
                                "email": ("capture://",)}
    assert settings.driver_urls == settings.drivers


def test_empty_entries_in_a_driver_list_are_ignored() -> None:
    drivers = from_env({"OTPGATE_DRIVERS_SMS": "console://,,capture://,"}).drivers
    assert drivers == {"sms": ("console://", "capture://")}
    spaced = from_env({"OTPGATE_DRIVERS_SMS": "console://, ,capture://, "}).drivers
    assert spaced == {"sms": ("console://", "capture://")}, (
        f"BUG: a blank entry between commas becomes an empty driver URL: {spaced}"
    )


def test_policy_values_are_read_as_integers() -> None:
    policy = from_env({"OTPGATE_POLICY_MAX_ATTEMPTS": "3", "OTPGATE_POLICY_DEFAULT_TTL": "120",
                       "OTPGATE_POLICY_LOCK_AFTER": "20"}).policy
    assert (policy.max_attempts, policy.default_ttl, policy.lock_after) == (3, 120, 20)
    assert policy.max_sends == Policy().max_sends


def test_an_unknown_policy_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_tries"):
        from_env({"OTPGATE_POLICY_MAX_TRIES": "3"})


def test_a_policy_value_that_is_not_an_integer_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        from_env({"OTPGATE_POLICY_MAX_ATTEMPTS": "many"})


def test_an_inconsistent_policy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        from_env({"OTPGATE_POLICY_MIN_TTL": "900"})


def test_unrelated_variables_are_ignored() -> None:
    assert from_env({"OTPGATE": "x", "PORT": "1", "OTPGATEWAY_PORT": "2"}) == Settings()


def test_a_toml_file_named_by_otpgate_config_is_read(tmp_path: Path) -> None:
    env = write_toml(tmp_path, """
host = "0.0.0.0"
port = 9000
dev = true
data_dir = "/srv/otp"

[drivers]
sms = ["twilio://A:B@+15550001111", "console://"]

[policy]
max_attempts = 3
""")
    settings = from_env(env)
    assert (settings.server.host, settings.server.port, settings.dev) == ("0.0.0.0", 9000, True)
    assert settings.data_dir == Path("/srv/otp")
    assert settings.drivers == {"sms": ("twilio://A:B@+15550001111", "console://")}
    assert settings.policy.max_attempts == 3


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    env = write_toml(tmp_path, 'port = 9000\nhost = "0.0.0.0"\n')
    settings = from_env({**env, "OTPGATE_PORT": "9100"})
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"


def test_overrides_win_over_environment_and_file(tmp_path: Path) -> None:
    env = write_toml(tmp_path, "port = 9000\n")
    settings = from_env({**env, "OTPGATE_PORT": "9100"}, port=9200, host=None)
    assert settings.server.port == 9200
    assert settings.server.host == "127.0.0.1"


def test_a_policy_variable_overrides_only_its_own_key_of_the_file(tmp_path: Path) -> None:
    env = write_toml(tmp_path, "[policy]\nmax_attempts = 3\n")
    policy = from_env({**env, "OTPGATE_POLICY_MAX_SENDS": "7"}).policy
    assert policy.max_sends == 7
    assert policy.max_attempts == 3, (
        "BUG: one OTPGATE_POLICY_* variable discards every [policy] value of the file "
        f"(max_attempts fell back to {policy.max_attempts})"
    )


def test_a_driver_variable_overrides_only_its_own_channel_of_the_file(tmp_path: Path) -> None:
    env = write_toml(tmp_path, '[drivers]\nsms = ["console://"]\nemail = ["capture://"]\n')
    drivers = from_env({**env, "OTPGATE_DRIVERS_SMS": "twilio://A:B@+15550001111"}).drivers
    assert drivers["sms"] == ("twilio://A:B@+15550001111",)
    assert drivers.get("email") == ("capture://",), (
        f"BUG: OTPGATE_DRIVERS_SMS discards the file's other channels: {drivers}"
    )


def test_an_unknown_key_in_the_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        from_env(write_toml(tmp_path, 'colour = "blue"\n'))


def test_an_unknown_policy_key_in_the_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        from_env(write_toml(tmp_path, "[policy]\nmax_tries = 3\n"))


def test_a_missing_or_broken_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        from_env({"OTPGATE_CONFIG": str(tmp_path / "absent.toml")})
    with pytest.raises(ConfigurationError, match="cannot read"):
        from_env(write_toml(tmp_path, "port = = 1\n"))


def test_settings_are_immutable_and_replace_makes_a_copy() -> None:
    settings = from_env({})
    changed = settings.replace(port=1234)
    assert changed.server.port == 1234
    assert settings.server.port == 8080
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


def test_settings_never_show_the_secret_key_or_driver_credentials_in_repr() -> None:
    settings = from_env({"OTPGATE_SECRET_KEY": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx",
                         "OTPGATE_DRIVERS_SMS": "twilio://AC1:tok3n@+15550001111",
                         "OTPGATE_STORE_URL": "redis://:hunter2@127.0.0.1:6379/0"})
    shown = repr(settings)
    for secret in ("c2VjcmV0", "tok3n", "hunter2"):
        assert secret not in shown
    assert "twilio://AC1:***@+15550001111" in shown
    assert settings.secret_key == "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"


def test_a_toml_file_may_write_settings_as_sections(tmp_path: Path) -> None:
    env = write_toml(tmp_path, """
[server]
port = 9300
workers = 2

[bus]
lease = 12.5

[store]
url = "memory://"
""")
    settings = from_env(env)
    assert (settings.server.port, settings.server.workers) == (9300, 2)
    assert settings.bus.lease == 12.5
    assert settings.store_url == "memory://"


def test_an_unknown_key_in_a_section_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        from_env(write_toml(tmp_path, '[server]\ncolour = "blue"\n'))


def test_settings_survive_being_handed_to_a_server_process() -> None:
    settings = from_env({"OTPGATE_SECRET_KEY": "00" * 32, "OTPGATE_PORT": "9400",
                         "OTPGATE_DRIVERS_SMS": "console://", "OTPGATE_DATA_DIR": "/srv/x"})
    assert Settings.decode(settings.encode()) == settings


def test_reading_settings_changes_nothing_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.setenv("OTPGATE_PORT", "9191")
    before = dict(os.environ)
    from_env(port=9999, dev=True)
    assert dict(os.environ) == before


def test_the_operator_lowers_the_code_length_minimum_with_a_policy_variable() -> None:
    policy = from_env({"OTPGATE_POLICY_MIN_CODE_LENGTH": "4",
                       "OTPGATE_POLICY_LOCK_TIME": "3600"}).policy
    assert (policy.min_code_length, policy.lock_time) == (4, 3600)
    with pytest.raises(ConfigurationError):
        from_env({"OTPGATE_POLICY_MIN_CODE_LENGTH": "3"})
