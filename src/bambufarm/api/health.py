"""`GET /api/health`: is the server up and can it reach its database — for load balancers.

Unauthenticated on purpose (a liveness probe has no credentials), so it says only the version
and "ok"/"unavailable": never the database's path, host or error text.
"""

import logging
from enum import StrEnum

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bambufarm.api.deps import ServicesDep
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Status(StrEnum):
    """Overall health."""

    OK = "ok"
    DEGRADED = "degraded"


class Check(StrEnum):
    """One dependency's health."""

    OK = "ok"
    UNAVAILABLE = "unavailable"


class Health(BaseModel):
    """Version and the state of what the server depends on."""

    status: Status
    version: str
    database: Check


@router.get(
    "/api/health",
    response_model=Health,
    summary="Health check (no authentication)",
    responses={503: {"model": Health, "description": "The database is unavailable."}},
)
async def health_route(services: ServicesDep) -> JSONResponse:
    """200 when the database answers, 503 when it does not."""
    database = Check.OK
    try:
        # Opening a transaction checks out a connection: on PostgreSQL a pre-pinged one.
        async with services.database.session(readonly=True):
            pass
    except StorageError as err:
        logger.warning("health check: %s", err)
        database = Check.UNAVAILABLE
    ok = database is Check.OK
    body = Health(
        status=Status.OK if ok else Status.DEGRADED, version=services.version, database=database
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status.HTTP_200_OK if ok else status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Cache-Control": "no-store"},
    )
