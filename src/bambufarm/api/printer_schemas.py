"""Pydantic models of the printer routes: printers, requests to add and edit them, command
outcomes, events, discovery and files. The live status is in `printer_status`.

An access code goes in (add, edit, import) and never comes out: no response model has one.
"""

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from bambufarm.api.printer_status import ConnectionOut, HmsOut, WallTime, connection_out
from bambufarm.farm.files import PrinterFile
from bambufarm.farm.service import FarmPrinter, ImportOutcome
from bambufarm.fleet.commands import CommandResult, CommandStatus
from bambufarm.fleet.config import FTPS_PORT
from bambufarm.fleet.discovery import DiscoveredPrinter
from bambufarm.fleet.events import Event
from bambufarm.fleet.session import MQTT_PORT
from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_code
from bambufarm.protocol.state import GcodeState
from bambufarm.storage.events import EventRecord

SERIAL_PATTERN: Final = r"^[A-Za-z0-9]{1,32}$"
# Printable ASCII without spaces: what the storage accepts as an access code.
ACCESS_CODE_PATTERN: Final = r"^[!-~]{1,64}$"
# An IPv4/IPv6 address or a host name (RFC 1123 characters): nothing else is connected to.
HOST_PATTERN: Final = r"^[A-Za-z0-9:](?:[A-Za-z0-9.:-]{0,253}[A-Za-z0-9])?$"

Serial = Annotated[str, Field(pattern=SERIAL_PATTERN, examples=["01P00A123456789"])]
Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[
    str,
    Field(
        pattern=HOST_PATTERN,
        description="IP address or host name.",
        examples=["192.168.1.40"],
    ),
]
AccessCode = Annotated[
    str,
    Field(
        pattern=ACCESS_CODE_PATTERN,
        description="The LAN access code from the printer's screen (write-only).",
        examples=["12345678"],
    ),
]


# ------------------------------------------------------------------------------ printers


class JobSummary(BaseModel):
    """The job at a glance."""

    gcode_state: GcodeState
    file: str
    subtask_name: str
    progress: int | None
    remaining_minutes: int | None
    layer: int | None
    total_layers: int | None
    print_error: int


class TemperatureSummary(BaseModel):
    """Main temperatures in °C."""

    nozzle: float | None
    nozzle_target: float | None
    bed: float | None
    bed_target: float | None
    chamber: float | None


class Printer(BaseModel):
    """A printer: its settings (never the access code), its link and its job at a glance."""

    serial: str
    name: str
    model: str = Field(description="Model code, e.g. C12.", examples=["C12"])
    model_name: str = Field(examples=["P1S"])
    host: str
    mqtt_port: int
    ftps_port: int
    camera_port: int | None
    enabled: bool
    connection: ConnectionOut
    job: JobSummary
    temperatures: TemperatureSummary
    hms_count: int = Field(description="Active HMS conditions.")
    developer_mode: bool | None
    created_at: datetime
    updated_at: datetime


def model_name_of(code: str) -> str:
    """The short model name of a model code ("C12" → "P1S"), or the code when unknown."""
    try:
        return model_by_code(code).name
    except ModelError:
        return code


def printer_model(printer: FarmPrinter, wall_time: WallTime) -> Printer:
    """The API view of a farm printer."""
    record, snapshot = printer.record, printer.snapshot
    state = snapshot.state
    job, temps = state.job, state.temperatures
    return Printer(
        serial=record.serial,
        name=record.name,
        model=record.model_code,
        model_name=model_name_of(record.model_code),
        host=record.host,
        mqtt_port=record.mqtt_port or MQTT_PORT,
        ftps_port=record.ftps_port or FTPS_PORT,
        camera_port=record.camera_port,
        enabled=record.enabled,
        connection=connection_out(snapshot.connection, wall_time),
        job=JobSummary(
            gcode_state=job.gcode_state,
            file=job.file,
            subtask_name=job.subtask_name,
            progress=job.progress,
            remaining_minutes=job.remaining_minutes,
            layer=job.layer,
            total_layers=job.total_layers,
            print_error=job.print_error,
        ),
        temperatures=TemperatureSummary(
            nozzle=temps.nozzle,
            nozzle_target=temps.nozzle_target,
            bed=temps.bed,
            bed_target=temps.bed_target,
            chamber=temps.chamber,
        ),
        hms_count=len(state.hms),
        developer_mode=state.developer_mode,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


class NewPrinter(BaseModel):
    """A printer to add. Without `host`, the printer must be in the discovery list."""

    model_config = ConfigDict(extra="forbid")

    serial: Serial
    access_code: AccessCode
    host: Host | None = Field(default=None, description="Omit for a discovered printer.")
    name: str = Field(default="", max_length=64, description="Defaults to the announced name.")
    model: str | None = Field(
        default=None,
        max_length=40,
        description="Model name or code (P1S, C12); by default the printer says.",
    )
    mqtt_port: Port | None = Field(default=None, description="Default 8883.")
    ftps_port: Port | None = Field(default=None, description="Default 990.")
    camera_port: Port | None = None
    enabled: bool = True


class PrinterPatch(BaseModel):
    """Fields to change; absent fields stay, a null port goes back to the default."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=64)
    model: str | None = Field(default=None, min_length=1, max_length=40)
    host: Host | None = None
    access_code: AccessCode | None = None
    mqtt_port: Port | None = None
    ftps_port: Port | None = None
    camera_port: Port | None = None
    enabled: bool | None = None


class ManifestPorts(BaseModel):
    """A simulated printer's ports (the fields the farm uses; others are ignored)."""

    mqtt: Port
    ftps: Port
    camera: Port | None = None


class ManifestPrinter(BaseModel):
    """One printer of a simulator manifest (`bambufarm sim --manifest sim.json`)."""

    serial: Serial
    model: str = Field(max_length=40)
    name: str = Field(default="", max_length=64)
    host: Host
    access_code: AccessCode
    ports: ManifestPorts


class Manifest(BaseModel):
    """A simulator manifest, as `bambufarm sim --manifest` writes it."""

    version: int = Field(default=1, ge=1, le=1)
    ca_cert: str | None = Field(default=None, description="Ignored: the server's TLS trust rules.")
    printers: list[ManifestPrinter] = Field(max_length=10_000)


class ImportedPrinter(BaseModel):
    """What became of one printer of an import."""

    serial: str
    outcome: ImportOutcome
    detail: str
    printer: Printer | None


class ImportReport(BaseModel):
    """Per printer of the import, in order, and the counts."""

    added: int
    existing: int
    failed: int
    items: list[ImportedPrinter]


# ------------------------------------------------------------------------------ commands


class AckOut(BaseModel):
    """The printer's reply to a command."""

    result: str
    reason: str | None
    err_code: int | None


class CommandOutcome(BaseModel):
    """A command the printer acknowledged (failures are problem responses)."""

    serial: str
    command: str
    status: CommandStatus
    reason: str
    sent: bool
    ack: AckOut | None


def command_outcome(serial: str, command: str, result: CommandResult) -> CommandOutcome:
    """The API view of a command result."""
    ack = result.ack
    return CommandOutcome(
        serial=serial,
        command=command,
        status=result.status,
        reason=result.reason,
        sent=result.sent,
        ack=AckOut(result=ack.result.value, reason=ack.reason, err_code=ack.err_code)
        if ack is not None
        else None,
    )


# ------------------------------------------------------------------------------ events, HMS


class EventOut(BaseModel):
    """One fleet event: which printer, what kind, when, and its fields (by kind)."""

    id: int | None = Field(description="The stored event's id; null for live events.")
    serial: str
    kind: str = Field(examples=["connection_changed", "print_finished", "hms_raised"])
    at: datetime
    data: dict[str, Any]


def event_out(event: Event, wall_time: WallTime) -> EventOut:
    """The API view of a live event."""
    data = event.to_dict()
    for key in ("kind", "serial", "at"):
        data.pop(key, None)
    return EventOut(
        id=None, serial=event.serial, kind=event.kind, at=wall_time(event.at), data=data
    )


def stored_event_out(record: EventRecord) -> EventOut:
    """The API view of a stored event."""
    return EventOut(
        id=record.id, serial=record.serial, kind=record.kind, at=record.at, data=dict(record.body)
    )


class PrinterHms(BaseModel):
    """One printer's active HMS conditions."""

    serial: str
    name: str
    items: list[HmsOut]


class HmsList(BaseModel):
    """Active HMS conditions of every printer that has any."""

    items: list[PrinterHms]


# ------------------------------------------------------------------------------ discovery


class Discovered(BaseModel):
    """A printer announcing itself on the LAN that is not in the farm yet."""

    serial: str
    model: str
    model_name: str
    name: str
    host: str
    connect: str = Field(description="lan, cloud or farm.")
    bind: str
    firmware: str
    signal: int | None = Field(description="Wi-Fi RSSI in dBm; null on Ethernet.")
    last_seen: datetime


class DiscoveryList(BaseModel):
    """Discovered printers, and whether the listener is listening (and why not)."""

    listening: bool
    error: str | None
    items: list[Discovered]


def discovered_out(printer: DiscoveredPrinter, wall_time: WallTime) -> Discovered:
    """The API view of a discovered printer."""
    return Discovered(
        serial=printer.serial,
        model=printer.model_code,
        model_name=printer.model_name,
        name=printer.name,
        host=printer.address,
        connect=str(printer.connect),
        bind=str(printer.bind),
        firmware=printer.firmware,
        signal=printer.signal,
        last_seen=wall_time(printer.last_seen),
    )


# ------------------------------------------------------------------------------ files


class FileOut(BaseModel):
    """One entry of a printer directory."""

    path: str
    name: str
    size: int | None
    modified: datetime | None
    is_dir: bool


class FileList(BaseModel):
    """A printer directory."""

    serial: str
    path: str
    items: list[FileOut]


def file_out(entry: PrinterFile) -> FileOut:
    """The API view of a file entry."""
    return FileOut(
        path=entry.path,
        name=entry.name,
        size=entry.size,
        modified=entry.modified,
        is_dir=entry.is_dir,
    )
