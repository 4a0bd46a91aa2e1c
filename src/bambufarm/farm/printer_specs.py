"""What the farm is asked and what it answers: printers to add and edits, a farm printer (stored
record plus live snapshot), import outcomes, and the small rules that turn them into a fleet
configuration (model names to codes, ports to defaults, audit details without secrets).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, Self, TypeVar

from bambufarm.fleet.config import FTPS_PORT, PrinterConfig, PrinterSnapshot
from bambufarm.fleet.session import MQTT_PORT
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_code, model_by_name
from bambufarm.settings import PrinterTlsMode, Settings
from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.printers import PrinterRecord
from bambufarm.storage.unset import UNSET, Unset

T = TypeVar("T")


class ManifestPortsLike(Protocol):
    """A simulator manifest's ports of one printer (the simulator's own type or the API's)."""

    @property
    def mqtt(self) -> int: ...
    @property
    def ftps(self) -> int: ...
    @property
    def camera(self) -> int | None: ...


class ManifestPrinterLike(Protocol):
    """A simulator manifest's printer (the simulator's own type or the API's)."""

    @property
    def serial(self) -> str: ...
    @property
    def access_code(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def ports(self) -> ManifestPortsLike: ...


@dataclass(frozen=True, slots=True)
class PrinterSpec:
    """A printer to add; without a host, the discovery list must know its serial."""

    serial: str
    access_code: str = field(repr=False)
    host: str | None = None
    name: str = ""
    model: str | None = None  # a model code ("C12") or name ("P1S"); None: find it out
    mqtt_port: int | None = None
    ftps_port: int | None = None
    camera_port: int | None = None
    enabled: bool = True

    @classmethod
    def of_manifest(cls, printer: ManifestPrinterLike) -> Self:
        """The printer of a simulator manifest, with every port the manifest gives."""
        return cls(
            serial=printer.serial,
            access_code=printer.access_code,
            host=printer.host,
            name=printer.name,
            model=printer.model,
            mqtt_port=printer.ports.mqtt,
            ftps_port=printer.ports.ftps,
            camera_port=printer.ports.camera,
        )


@dataclass(frozen=True, slots=True)
class PrinterEdit:
    """Changes to a printer; fields left UNSET keep their value, None resets a port."""

    name: str | Unset = UNSET
    model: str | Unset = UNSET
    host: str | Unset = UNSET
    access_code: str | Unset = field(default=UNSET, repr=False)
    mqtt_port: int | Unset | None = UNSET
    ftps_port: int | Unset | None = UNSET
    camera_port: int | Unset | None = UNSET
    enabled: bool | Unset = UNSET


@dataclass(frozen=True, slots=True)
class FarmPrinter:
    """A printer as stored and as the fleet sees it right now."""

    record: PrinterRecord
    snapshot: PrinterSnapshot

    @property
    def serial(self) -> str:
        """The printer's serial."""
        return self.record.serial


class ImportOutcome(StrEnum):
    """What became of one printer of an import."""

    ADDED = "added"
    EXISTS = "exists"  # a printer with this serial is already in the farm: left as it is
    FAILED = "failed"  # the connection test failed or a value was refused: not saved


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One printer of an import and what became of it."""

    serial: str
    outcome: ImportOutcome
    detail: str
    printer: FarmPrinter | None = None


def tls_policy(settings: Settings) -> TlsPolicy:
    """How the fleet trusts printer certificates, from the settings."""
    match settings.printer_tls:
        case PrinterTlsMode.INSECURE:
            return TlsPolicy(TlsMode.INSECURE)
        case PrinterTlsMode.VERIFY | PrinterTlsMode.TOFU:
            return TlsPolicy.default(settings.data_dir, settings.printer_ca_file)


def printer_config(
    *,
    serial: str,
    host: str,
    access_code: str,
    name: str,
    model: str,
    mqtt_port: int | None,
    ftps_port: int | None,
) -> PrinterConfig:
    try:
        return PrinterConfig(
            serial=serial,
            host=host.strip(),
            access_code=access_code,
            name=name.strip(),
            model=model,
            mqtt_port=mqtt_port or MQTT_PORT,
            ftps_port=ftps_port or FTPS_PORT,
        )
    except ValueError as err:
        # PrinterConfig's messages name fields and serials, never the access code.
        raise InvalidValue(str(err)) from None


def link_of(config: PrinterConfig) -> tuple[str, int, int, str]:
    """What decides whether a connection works: address, ports and access code."""
    return (config.host, config.mqtt_port, config.ftps_port, config.access_code)


def model_code(model: str) -> str:
    """A model code from a code ("C12") or a name ("P1S", "a1 mini")."""
    text = model.strip()
    for lookup in (model_by_code, model_by_name):
        try:
            return lookup(text).code
        except ModelError:
            continue
    raise InvalidValue(f"unknown printer model {text[:40]!r}; give a name such as P1S or X1C")


def pick(value: T | Unset, current: T) -> T:
    return current if isinstance(value, Unset) else value


def changed_fields(edit: PrinterEdit) -> list[str]:
    names = [
        "name", "model", "host", "access_code", "mqtt_port", "ftps_port", "camera_port", "enabled",
    ]  # fmt: skip
    return [name for name in names if not isinstance(getattr(edit, name), Unset)]


def edit_action(before: PrinterRecord, after: PrinterRecord) -> str:
    if before.enabled != after.enabled:
        return "printer.enable" if after.enabled else "printer.disable"
    return "printer.update"


def public_details(record: PrinterRecord, *, tested: bool) -> dict[str, Any]:
    """What the audit log keeps about a printer: never its access code."""
    return {
        "name": record.name,
        "model": record.model_code,
        "host": record.host,
        "mqtt_port": record.mqtt_port,
        "ftps_port": record.ftps_port,
        "enabled": record.enabled,
        "tested": tested,
    }
