"""Event history, HMS conditions and the discovery list.

* `GET /api/v1/events` and `/api/v1/printers/{serial}/events` — the stored history (connection
  changes, HMS, job starts and ends, command answers), newest first, by cursor: pass
  `next_cursor` back as `cursor` for the next, older page.
* `GET /api/v1/hms` and `/api/v1/printers/{serial}/hms` — active HMS conditions, decoded
  (module, severity, AMS unit and slot, the wiki page).
* `GET /api/v1/discovery` — printers announcing themselves on the LAN that are not added yet;
  add one with `POST /api/v1/printers` giving only its serial and access code.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from bambufarm.api.deps import CanView, ServicesDep
from bambufarm.api.printer_schemas import (
    SERIAL_PATTERN,
    Discovered,
    DiscoveryList,
    EventOut,
    HmsList,
    PrinterHms,
    discovered_out,
    model_name_of,
    stored_event_out,
)
from bambufarm.api.printer_status import hms_list
from bambufarm.api.schemas import CursorPage, problem_responses
from bambufarm.app import Services
from bambufarm.storage.events import MAX_KIND, event_history
from bambufarm.storage.paging import DEFAULT_LIMIT, MAX_LIMIT, Cursor

router = APIRouter(tags=["events"], responses=problem_responses(401, 403, 404, 422, 503))

SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]
KindsQuery = Annotated[
    list[str] | None,
    Query(
        alias="kind",
        max_length=20,
        description="Only these kinds (repeat), e.g. print_finished, hms_raised.",
    ),
]
SinceQuery = Annotated[datetime | None, Query(description="At or after (ISO 8601 with zone).")]
UntilQuery = Annotated[datetime | None, Query(description="Before (ISO 8601 with zone).")]
CursorQuery = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")]
JSON = "application/json"


async def _history(
    services: Services,
    *,
    serial: str | None,
    kinds: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> Response:
    wanted = {kind[:MAX_KIND] for kind in kinds} if kinds else None
    after = Cursor.decode(cursor) if cursor else None
    async with services.database.session(readonly=True) as session:
        page = await event_history(
            session, serial=serial, kinds=wanted, since=since, until=until, after=after,
            limit=limit,
        )  # fmt: skip
    body = CursorPage[EventOut](
        items=[stored_event_out(record) for record in page.items],
        next_cursor=page.next_cursor.encode() if page.next_cursor is not None else None,
    )
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/api/v1/events", response_model=CursorPage[EventOut], summary="Event history")
async def events_route(
    principal: CanView,
    services: ServicesDep,
    *,
    serial: Annotated[str | None, Query(pattern=SERIAL_PATTERN)] = None,
    kind: KindsQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
) -> Response:
    """The farm's stored events, newest first."""
    return await _history(
        services, serial=serial, kinds=kind, since=since, until=until, cursor=cursor, limit=limit
    )


@router.get(
    "/api/v1/printers/{serial}/events",
    response_model=CursorPage[EventOut],
    summary="A printer's event history",
)
async def printer_events_route(
    serial: SerialPath,
    principal: CanView,
    services: ServicesDep,
    *,
    kind: KindsQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = DEFAULT_LIMIT,
) -> Response:
    """One printer's stored events, newest first (also after it was removed)."""
    return await _history(
        services, serial=serial, kinds=kind, since=since, until=until, cursor=cursor, limit=limit
    )


@router.get("/api/v1/hms", response_model=HmsList, summary="Active HMS conditions")
async def hms_route(principal: CanView, services: ServicesDep) -> Response:
    """Every printer with active HMS conditions, and the conditions decoded."""
    items = [
        _printer_hms(printer.record.serial, services)
        for printer in services.farm.printers()
        if printer.snapshot.state.hms
    ]
    return Response(HmsList(items=items).model_dump_json(), media_type=JSON)


@router.get("/api/v1/printers/{serial}/hms", response_model=PrinterHms, summary="A printer's HMS")
async def printer_hms_route(
    serial: SerialPath, principal: CanView, services: ServicesDep
) -> Response:
    """The printer's active HMS conditions, decoded."""
    return Response(_printer_hms(serial, services).model_dump_json(), media_type=JSON)


def _printer_hms(serial: str, services: Services) -> PrinterHms:
    printer = services.farm.printer(serial)
    model_name = model_name_of(printer.record.model_code)
    return PrinterHms(
        serial=serial,
        name=printer.record.name,
        items=hms_list(printer.snapshot.state, model_name),
    )


@router.get("/api/v1/discovery", response_model=DiscoveryList, summary="Discovered printers")
async def discovery_route(principal: CanView, services: ServicesDep) -> Response:
    """Printers announcing themselves on the LAN (SSDP) that are not in the farm yet."""
    farm = services.farm
    listener = farm.discovery
    items: list[Discovered] = [discovered_out(p, farm.wall_time) for p in farm.discovered()]
    body = DiscoveryList(
        listening=listener is not None and listener.listening,
        error=str(listener.error) if listener is not None and listener.error else None,
        items=items,
    )
    return Response(body.model_dump_json(), media_type=JSON)
