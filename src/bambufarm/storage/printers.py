"""The printers the farm manages: add, get, list, update, remove.

Functions take the caller's `AsyncSession` (one transaction, so an API call can change a
printer and write its audit entry atomically) and return frozen `PrinterRecord`s. A record
carries the access code only as its Fernet token: `record.access_code(box)` decrypts it, so
plain codes exist only where someone asked for them and never in a repr or a log line.
"""

import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_code
from bambufarm.storage.errors import DuplicatePrinter, InvalidValue, PrinterNotFound
from bambufarm.storage.paging import DEFAULT_LIMIT, Page, check_window
from bambufarm.storage.secrets import SecretBox
from bambufarm.storage.tables import PrinterRow
from bambufarm.storage.unset import UNSET, Unset

MAX_SERIAL: Final = 32
MAX_NAME: Final = 64
MAX_HOST: Final = 255
# Bambu LAN access codes are 8 characters; 64 leaves room without storing arbitrary blobs.
MAX_ACCESS_CODE: Final = 64
_PRINTABLE_NO_SPACE: Final = frozenset(string.printable) - frozenset(string.whitespace)


@dataclass(frozen=True, slots=True)
class NewPrinter:
    """What is needed to add a printer; port overrides are None to use the model's defaults."""

    serial: str
    name: str
    model_code: str
    host: str
    access_code: str = field(repr=False)
    mqtt_port: int | None = None
    ftps_port: int | None = None
    camera_port: int | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class PrinterChanges:
    """The fields to change on a printer; every field left UNSET keeps its value."""

    name: str | Unset = UNSET
    model_code: str | Unset = UNSET
    host: str | Unset = UNSET
    access_code: str | Unset = field(default=UNSET, repr=False)
    mqtt_port: int | Unset | None = UNSET
    ftps_port: int | Unset | None = UNSET
    camera_port: int | Unset | None = UNSET
    enabled: bool | Unset = UNSET
    tls_pin: str | Unset | None = UNSET


@dataclass(frozen=True, slots=True)
class PrinterRecord:
    """A stored printer; the access code stays encrypted until `access_code(box)` is called."""

    id: int
    serial: str
    name: str
    model_code: str
    host: str
    mqtt_port: int | None
    ftps_port: int | None
    camera_port: int | None
    enabled: bool
    tls_pin: str | None
    created_at: datetime
    updated_at: datetime
    access_code_encrypted: str = field(repr=False)

    def access_code(self, box: SecretBox) -> str:
        """The plain access code (for connecting to the printer; never log or return it)."""
        return box.decrypt(self.access_code_encrypted)


async def add_printer(
    session: AsyncSession, box: SecretBox, new: NewPrinter, *, now: datetime | None = None
) -> PrinterRecord:
    """Store a new printer; `DuplicatePrinter` if its serial is taken."""
    serial = _check_serial(new.serial)
    at = now or datetime.now(UTC)
    row = PrinterRow(
        serial=serial,
        name=_check_name(new.name, serial),
        model_code=_check_model(new.model_code),
        host=_check_host(new.host),
        mqtt_port=_check_port("mqtt_port", new.mqtt_port),
        ftps_port=_check_port("ftps_port", new.ftps_port),
        camera_port=_check_port("camera_port", new.camera_port),
        access_code_encrypted=box.encrypt(_check_access_code(new.access_code)),
        enabled=new.enabled,
        tls_pin=None,
        created_at=at,
        updated_at=at,
    )
    existing = await session.scalar(select(PrinterRow.id).where(PrinterRow.serial == serial))
    if existing is not None:
        raise DuplicatePrinter(f"a printer with serial {serial} is already added")
    try:
        # A savepoint: losing a race with another process leaves the caller's transaction usable.
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise DuplicatePrinter(f"a printer with serial {serial} is already added") from None
    return _record(row)


async def get_printer(session: AsyncSession, serial: str) -> PrinterRecord:
    """The printer with this serial; `PrinterNotFound` if there is none."""
    return _record(await _row(session, serial))


async def list_printers(
    session: AsyncSession,
    *,
    enabled: bool | None = None,
    model_code: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> Page[PrinterRecord]:
    """Printers by name then serial, filtered by enabled, model and a text `search`."""
    check_window(offset, limit)
    query = select(PrinterRow)
    if enabled is not None:
        query = query.where(PrinterRow.enabled == enabled)
    if model_code is not None:
        query = query.where(PrinterRow.model_code == _check_model(model_code))
    if search:
        query = query.where(
            PrinterRow.name.icontains(search, autoescape=True)
            | PrinterRow.serial.icontains(search, autoescape=True)
            | PrinterRow.host.icontains(search, autoescape=True)
        )
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(PrinterRow.name, PrinterRow.serial).offset(offset).limit(limit)
    )
    return Page(tuple(_record(r) for r in rows), total or 0, offset, limit)


async def update_printer(
    session: AsyncSession,
    box: SecretBox,
    serial: str,
    changes: PrinterChanges,
    *,
    now: datetime | None = None,
) -> PrinterRecord:
    """Apply `changes` to the printer with this serial and return it as stored."""
    row = await _row(session, serial)
    if not isinstance(changes.name, Unset):
        row.name = _check_name(changes.name, row.serial)
    if not isinstance(changes.model_code, Unset):
        row.model_code = _check_model(changes.model_code)
    if not isinstance(changes.host, Unset):
        row.host = _check_host(changes.host)
    if not isinstance(changes.access_code, Unset):
        row.access_code_encrypted = box.encrypt(_check_access_code(changes.access_code))
    if not isinstance(changes.mqtt_port, Unset):
        row.mqtt_port = _check_port("mqtt_port", changes.mqtt_port)
    if not isinstance(changes.ftps_port, Unset):
        row.ftps_port = _check_port("ftps_port", changes.ftps_port)
    if not isinstance(changes.camera_port, Unset):
        row.camera_port = _check_port("camera_port", changes.camera_port)
    if not isinstance(changes.enabled, Unset):
        row.enabled = changes.enabled
    if not isinstance(changes.tls_pin, Unset):
        row.tls_pin = _check_pin(changes.tls_pin)
    row.updated_at = now or datetime.now(UTC)
    await session.flush()
    return _record(row)


async def remove_printer(session: AsyncSession, serial: str) -> None:
    """Delete the printer with this serial; `PrinterNotFound` if there is none."""
    await session.delete(await _row(session, serial))
    await session.flush()


async def _row(session: AsyncSession, serial: str) -> PrinterRow:
    row = await session.scalar(select(PrinterRow).where(PrinterRow.serial == serial))
    if row is None:
        raise PrinterNotFound(f"no printer with serial {serial[:MAX_SERIAL]!r}")
    return row


def _record(row: PrinterRow) -> PrinterRecord:
    return PrinterRecord(
        id=row.id,
        serial=row.serial,
        name=row.name,
        model_code=row.model_code,
        host=row.host,
        mqtt_port=row.mqtt_port,
        ftps_port=row.ftps_port,
        camera_port=row.camera_port,
        enabled=row.enabled,
        tls_pin=row.tls_pin,
        created_at=row.created_at,
        updated_at=row.updated_at,
        access_code_encrypted=row.access_code_encrypted,
    )


def _check_serial(serial: str) -> str:
    value = serial.strip()
    if not (0 < len(value) <= MAX_SERIAL and value.isascii() and value.isalnum()):
        raise InvalidValue(
            f"serial {serial[: MAX_SERIAL + 8]!r} must be 1 to {MAX_SERIAL} letters and digits "
            "(a Bambu serial is 15, printed on the printer and shown in its settings)"
        )
    return value


def _check_name(name: str, serial: str) -> str:
    value = name.strip() or serial
    if len(value) > MAX_NAME:
        raise InvalidValue(f"name must be at most {MAX_NAME} characters, not {len(value)}")
    return value


def _check_model(code: str) -> str:
    try:
        return model_by_code(code).code
    except ModelError as err:
        raise InvalidValue(str(err)) from None


def _check_host(host: str) -> str:
    value = host.strip()
    if not value or len(value) > MAX_HOST or any(c.isspace() for c in value):
        raise InvalidValue(
            f"host {host[:MAX_HOST]!r} must be an IP address or host name without spaces"
        )
    return value


def _check_port(name: str, port: int | None) -> int | None:
    if port is not None and not 1 <= port <= 65535:
        raise InvalidValue(f"{name} must be between 1 and 65535, not {port}")
    return port


def _check_access_code(code: str) -> str:
    # The message never repeats the code: it is a secret even when it is wrong.
    if not 0 < len(code) <= MAX_ACCESS_CODE or not set(code) <= _PRINTABLE_NO_SPACE:
        raise InvalidValue(
            f"access code must be 1 to {MAX_ACCESS_CODE} printable characters without spaces "
            "(the printer shows its 8-character code in its network settings)"
        )
    return code


def _check_pin(pin: str | None) -> str | None:
    if pin is not None and not (0 < len(pin) <= 128 and pin.isascii()):
        raise InvalidValue("tls_pin must be 1 to 128 ASCII characters (a certificate digest)")
    return pin
