"""The server's one typed settings object, from `BAMBUFARM_*` variables and an optional TOML file.

Sources, strongest first: environment variables (`BAMBUFARM_PORT=9000`), then the TOML file
named by `--config` or `BAMBUFARM_CONFIG`, then the defaults below. Unknown keys are errors in
both places — a misspelt `BAMBUFARM_DATABSE_URL` silently ignored would put a farm's data in
the wrong database. Relative paths in the TOML file are relative to the file itself.

`load_settings()` is called from `main()`; nothing here runs at import.
"""

import base64
import binascii
import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "BAMBUFARM_"
CONFIG_ENV = "BAMBUFARM_CONFIG"
# Variables under this prefix belong to the test suite (e.g. BAMBUFARM_TEST_PG_URL), not to the
# server, so they are not "unknown settings".
RESERVED_ENV_PREFIX = "BAMBUFARM_TEST_"
# The CLI's client variables: an operator exports them for `bambufarm printers ...`, and a
# `bambufarm serve` started from the same shell must not refuse them as unknown settings.
CLIENT_ENV = frozenset({"BAMBUFARM_URL", "BAMBUFARM_API_KEY"})
DATABASE_FILE = "bambufarm.db"
_PATH_FIELDS = frozenset({"data_dir", "tls_cert", "tls_key", "printer_ca_file"})
# Fernet keys are 32 random bytes in URL-safe base64: 44 characters with one "=" of padding.
_FERNET_KEY_BYTES = 32


class SettingsError(ValueError):
    """Settings that cannot be used: unknown keys, bad values or an unreadable config file."""


class LogLevel(StrEnum):
    """How much the server logs."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class PrinterTlsMode(StrEnum):
    """How the server checks each printer's TLS certificate (design.md §7)."""

    # The chain must verify against printer_ca_file and the certificate CN must be the serial.
    VERIFY = "verify"
    # Verify when a CA set is configured; otherwise pin the first certificate seen per printer.
    TOFU = "tofu"
    # No check at all: only for a lab where the operator asked for it.
    INSECURE = "insecure"


class Settings(BaseSettings):
    """Everything the server reads at start; immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    data_dir: Path = Path("data")
    # Defaults to an SQLite file in data_dir; PostgreSQL as postgresql+asyncpg://user@host/db.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8888, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A Fernet key for secrets at rest; without one a key file in data_dir is used (created once).
    secret_key: SecretStr | None = None
    log_level: LogLevel = LogLevel.INFO
    printer_tls: PrinterTlsMode = PrinterTlsMode.TOFU
    printer_ca_file: Path | None = None
    # Bambu printers announce themselves by SSDP NOTIFY to UDP 2021 (protocol.md §3).
    ssdp_port: int = Field(default=2021, ge=1, le=65535)
    # The print queue (docs/queue.md). Pre-staging uploads the next job's file to a printer
    # while it still prints, so a cleared plate starts the next job in about a second.
    queue_prestage: bool = True
    # Attempts per job; a start that failed (upload, refusal, hang) is queued again until then.
    queue_max_attempts: int = Field(default=3, ge=1, le=20)
    # A print that failed after it began (a clog, spaghetti) is queued again only if set.
    queue_retry_print_failures: bool = False
    # CIE76 ΔE allowed between the file's and the tray's colour; 0 asks for the same hex colour.
    queue_color_tolerance: float = Field(default=0.0, ge=0.0, le=100.0)
    # Seconds a started print may stay in PREPARE (heating, levelling, AMS loading) before the
    # start counts as hung: real firmware shows no error when an AMS mapping hangs.
    queue_prepare_timeout_s: float = Field(default=1800.0, ge=60.0, le=86_400.0)
    # Delete the queue's own files (bf-<hash>.gcode.3mf) from printers' cards once no job
    # needs them (docs/queue.md, SD-card housekeeping); anything else on a card is never touched.
    queue_sd_cleanup: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the TOML values passed in by `load_settings`; no .env file."""
        return env_settings, init_settings

    @model_validator(mode="before")
    @classmethod
    def _default_database(cls, data: Any) -> Any:
        # The default database lives in data_dir, so it is derived from the data_dir given.
        if isinstance(data, dict) and not str(data.get("database_url") or "").strip():
            data_dir = Path(str(data.get("data_dir") or cls.model_fields["data_dir"].default))
            database = data_dir.expanduser().resolve() / DATABASE_FILE
            data = {**data, "database_url": f"sqlite+aiosqlite:///{database}"}
        return data

    @field_validator("log_level", "printer_tls", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once at load, so a later chdir cannot move the farm's data.
        return value.expanduser().resolve()

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        try:
            decoded = base64.urlsafe_b64decode(raw.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            decoded = b""
        if len(decoded) != _FERNET_KEY_BYTES:
            # The message must not echo the value: it is a secret even when malformed.
            raise ValueError(
                "secret_key must be a Fernet key (32 bytes in URL-safe base64, 44 characters); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            )
        return SecretStr(raw)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        url = value.strip()
        # Plain scheme names are what people paste; the server needs the async drivers.
        for plain, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        if url and not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            scheme = url.split("://", 1)[0] if "://" in url else "(none)"
            raise ValueError(
                f"database_url scheme {scheme!r} is not supported; use "
                "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host/db"
            )
        return url

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together (or neither)")
        if self.printer_tls is PrinterTlsMode.VERIFY and self.printer_ca_file is None:
            raise ValueError(
                "printer_tls 'verify' needs printer_ca_file (the CA certificates the printers' "
                "certificates are checked against); or use 'tofu'"
            )
        return self


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from the environment and the TOML file (`config_file`, else `BAMBUFARM_CONFIG`)."""
    env = os.environ
    _reject_unknown_env(env)
    path = config_file
    if path is None and env.get(CONFIG_ENV, "").strip():
        path = Path(env[CONFIG_ENV].strip())
    from_file = _read_toml(path) if path is not None else {}
    try:
        return Settings(**from_file)
    except ValidationError as err:
        raise SettingsError(_explain(err, path)) from None


def _reject_unknown_env(env: Mapping[str, str]) -> None:
    known = (
        {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {CONFIG_ENV} | CLIENT_ENV
    )
    unknown = sorted(
        name
        for name in env
        if name.upper().startswith(ENV_PREFIX)
        and not name.upper().startswith(RESERVED_ENV_PREFIX)
        and name.upper() not in known
    )
    if unknown:
        raise SettingsError(
            f"unknown environment variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"config file {path} cannot be read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"config file {path} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(Settings.model_fields))}"
        )
    base = path.resolve().parent
    for key in _PATH_FIELDS & set(data):
        value = data[key]
        if isinstance(value, str):
            data[key] = str(base / Path(value).expanduser())
    return data


def _explain(err: ValidationError, path: Path | None) -> str:
    lines = []
    for problem in err.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        where = f"{field} (env {ENV_PREFIX}{field.upper()}"
        where += f" or key {field!r} in {path})" if path is not None else ")"
        lines.append(f"{where}: {problem['msg']}")
    return "invalid settings: " + "; ".join(lines)
