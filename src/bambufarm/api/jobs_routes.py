"""`/api/v1/jobs`: queue copies of a plate, list the queue, see why a job waits, reorder,
cancel, retry and duplicate; `/api/v1/printers/{serial}/plate`: the plate-clear gate; and
`/api/v1/plates`: every printer's plate at once (a dashboard of hundreds of printers).

`POST /api/v1/jobs` makes one job per copy (a batch), so copies can print on several printers
at once. A job targets one printer (serial), any printer of some models, or any compatible
printer; the file's model, nozzle and filaments decide the rest. A waiting job's detail lists
one reason per printer (busy, wrong model, missing filament, plate not cleared, offline, …)
from the dispatcher's last round.

Reading needs `view`; queueing and changing jobs, and confirming a plate is clear (which lets
the queue go on), need `queue`; a printer's auto-clear is its configuration (`manage_printers`).
Every change is audited with who made it, and wakes the WebSocket's `jobs` topic so open
pages see it at once (changes made elsewhere reach them within a second, `api.job_feed`).
"""

from collections.abc import Sequence
from datetime import UTC
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel

from bambufarm.api.deps import CanManagePrinters, CanQueue, CanView, ServicesDep
from bambufarm.api.errors import BadRequest
from bambufarm.api.printer_schemas import SERIAL_PATTERN
from bambufarm.api.queue_schemas import (
    AutoClearIn,
    DuplicateIn,
    JobBatchOut,
    JobDetailOut,
    JobOut,
    NewJobIn,
    PlateClearedOut,
    PlateOutState,
    ReorderIn,
    TargetIn,
    job_detail_out,
    job_out,
    plate_state_out,
)
from bambufarm.api.schemas import Page, PageParams, problem_responses
from bambufarm.app import Services
from bambufarm.auth.roles import Principal
from bambufarm.farm.service import model_code
from bambufarm.jobs.dispatch import ANY_PRINTER, Target
from bambufarm.jobs.history import print_history
from bambufarm.jobs.model import Job, JobSpec, JobState
from bambufarm.storage.plates import PlateRecord
from bambufarm.storage.unset import UNSET, Unset

jobs_router = APIRouter(
    prefix="/api/v1/jobs",
    tags=["jobs"],
    responses=problem_responses(401, 403, 404, 422, 503),
)
plates_router = APIRouter(
    prefix="/api/v1/plates",
    tags=["jobs"],
    responses=problem_responses(401, 403, 422, 503),
)
plate_router = APIRouter(
    prefix="/api/v1/printers/{serial}/plate",
    tags=["jobs"],
    responses=problem_responses(401, 403, 404, 422, 503),
)

JSON: Final = "application/json"
# A job's detail lists its latest prints; a job retried more often than this is a rare case
# whose older prints are in the history.
DETAIL_PRINTS: Final = 20

JobIdPath = Annotated[int, Path(ge=1, description="The job's id.")]
SerialPath = Annotated[str, Path(pattern=SERIAL_PATTERN, description="The printer's serial.")]


def _json(model: BaseModel, code: int = status.HTTP_200_OK) -> Response:
    return Response(model.model_dump_json(), status_code=code, media_type=JSON)


def _target(target: TargetIn) -> Target:
    if target.printer is not None and target.models:
        raise BadRequest("a target names one printer or some models, not both")
    if target.printer is not None:
        return Target.printer(target.printer)
    if target.models:
        return Target.of_models(*(model_code(m) for m in target.models))
    return ANY_PRINTER


def _changed(request: Request) -> None:
    """Tell the WebSocket's `jobs` followers to look now rather than at the next tick."""
    hub = getattr(request.app.state, "ws_hub", None)
    if hub is not None:
        hub.jobs_changed()


def _batch(jobs: Sequence[Job]) -> JobBatchOut:
    return JobBatchOut(batch=jobs[0].batch, jobs=[job_out(j) for j in jobs])


async def _audit(
    services: Services, principal: Principal, action: str, job: Job, **details: Any
) -> None:
    await services.farm.audit(
        principal.actor, action, job.printer, {"job_id": job.id, "name": job.name, **details}
    )


@jobs_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobBatchOut,
    summary="Queue a print",
    responses=problem_responses(400),
)
async def create_route(
    body: NewJobIn, principal: CanQueue, services: ServicesDep, request: Request
) -> Response:
    """Queue `copies` of one plate of a library file: one job per copy."""
    if (body.file_id is None) == (body.sha256 is None):
        raise BadRequest("name the file by file_id or by sha256 (one of the two)")
    if body.file_id is not None:
        entry = await services.library.get(body.file_id)
        sha256, default_name = entry.sha256, entry.name
    else:
        blob = await services.library.content(str(body.sha256))
        sha256, default_name = blob.sha256, f"file {blob.sha256[:12]}"
    spec = JobSpec(
        file_sha256=sha256,
        name=body.name or default_name,
        plate=body.plate,
        copies=body.copies,
        priority=body.priority,
        due=body.due.astimezone(UTC) if body.due is not None else None,
        target=_target(body.target),
        created_by=principal.actor,
    )
    jobs = await services.queue.add(spec)
    target = spec.target
    await _audit(
        services, principal, "job.create", jobs[0],
        job_ids=[j.id for j in jobs], batch=jobs[0].batch, sha256=sha256, plate=spec.plate,
        copies=spec.copies, priority=spec.priority,
        target={"printer": target.serial, "models": sorted(target.models)},
    )  # fmt: skip
    _changed(request)
    return _json(_batch(jobs), status.HTTP_201_CREATED)


@jobs_router.get("", response_model=Page[JobOut], summary="List jobs")
async def list_route(
    principal: CanView,
    services: ServicesDep,
    page: PageParams,
    *,
    state: Annotated[
        list[JobState] | None, Query(description="Only these states (repeat).")
    ] = None,
    printer: Annotated[str | None, Query(pattern=SERIAL_PATTERN, description="Held by.")] = None,
    batch: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    file: Annotated[
        str | None, Query(pattern=r"^[0-9a-fA-F]{64}$", description="Content sha256.")
    ] = None,
    order: Annotated[
        Literal["queue", "newest"], Query(description="Queue order, or newest first.")
    ] = "queue",
) -> Response:
    """Jobs in queue order (priority, due time, position) or newest first, filtered."""
    found = await services.queue.list(
        states=state, printer_serial=printer, batch=batch,
        file_sha256=file.lower() if file else None, order=order,
        offset=page.offset, limit=page.limit,
    )  # fmt: skip
    body = Page[JobOut](
        items=[job_out(j) for j in found.items],
        total=found.total,
        offset=found.offset,
        limit=found.limit,
    )
    return _json(body)


@jobs_router.get("/{job_id}", response_model=JobDetailOut, summary="A job, and why it waits")
async def get_route(job_id: JobIdPath, principal: CanView, services: ServicesDep) -> Response:
    """One job with its reason per printer while waiting, its live attempt and its prints."""
    job = await services.queue.get(job_id)
    dispatcher = services.dispatcher
    reasons = dispatcher.waiting_reasons(job_id) if job.state is JobState.WAITING else ()
    async with services.database.session(readonly=True) as session:
        prints = await print_history(session, job_id=job_id, limit=DETAIL_PRINTS)
    return _json(job_detail_out(job, reasons, dispatcher.attempt(job_id), prints.items))


@jobs_router.post("/{job_id}/reorder", response_model=JobOut, summary="Move a job in the queue")
async def reorder_route(
    job_id: JobIdPath,
    body: ReorderIn,
    principal: CanQueue,
    services: ServicesDep,
    request: Request,
) -> Response:
    """Set the priority and/or move the job just before another (`before: null`: to the end)."""
    given = body.model_fields_set
    if not given & {"priority", "before"}:
        raise BadRequest("give a priority, a job to move before, or both")
    priority: int | Unset = UNSET
    if "priority" in given:
        if body.priority is None:
            raise BadRequest("priority must be a number; leave it out to keep it")
        priority = body.priority
    before: int | Unset | None = body.before if "before" in given else UNSET
    job = await services.queue.reorder(job_id, priority=priority, before=before)
    await _audit(
        services, principal, "job.reorder", job,
        priority=job.priority, before=None if isinstance(before, Unset) else before,
    )  # fmt: skip
    _changed(request)
    return _json(job_out(job))


@jobs_router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    responses=problem_responses(409),
)
async def cancel_route(
    job_id: JobIdPath, principal: CanQueue, services: ServicesDep, request: Request
) -> Response:
    """Cancel an unfinished job; a printer holding it is stopped (409 once it has finished)."""
    job = await services.queue.cancel(job_id, by=principal.actor)
    await _audit(services, principal, "job.cancel", job)
    _changed(request)
    return _json(job_out(job))


@jobs_router.post(
    "/{job_id}/retry",
    response_model=JobOut,
    summary="Retry a job",
    responses=problem_responses(409),
)
async def retry_route(
    job_id: JobIdPath, principal: CanQueue, services: ServicesDep, request: Request
) -> Response:
    """Queue a failed or cancelled job again, as a new attempt (409 for other states)."""
    job = await services.queue.retry(job_id, by=principal.actor)
    await _audit(services, principal, "job.retry", job)
    _changed(request)
    return _json(job_out(job))


@jobs_router.post(
    "/{job_id}/duplicate",
    status_code=status.HTTP_201_CREATED,
    response_model=JobBatchOut,
    summary="Queue a job again as new copies",
)
async def duplicate_route(
    job_id: JobIdPath,
    principal: CanQueue,
    services: ServicesDep,
    request: Request,
    body: DuplicateIn | None = None,
) -> Response:
    """Queue new jobs (a new batch) printing what this job prints, with its target and priority."""
    copies = body.copies if body is not None else 1
    jobs = await services.queue.duplicate(job_id, copies=copies, created_by=principal.actor)
    await services.farm.audit(
        principal.actor, "job.duplicate", None,
        {"job_id": job_id, "name": jobs[0].name, "new_job_ids": [j.id for j in jobs],
         "batch": jobs[0].batch},
    )  # fmt: skip
    _changed(request)
    return _json(_batch(jobs), status.HTTP_201_CREATED)


# ------------------------------------------------------------------------------ plate gate


@plates_router.get("", response_model=Page[PlateOutState], summary="Every printer's plate")
async def plates_route(
    principal: CanView,
    services: ServicesDep,
    page: PageParams,
    *,
    cleared: Annotated[
        bool | None, Query(description="Only clear plates (true) or only uncleared (false).")
    ] = None,
) -> Response:
    """The plate state of every printer in the farm, by serial; one read for a whole dashboard."""
    stored = await services.plates.states()
    serials = sorted(p.serial for p in services.farm.printers())
    plates = [stored.get(s) or PlateRecord(s) for s in serials]
    if cleared is not None:
        plates = [p for p in plates if p.cleared is cleared]
    window = plates[page.offset : page.offset + page.limit]
    body = Page[PlateOutState](
        items=[plate_state_out(p) for p in window],
        total=len(plates),
        offset=page.offset,
        limit=page.limit,
    )
    return _json(body)


@plate_router.get("", response_model=PlateOutState, summary="A printer's plate state")
async def plate_route(serial: SerialPath, principal: CanView, services: ServicesDep) -> Response:
    """Whether the printer's plate is clear for the next job, and what last ended on it."""
    services.farm.printer(serial)
    return _json(plate_state_out(await services.plates.get(serial)))


@plate_router.post("/clear", response_model=PlateClearedOut, summary="Confirm the plate is clear")
async def clear_route(
    serial: SerialPath, principal: CanQueue, services: ServicesDep, request: Request
) -> Response:
    """Confirm the plate is clear: finished jobs become done and the next job may start."""
    services.farm.printer(serial)
    plate, done = await services.plates.clear(serial, by=principal.actor)
    await services.farm.audit(
        principal.actor, "plate.clear", serial, {"completed_job_ids": [j.id for j in done]}
    )
    body = PlateClearedOut(plate=plate_state_out(plate), completed_jobs=[job_out(j) for j in done])
    _changed(request)
    return _json(body)


@plate_router.put("/auto-clear", response_model=PlateOutState, summary="Set auto-clear")
async def auto_clear_route(
    serial: SerialPath,
    body: AutoClearIn,
    principal: CanManagePrinters,
    services: ServicesDep,
    request: Request,
) -> Response:
    """Let the printer's ejection routine clear its plate after a finished print (or not)."""
    services.farm.printer(serial)
    plate = await services.plates.set_auto_clear(serial, body.enabled)
    await services.farm.audit(
        principal.actor, "plate.auto_clear", serial, {"enabled": body.enabled}
    )
    _changed(request)
    return _json(plate_state_out(plate))


# What the app includes: the jobs, the plate gate and the fleet's plates.
router = APIRouter()
router.include_router(jobs_router)
router.include_router(plate_router)
router.include_router(plates_router)
