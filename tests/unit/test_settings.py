"""Settings: defaults, environment over TOML file, unknown keys rejected, bad values explained."""

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

import bambufarm.settings as settings_module
from bambufarm.app import dispatcher_options_of
from bambufarm.settings import (
    LogLevel,
    PrinterTlsMode,
    Settings,
    SettingsError,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no BAMBUFARM_* variable set (the developer's shell may set some)."""
    for name in list(os.environ):
        if name.upper().startswith("BAMBUFARM_"):
            monkeypatch.delenv(name)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_bind_loopback_and_keep_data_in_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8888
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bambufarm.db'}"
    assert settings.printer_tls is PrinterTlsMode.TOFU
    assert settings.ssdp_port == 2021
    assert settings.secret_key is None
    assert settings.tls_cert is None
    assert settings.log_level is LogLevel.INFO


def test_environment_sets_fields_and_the_default_database_follows_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAMBUFARM_PORT", "9000")
    monkeypatch.setenv("BAMBUFARM_DATA_DIR", str(tmp_path / "farm"))
    monkeypatch.setenv("bambufarm_log_level", "DEBUG")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.log_level is LogLevel.DEBUG
    assert settings.database_url.endswith(f"{tmp_path / 'farm' / 'bambufarm.db'}")


def test_toml_file_from_argument_or_variable_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_toml(
        tmp_path / "farm.toml", 'host = "127.0.0.2"\nport = 8000\nssdp_port = 3021\n'
    )
    assert load_settings(config).port == 8000
    monkeypatch.setenv("BAMBUFARM_CONFIG", str(config))
    from_var = load_settings()
    assert (from_var.host, from_var.port, from_var.ssdp_port) == ("127.0.0.2", 8000, 3021)
    monkeypatch.setenv("BAMBUFARM_PORT", "8100")
    assert load_settings().port == 8100


def test_explicit_config_argument_beats_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAMBUFARM_CONFIG", str(write_toml(tmp_path / "a.toml", "port = 1111\n")))
    assert load_settings(write_toml(tmp_path / "b.toml", "port = 2222\n")).port == 2222


def test_unknown_toml_key_is_rejected_with_its_name_and_file(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "farm.toml", 'databse_url = "sqlite:///x.db"\n')
    with pytest.raises(SettingsError, match=r"farm\.toml: unknown key\(s\) databse_url"):
        load_settings(config)


def test_unknown_table_in_toml_is_rejected(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "farm.toml", "[server]\nport = 1\n")
    with pytest.raises(SettingsError, match="unknown key"):
        load_settings(config)


def test_unknown_environment_variable_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAMBUFARM_DATABSE_URL", "sqlite:///x.db")
    with pytest.raises(SettingsError, match="BAMBUFARM_DATABSE_URL"):
        load_settings()


def test_test_suite_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAMBUFARM_TEST_PG_URL", "postgresql://postgres@127.0.0.1/postgres")
    assert load_settings().port == 8888


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("BAMBUFARM_PORT", "0", "port"),
        ("BAMBUFARM_PORT", "http", "port"),
        ("BAMBUFARM_SSDP_PORT", "70000", "ssdp_port"),
        ("BAMBUFARM_PRINTER_TLS", "maybe", "printer_tls"),
        ("BAMBUFARM_LOG_LEVEL", "loud", "log_level"),
    ],
)
def test_bad_values_name_the_field_and_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"{field} \(env {variable}\)"):
        load_settings()


def test_bad_value_in_file_names_the_file(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "farm.toml", 'port = "many"\n')
    with pytest.raises(SettingsError, match=r"key 'port' in .*farm\.toml"):
        load_settings(config)


def test_tls_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAMBUFARM_TLS_CERT", "/etc/farm/cert.pem")
    with pytest.raises(SettingsError, match="tls_cert and tls_key must be given together"):
        load_settings()
    monkeypatch.setenv("BAMBUFARM_TLS_KEY", "/etc/farm/key.pem")
    assert load_settings().tls_key == Path("/etc/farm/key.pem")


def test_verify_mode_needs_a_ca_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAMBUFARM_PRINTER_TLS", "VERIFY")
    with pytest.raises(SettingsError, match="needs printer_ca_file"):
        load_settings()
    monkeypatch.setenv("BAMBUFARM_PRINTER_CA_FILE", "/etc/farm/bambu-ca.pem")
    assert load_settings().printer_tls is PrinterTlsMode.VERIFY


def test_secret_key_must_be_a_fernet_key_and_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BAMBUFARM_SECRET_KEY", "hunter2-not-a-key")
    with pytest.raises(SettingsError, match="Fernet key") as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("BAMBUFARM_SECRET_KEY", key)
    settings = load_settings()
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == key
    assert key not in repr(settings)
    assert key not in str(settings)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://farm@db/farm", "postgresql+asyncpg://farm@db/farm"),
        ("postgresql://farm@db:5433/farm", "postgresql+asyncpg://farm@db:5433/farm"),
        ("postgresql+asyncpg://farm@db/farm", "postgresql+asyncpg://farm@db/farm"),
        ("sqlite:////srv/farm.db", "sqlite+aiosqlite:////srv/farm.db"),
    ],
)
def test_database_url_gets_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("BAMBUFARM_DATABASE_URL", given)
    assert load_settings().database_url == expected


def test_unsupported_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAMBUFARM_DATABASE_URL", "mysql://farm@db/farm")
    with pytest.raises(SettingsError, match="'mysql' is not supported"):
        load_settings()


def test_relative_paths_in_toml_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    config = write_toml(
        tmp_path / "etc" / "farm.toml",
        'data_dir = "../var/farm"\ntls_cert = "c.pem"\ntls_key = "k.pem"\n',
    )
    monkeypatch.chdir("/")
    settings = load_settings(config)
    assert settings.data_dir == tmp_path / "var" / "farm"
    assert settings.tls_cert == tmp_path / "etc" / "c.pem"


def test_missing_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(write_toml(tmp_path / "bad.toml", "port = = 1\n"))
    (tmp_path / "bin.toml").write_bytes(b"port = \xff\n")
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(tmp_path / "bin.toml")


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_nothing_is_loaded_at_import() -> None:
    assert not any(isinstance(value, Settings) for value in vars(settings_module).values())


def test_queue_settings_reach_the_dispatcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = dispatcher_options_of(load_settings())
    assert (defaults.prestage, defaults.retry.max_attempts, defaults.color_tolerance) == (
        True, 3, 0.0,
    )  # fmt: skip
    monkeypatch.setenv("BAMBUFARM_QUEUE_PRESTAGE", "false")
    monkeypatch.setenv("BAMBUFARM_QUEUE_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("BAMBUFARM_QUEUE_RETRY_PRINT_FAILURES", "true")
    monkeypatch.setenv("BAMBUFARM_QUEUE_COLOR_TOLERANCE", "12.5")
    monkeypatch.setenv("BAMBUFARM_QUEUE_PREPARE_TIMEOUT_S", "900")
    monkeypatch.setenv("BAMBUFARM_QUEUE_SD_CLEANUP", "0")
    options = dispatcher_options_of(load_settings())
    assert options.prestage is False
    assert options.retry.max_attempts == 5
    assert options.retry.retry_print_failures is True
    assert options.color_tolerance == 12.5
    assert options.limits.prepare_s == 900.0
    assert options.sd_cleanup is False
    monkeypatch.setenv("BAMBUFARM_QUEUE_MAX_ATTEMPTS", "0")
    with pytest.raises(SettingsError, match="queue_max_attempts"):
        load_settings()
