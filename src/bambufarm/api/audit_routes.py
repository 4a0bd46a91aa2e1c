"""`GET /api/v1/audit`: the audit log — who did what, to which printer, when (admins only).

Every control and admin action is recorded in the same transaction as the action itself
(`bambufarm.storage.audit`); this reads it back newest first, by cursor, with filters.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from bambufarm.api.deps import CanViewAudit, ServicesDep
from bambufarm.api.printer_schemas import SERIAL_PATTERN
from bambufarm.api.schemas import PRINTABLE, CursorPage, problem_responses
from bambufarm.storage.audit import MAX_ACTION, MAX_ACTOR, AuditEntry, list_actions
from bambufarm.storage.paging import DEFAULT_LIMIT, MAX_LIMIT, Cursor

router = APIRouter(tags=["audit"], responses=problem_responses(401, 403, 422, 503))


class AuditOut(BaseModel):
    """One recorded action."""

    id: int
    actor: str = Field(description="User name, or `key:<name>` for an API key.")
    action: str = Field(examples=["printer.pause", "printer.add", "user.create"])
    printer_serial: str | None
    details: dict[str, Any] = Field(description="What the action was given (never secrets).")
    at: datetime


def _out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id,
        actor=entry.actor,
        action=entry.action,
        printer_serial=entry.printer_serial,
        details=dict(entry.details),
        at=entry.at,
    )


@router.get("/api/v1/audit", response_model=CursorPage[AuditOut], summary="The audit log")
async def audit_route(
    principal: CanViewAudit,
    services: ServicesDep,
    *,
    actor: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ACTOR, pattern=PRINTABLE)
    ] = None,
    action: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ACTION, pattern=PRINTABLE)
    ] = None,
    serial: Annotated[str | None, Query(pattern=SERIAL_PATTERN)] = None,
    since: Annotated[datetime | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Before (ISO 8601).")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Response:
    """Recorded actions, newest first; pass `next_cursor` back as `cursor` for older ones."""
    after = Cursor.decode(cursor) if cursor else None
    async with services.database.session(readonly=True) as session:
        page = await list_actions(
            session, actor=actor, action=action, printer_serial=serial, since=since,
            until=until, after=after, limit=limit,
        )  # fmt: skip
    body = CursorPage[AuditOut](
        items=[_out(entry) for entry in page.items],
        next_cursor=page.next_cursor.encode() if page.next_cursor is not None else None,
    )
    return Response(body.model_dump_json(), media_type="application/json")
