"""The database tables (SQLAlchemy 2 declarative); the same schema on SQLite and PostgreSQL.

Rows stay inside `bambufarm.storage`: repository modules turn them into frozen dataclasses.
The schema is created by Alembic (`migrations/`), never by `metadata.create_all`; a test
compares the migrated schema with this module on both dialects.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints, so a later migration can alter them on SQLite (batch mode recreates the
# table and needs every constraint to have a name).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("viewer", "operator", "admin")
# JSONB on PostgreSQL (indexable, compact); JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids for the
# append-only tables (events at 1,000 printers can pass 2**31 rows in a few years).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC-aware in Python, whatever the dialect stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC (without tzinfo on SQLite, which cannot keep it)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored: give a tzinfo")
        utc = value.astimezone(UTC)
        # SQLite stores text; one fixed zone keeps string order equal to time order.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite hands back naive; PostgreSQL already returns UTC-aware."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention and the UTC timestamp type."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JsonType}  # noqa: RUF012


class PrinterRow(Base):
    """A printer the farm manages; the access code is a Fernet token, never plain text."""

    __tablename__ = "printers"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    model_code: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    mqtt_port: Mapped[int | None]
    ftps_port: Mapped[int | None]
    camera_port: Mapped[int | None]
    access_code_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool]
    # SHA-256 of the printer's certificate (hex) once trusted on first use.
    tls_pin: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class UserRow(Base):
    """A person who signs in; `password_hash` is an argon2 PHC string."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    must_change_password: Mapped[bool]
    disabled: Mapped[bool]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ApiKeyRow(Base):
    """A machine credential `bf_<id>_<secret>`: the id is public, only the secret's hash is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JsonType)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SessionRow(Base):
    """A signed-in browser: the cookie token and its CSRF token are stored as hashes only."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditRow(Base):
    """One control or admin action: who, what, which printer, when.

    Actor and serial are plain text, not foreign keys: the record outlives the user or printer.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_printer_serial_at", "printer_serial", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    printer_serial: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]]
    at: Mapped[datetime] = mapped_column(index=True)


class EventRow(Base):
    """One fleet event kept for history: the printer, the event kind, its JSON body."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_serial_at", "serial", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    serial: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]]
    at: Mapped[datetime] = mapped_column(index=True)


# The library, job and history tables, and the plate state, live in their own modules on this
# same `Base`; importing them here keeps `Base.metadata` (migrations, the schema test) complete
# whoever imports first.
import bambufarm.storage.job_tables  # noqa: E402
import bambufarm.storage.plates  # noqa: E402, F401
