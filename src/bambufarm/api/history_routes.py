"""`/api/v1/history` and `/api/v1/statistics`: every print with its outcome, duration and
filament, and what the farm and each printer made of them (success rate, print hours, grams).

The history grows without bound, so it is read newest first after a cursor, like the events
and the audit log. Statistics count the prints started in `[since, until)`; success rate is
done / (done + failed), a cancel being the operator's decision rather than the printer's fault.
Everything here needs `view`.
"""

from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime

from bambufarm.api.deps import CanView, ServicesDep
from bambufarm.api.printer_schemas import SERIAL_PATTERN
from bambufarm.api.queue_schemas import (
    PrinterStatsOut,
    PrintOut,
    StatisticsOut,
    print_out,
    printer_stats_out,
    stats_out,
)
from bambufarm.api.schemas import CursorPage, problem_responses
from bambufarm.jobs.history import (
    PrinterStats,
    PrintOutcome,
    combine,
    get_print,
    print_history,
    printer_statistics,
)
from bambufarm.storage.paging import DEFAULT_LIMIT, MAX_LIMIT, Cursor

router = APIRouter(tags=["history"], responses=problem_responses(401, 403, 404, 422, 503))

JSON: Final = "application/json"

SinceQuery = Annotated[
    AwareDatetime | None, Query(description="Prints started at or after (ISO 8601, with zone).")
]
UntilQuery = Annotated[AwareDatetime | None, Query(description="Prints started before.")]


@router.get("/api/v1/history/prints", response_model=CursorPage[PrintOut], summary="Print history")
async def prints_route(
    principal: CanView,
    services: ServicesDep,
    *,
    printer: Annotated[str | None, Query(pattern=SERIAL_PATTERN)] = None,
    job: Annotated[int | None, Query(ge=1, description="Prints of this job.")] = None,
    outcome: Annotated[list[PrintOutcome] | None, Query(description="Only these (repeat).")] = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Response:
    """Prints newest first: printer, file, plate, times, duration, outcome, filament per slot."""
    after = Cursor.decode(cursor) if cursor else None
    async with services.database.session(readonly=True) as session:
        page = await print_history(
            session, serial=printer, job_id=job, outcomes=outcome,
            since=since, until=until, after=after, limit=limit,
        )  # fmt: skip
    body = CursorPage[PrintOut](
        items=[print_out(p) for p in page.items],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )
    return Response(body.model_dump_json(), media_type=JSON)


@router.get("/api/v1/history/prints/{print_id}", response_model=PrintOut, summary="One print")
async def print_route(
    print_id: Annotated[int, Path(ge=1)], principal: CanView, services: ServicesDep
) -> Response:
    """One print attempt."""
    async with services.database.session(readonly=True) as session:
        record = await get_print(session, print_id)
    return Response(print_out(record).model_dump_json(), media_type=JSON)


@router.get("/api/v1/statistics", response_model=StatisticsOut, summary="Farm statistics")
async def statistics_route(
    principal: CanView, services: ServicesDep, since: SinceQuery = None, until: UntilQuery = None
) -> Response:
    """The farm's and each printer's prints, success rate, print hours and grams by material."""
    async with services.database.session(readonly=True) as session:
        per_printer = await printer_statistics(session, since=since, until=until)
    body = StatisticsOut(
        since=since,
        until=until,
        fleet=stats_out(combine(p.stats for p in per_printer)),
        printers=[printer_stats_out(p) for p in per_printer],
    )
    return Response(body.model_dump_json(), media_type=JSON)


@router.get(
    "/api/v1/statistics/printers/{serial}",
    response_model=PrinterStatsOut,
    summary="A printer's statistics",
)
async def printer_statistics_route(
    serial: Annotated[str, Path(pattern=SERIAL_PATTERN)],
    principal: CanView,
    services: ServicesDep,
    since: SinceQuery = None,
    until: UntilQuery = None,
) -> Response:
    """One printer's prints, success rate, print hours and grams (zeros before its first)."""
    async with services.database.session(readonly=True) as session:
        found = await printer_statistics(session, serials=[serial], since=since, until=until)
    stats = found[0] if found else PrinterStats(serial, combine(()))
    return Response(printer_stats_out(stats).model_dump_json(), media_type=JSON)
