"""`/api/v1/printers`: list, add (tested first), import a simulator manifest, edit, enable or
disable, remove; and each printer's live status.

Reading needs `view`; changing the farm needs `manage_printers` (admins, admin-scoped keys).
Adding or editing an address, port or access code tests the connection before anything is
saved (`?test=false` skips it, e.g. for a printer that is switched off); a failed test answers
409 with what went wrong: the access code (printer-auth-failed), the certificate
(printer-tls-failed) or the address (printer-offline).

Lists are served from the farm's memory (the fleet's live view), not from the database, so
listing 1,000 printers costs no query.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel

from bambufarm.api.deps import CanManagePrinters, CanView, ServicesDep
from bambufarm.api.errors import BadRequest
from bambufarm.api.printer_schemas import (
    SERIAL_PATTERN,
    ImportedPrinter,
    ImportReport,
    Manifest,
    NewPrinter,
    Printer,
    PrinterPatch,
    model_name_of,
    printer_model,
)
from bambufarm.api.printer_status import PrinterStatus, status_model
from bambufarm.api.schemas import Page, PageParams, problem_responses
from bambufarm.farm.service import (
    FarmPrinter,
    ImportOutcome,
    PrinterEdit,
    PrinterSpec,
    model_code,
)
from bambufarm.fleet.connection import ConnectionState
from bambufarm.protocol.state import GcodeState
from bambufarm.storage.unset import UNSET

router = APIRouter(
    prefix="/api/v1/printers",
    tags=["printers"],
    responses=problem_responses(401, 403, 404, 422, 503),
)

SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]
TestQuery = Annotated[
    bool,
    Query(description="Test the connection before saving (TLS, access code, a first report)."),
]
JSON = "application/json"


def _json(model: BaseModel, status_code: int = status.HTTP_200_OK) -> Response:
    # Serialised by pydantic-core directly: the route's model is already the response, and
    # FastAPI would otherwise validate it a second time (1,000 printers: ~2x the time).
    return Response(model.model_dump_json(), status_code=status_code, media_type=JSON)


def _matches(
    printer: FarmPrinter,
    *,
    state: ConnectionState | None,
    job_state: GcodeState | None,
    model: str | None,
    enabled: bool | None,
    search: str | None,
) -> bool:
    snapshot = printer.snapshot
    record = printer.record
    if state is not None and snapshot.connection.state is not state:
        return False
    if job_state is not None and snapshot.state.job.gcode_state is not job_state:
        return False
    if model is not None and record.model_code != model:
        return False
    if enabled is not None and record.enabled != enabled:
        return False
    if search:
        needle = search.casefold()
        return any(needle in text.casefold() for text in (record.name, record.serial, record.host))
    return True


@router.get("", response_model=Page[Printer], summary="List printers")
async def list_route(
    principal: CanView,
    services: ServicesDep,
    page: PageParams,
    *,
    state: Annotated[ConnectionState | None, Query(description="Connection state.")] = None,
    job_state: Annotated[GcodeState | None, Query(description="Job state, e.g. RUNNING.")] = None,
    model: Annotated[
        str | None, Query(min_length=1, max_length=40, description="Model name or code.")
    ] = None,
    enabled: Annotated[bool | None, Query(description="Only enabled (or disabled).")] = None,
    search: Annotated[
        str | None, Query(min_length=1, max_length=64, description="In name, serial or host.")
    ] = None,
) -> Response:
    """Printers by name, filtered; each with its link and its job at a glance."""
    farm = services.farm
    code = model_code(model) if model is not None else None
    matching = [
        p
        for p in farm.printers()
        if _matches(p, state=state, job_state=job_state, model=code, enabled=enabled, search=search)
    ]
    window = matching[page.offset : page.offset + page.limit]
    body = Page[Printer](
        items=[printer_model(p, farm.wall_time) for p in window],
        total=len(matching),
        offset=page.offset,
        limit=page.limit,
    )
    return _json(body)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Printer,
    summary="Add a printer",
    responses=problem_responses(409),
)
async def add_route(
    body: NewPrinter, principal: CanManagePrinters, services: ServicesDep, test: TestQuery = True
) -> Response:
    """Test the connection, then save the printer and connect it; its access code is kept
    encrypted and never shown again."""
    spec = PrinterSpec(
        serial=body.serial,
        access_code=body.access_code,
        host=body.host,
        name=body.name,
        model=body.model,
        mqtt_port=body.mqtt_port,
        ftps_port=body.ftps_port,
        camera_port=body.camera_port,
        enabled=body.enabled,
    )
    farm = services.farm
    added = await farm.add(spec, actor=principal.actor, test=test)
    return _json(printer_model(added, farm.wall_time), status.HTTP_201_CREATED)


@router.post(
    "/import",
    response_model=ImportReport,
    summary="Import printers from a simulator manifest",
)
async def import_route(
    body: Manifest, principal: CanManagePrinters, services: ServicesDep, test: TestQuery = True
) -> Response:
    """Add every printer of a manifest (each tested first); printers already in the farm are
    left as they are. One result per printer, in the manifest's order."""
    specs = [PrinterSpec.of_manifest(p) for p in body.printers]
    farm = services.farm
    results = await farm.import_printers(specs, actor=principal.actor, test=test)
    items = [
        ImportedPrinter(
            serial=r.serial,
            outcome=r.outcome,
            detail=r.detail,
            printer=printer_model(r.printer, farm.wall_time) if r.printer is not None else None,
        )
        for r in results
    ]

    def count(outcome: ImportOutcome) -> int:
        return sum(1 for r in results if r.outcome is outcome)

    report = ImportReport(
        added=count(ImportOutcome.ADDED),
        existing=count(ImportOutcome.EXISTS),
        failed=count(ImportOutcome.FAILED),
        items=items,
    )
    return _json(report)


@router.get("/{serial}", response_model=Printer, summary="One printer")
async def get_route(serial: SerialPath, principal: CanView, services: ServicesDep) -> Response:
    """The printer's settings (never its access code), link and job at a glance."""
    farm = services.farm
    return _json(printer_model(farm.printer(serial), farm.wall_time))


@router.get("/{serial}/status", response_model=PrinterStatus, summary="A printer's live status")
async def status_route(serial: SerialPath, principal: CanView, services: ServicesDep) -> Response:
    """Everything known about the printer now: job, temperatures, AMS, HMS, firmware…"""
    farm = services.farm
    printer = farm.printer(serial)
    model_name = model_name_of(printer.record.model_code)
    return _json(status_model(printer.snapshot, farm.wall_time, model_name))


@router.patch(
    "/{serial}",
    response_model=Printer,
    summary="Edit a printer",
    responses=problem_responses(409),
)
async def patch_route(
    serial: SerialPath,
    body: PrinterPatch,
    principal: CanManagePrinters,
    services: ServicesDep,
    test: TestQuery = True,
) -> Response:
    """Change settings; a new address, port or access code is tested before it is saved and
    the printer reconnects with it. `enabled: false` is maintenance: the link is closed."""
    given = body.model_fields_set
    for name in ("name", "model", "host", "access_code", "enabled"):
        if name in given and getattr(body, name) is None:
            raise BadRequest(f"{name} cannot be null; leave it out to keep the current value")
    edit = PrinterEdit(
        name=body.name if body.name is not None else UNSET,
        model=body.model if body.model is not None else UNSET,
        host=body.host if body.host is not None else UNSET,
        access_code=body.access_code if body.access_code is not None else UNSET,
        mqtt_port=body.mqtt_port if "mqtt_port" in given else UNSET,
        ftps_port=body.ftps_port if "ftps_port" in given else UNSET,
        camera_port=body.camera_port if "camera_port" in given else UNSET,
        enabled=body.enabled if body.enabled is not None else UNSET,
    )
    farm = services.farm
    updated = await farm.update(serial, edit, actor=principal.actor, test=test)
    return _json(printer_model(updated, farm.wall_time))


@router.post("/{serial}/disable", response_model=Printer, summary="Disable (maintenance)")
async def disable_route(
    serial: SerialPath, principal: CanManagePrinters, services: ServicesDep
) -> Response:
    """Close the printer's link and keep it out of the farm's work until enabled again."""
    farm = services.farm
    updated = await farm.update(serial, PrinterEdit(enabled=False), actor=principal.actor)
    return _json(printer_model(updated, farm.wall_time))


@router.post("/{serial}/enable", response_model=Printer, summary="Enable")
async def enable_route(
    serial: SerialPath, principal: CanManagePrinters, services: ServicesDep
) -> Response:
    """Connect a disabled printer again (or retry now one whose link failed)."""
    farm = services.farm
    updated = await farm.update(serial, PrinterEdit(enabled=True), actor=principal.actor)
    if updated.record.enabled and not updated.snapshot.connection.connected:
        # Already enabled: "enable" is also how an operator says "retry now".
        await farm.fleet.enable(serial)
    return _json(printer_model(farm.printer(serial), farm.wall_time))


@router.delete("/{serial}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a printer")
async def delete_route(
    serial: SerialPath, principal: CanManagePrinters, services: ServicesDep
) -> Response:
    """Close the printer's link and delete it; its event history stays."""
    await services.farm.remove(serial, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
