"""The queue's API models: library files with their plates, jobs and their targets, plate state,
prints and statistics; and the functions that turn the services' records into them.

Model codes ("C12") are what the slicer writes and what filters take; each comes with its short
name ("P1S") for people. Times are UTC ISO 8601.
"""

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from bambufarm.api.printer_schemas import SERIAL_PATTERN, model_name_of
from bambufarm.api.schemas import PRINTABLE
from bambufarm.jobs.attempt import Attempt
from bambufarm.jobs.dispatch import CandidateReason, WaitReason
from bambufarm.jobs.history import FilamentUse, PrinterStats, PrintOutcome, PrintRecord, PrintStats
from bambufarm.jobs.library import LibraryFile
from bambufarm.jobs.model import Job, JobState
from bambufarm.protocol.threemf import Plate
from bambufarm.storage.jobs import MAX_COPIES, MAX_PRIORITY
from bambufarm.storage.library import MAX_NAME, BlobRecord
from bambufarm.storage.plates import PlateRecord

SHA256_PATTERN: Final = r"^[0-9a-fA-F]{64}$"
# A model is named by code ("C12") or name ("P1S", "A1 mini"): at most a few words.
MAX_MODEL_TEXT: Final = 40
# "any P1S or X1C": a handful of models; more than this is not a target but a mistake.
MAX_TARGET_MODELS: Final = 16

Sha256 = Annotated[
    str, Field(pattern=SHA256_PATTERN, examples=["9f86d08…"]), AfterValidator(str.lower)
]
DisplayName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=PRINTABLE)]
ModelText = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_TEXT, pattern=PRINTABLE)]


# ------------------------------------------------------------------------------ library


class FilamentOut(BaseModel):
    """One filament a plate uses, as the slicer planned it."""

    slot: int = Field(description="The project's filament number (1-based).")
    type: str | None = Field(examples=["PLA"])
    color: str | None = Field(examples=["#FFFFFF"])
    grams: float | None = Field(description="Planned use in grams.")
    meters: float | None
    preset: str | None = Field(description="The slicer's filament preset id.", examples=["GFA01"])


class PlateOut(BaseModel):
    """One sliced plate of a file."""

    index: int
    prediction_s: int | None = Field(description="The slicer's print time estimate, seconds.")
    weight_g: float | None
    filaments: list[FilamentOut]
    objects: list[str] = Field(description="Names of the objects on the plate.")
    bed_type: str | None = Field(examples=["textured_plate"])
    total_layers: int | None
    has_thumbnail: bool


class FileContent(BaseModel):
    """A stored file content (identified by its sha256) and what its 3MF says."""

    sha256: str
    size: int = Field(description="Bytes.")
    model: str = Field(description="Printer model code it was sliced for.", examples=["C12"])
    model_name: str = Field(examples=["P1S"])
    nozzle_diameter: float | None = Field(examples=[0.4])
    plate_count: int
    prediction_s: int | None = Field(description="All plates together, seconds.")
    weight_g: float | None = Field(description="All plates together, grams.")
    slicer: str | None = Field(examples=["BambuStudio-02.01.01.52"])
    plates: list[PlateOut]
    created_at: datetime


class LibraryFileOut(FileContent):
    """A library file: a name in a folder, with tags, over a stored content."""

    id: int
    name: str
    folder: str = Field(description="'/'-separated folders; '' is the top.")
    tags: list[str]
    updated_at: datetime


class FileChangesIn(BaseModel):
    """Rename, move or retag a file; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: DisplayName | None = None
    folder: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=32
    )


class Folders(BaseModel):
    """Every folder that holds files (and its parents), sorted."""

    folders: list[str]


def plate_out(plate: Plate) -> PlateOut:
    """The API view of one sliced plate."""
    return PlateOut(
        index=plate.index,
        prediction_s=plate.prediction_s,
        weight_g=plate.weight_g,
        filaments=[
            FilamentOut(
                slot=f.slot,
                type=f.type,
                color=f.color,
                grams=f.used_g,
                meters=f.used_m,
                preset=f.tray_info_idx,
            )
            for f in plate.filaments
        ],
        objects=[o.name for o in plate.objects],
        bed_type=plate.bed_type,
        total_layers=plate.total_layers,
        has_thumbnail=plate.thumbnail_path is not None,
    )


def _content_fields(blob: BlobRecord) -> dict[str, Any]:
    meta = blob.metadata
    return {
        "sha256": blob.sha256,
        "size": blob.size,
        "model": blob.printer_model,
        "model_name": model_name_of(blob.printer_model),
        "nozzle_diameter": blob.nozzle_diameter,
        "plate_count": blob.plate_count,
        "prediction_s": blob.prediction_s,
        "weight_g": blob.weight_g,
        "slicer": meta.application,
        "plates": [plate_out(p) for p in meta.plates],
    }


def content_out(blob: BlobRecord) -> FileContent:
    """The API view of a stored content."""
    return FileContent(**_content_fields(blob), created_at=blob.created_at)


def library_file_out(entry: LibraryFile) -> LibraryFileOut:
    """The API view of a library entry."""
    return LibraryFileOut(
        **_content_fields(entry.blob),
        id=entry.id,
        name=entry.name,
        folder=entry.folder,
        tags=list(entry.tags),
        created_at=entry.created_at,
        updated_at=entry.updated_at,
    )


# ------------------------------------------------------------------------------ jobs


class TargetIn(BaseModel):
    """Where a job may print: one printer, any printer of some models, or (neither) any."""

    model_config = ConfigDict(extra="forbid")

    printer: Annotated[str, Field(pattern=SERIAL_PATTERN)] | None = Field(
        default=None, description="Only this printer (serial).", examples=["01P00A123456789"]
    )
    models: list[ModelText] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TARGET_MODELS,
        description="Any printer of these models, by name or code.",
        examples=[["P1S"]],
    )


class TargetOut(BaseModel):
    """Where a job may print; `any` when neither a printer nor models are named."""

    any: bool
    printer: str | None
    models: list[str] = Field(description="Model codes.", examples=[["C12"]])
    model_names: list[str] = Field(examples=[["P1S"]])


class NewJobIn(BaseModel):
    """Print `copies` of one plate of a library file (by `file_id` or by content `sha256`)."""

    model_config = ConfigDict(extra="forbid")

    file_id: int | None = Field(default=None, ge=1, description="A library file's id.")
    sha256: Sha256 | None = Field(default=None, description="A stored content's sha256.")
    name: DisplayName | None = Field(
        default=None, description="What to call the job; the file's name when left out."
    )
    plate: int = Field(default=1, ge=1, le=1000)
    copies: int = Field(default=1, ge=1, le=MAX_COPIES, description="One job per copy.")
    priority: int = Field(
        default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher goes first."
    )
    due: AwareDatetime | None = Field(default=None, description="Earlier due goes first.")
    target: TargetIn = Field(default_factory=TargetIn)


class LiveAttemptOut(BaseModel):
    """What this server's dispatcher is doing with the job right now."""

    attempt: int
    printer: str
    phase: str = Field(examples=["uploading"])
    uploaded_bytes: int
    size_bytes: int


class JobOut(BaseModel):
    """One copy of a plate to print, and where it is in its life."""

    id: int
    batch: str = Field(description="Shared by the copies queued together.")
    copy_index: int = Field(description="1-based, of `copies`.")
    copies: int
    name: str
    file_sha256: str | None = Field(description="None once the file left the library.")
    plate: int
    priority: int
    position: int
    due: datetime | None
    target: TargetOut
    state: JobState
    reason: str | None = Field(description="Why it waits, failed or was cancelled.")
    printer: str | None = Field(description="The printer holding it (serial).")
    attempt: int
    progress: int | None = Field(description="Percent: of the upload while uploading.")
    layer: int | None
    remaining_s: int | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class WaitingReasonOut(BaseModel):
    """Why a waiting job does not start on one printer."""

    printer: str
    reason: WaitReason
    detail: str = Field(examples=["file sliced for P1S, printer is X1C"])


class JobDetailOut(JobOut):
    """A job with the dispatcher's reasons per printer, its live attempt and its prints."""

    waiting_reasons: list[WaitingReasonOut] = Field(
        description="One per printer as of the dispatcher's last round; empty unless waiting."
    )
    live: LiveAttemptOut | None
    prints: list["PrintOut"] = Field(description="Its print attempts, newest first.")


class JobBatchOut(BaseModel):
    """The jobs queued by one request, one per copy."""

    batch: str
    jobs: list[JobOut]


class ReorderIn(BaseModel):
    """Change a job's priority and/or move it just before job `before` (null: to the end)."""

    model_config = ConfigDict(extra="forbid")

    priority: int | None = Field(default=None, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    before: int | None = Field(
        default=None, ge=1, description="A job id; null moves the job to the end of the queue."
    )


class DuplicateIn(BaseModel):
    """How many new copies to queue."""

    model_config = ConfigDict(extra="forbid")

    copies: int = Field(default=1, ge=1, le=MAX_COPIES)


class PlateOutState(BaseModel):
    """A printer's build plate: clear for the next job, or holding the last print."""

    printer: str
    cleared: bool
    auto_clear: bool = Field(description="The printer's ejection routine clears it.")
    last_job_id: int | None
    last_outcome: str | None = Field(examples=["finished"])
    changed_by: str | None
    updated_at: datetime | None


class PlateClearedOut(BaseModel):
    """The plate after it was confirmed clear, and the jobs that became done by it."""

    plate: PlateOutState
    completed_jobs: list[JobOut]


class AutoClearIn(BaseModel):
    """Turn a printer's auto-clear on or off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool


def target_out(job: Job) -> TargetOut:
    """The API view of a job's target."""
    models = sorted(job.target.models)
    return TargetOut(
        any=job.target.serial is None and not models,
        printer=job.target.serial,
        models=models,
        model_names=[model_name_of(code) for code in models],
    )


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "batch": job.batch,
        "copy_index": job.copy_index,
        "copies": job.copies,
        "name": job.name,
        "file_sha256": job.file_sha256,
        "plate": job.plate,
        "priority": job.priority,
        "position": job.position,
        "due": job.due,
        "target": target_out(job),
        "state": job.state,
        "reason": job.reason,
        "printer": job.printer,
        "attempt": job.attempt,
        "progress": job.progress,
        "layer": job.layer,
        "remaining_s": job.remaining_s,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def job_out(job: Job) -> JobOut:
    """The API view of a job."""
    return JobOut(**_job_fields(job))


def job_detail_out(
    job: Job,
    reasons: tuple[CandidateReason, ...],
    live: Attempt | None,
    prints: tuple[PrintRecord, ...],
) -> JobDetailOut:
    """The API view of one job with its reasons, live attempt and prints."""
    return JobDetailOut(
        **_job_fields(job),
        waiting_reasons=[
            WaitingReasonOut(printer=r.serial, reason=r.reason, detail=r.detail) for r in reasons
        ],
        live=None
        if live is None
        else LiveAttemptOut(
            attempt=live.attempt,
            printer=live.serial,
            phase=live.phase.value,
            uploaded_bytes=live.uploaded,
            size_bytes=live.size,
        ),
        prints=[print_out(p) for p in prints],
    )


def plate_state_out(plate: PlateRecord) -> PlateOutState:
    """The API view of a printer's plate state."""
    return PlateOutState(
        printer=plate.serial,
        cleared=plate.cleared,
        auto_clear=plate.auto_clear,
        last_job_id=plate.last_job_id,
        last_outcome=plate.last_outcome,
        changed_by=plate.changed_by,
        updated_at=plate.updated_at,
    )


# ------------------------------------------------------------------------------ history


class FilamentUseOut(BaseModel):
    """Filament of one slot of one print: planned by the slicer, used by the outcome."""

    slot: int
    material: str | None
    color: str | None
    planned_g: float | None
    used_g: float | None = Field(description="None while running; scaled by progress if failed.")


class PrintOut(BaseModel):
    """One print attempt on one printer."""

    id: int
    job_id: int | None = Field(description="None for a print started outside the queue.")
    attempt: int | None
    printer: str
    file_sha256: str | None
    file_name: str
    plate: int
    started_at: datetime
    ended_at: datetime | None
    duration_s: int | None
    outcome: PrintOutcome
    progress: int
    reason: str | None
    filament: list[FilamentUseOut]


class StatsOut(BaseModel):
    """Counts, success rate, print hours and grams of material over some prints."""

    prints: int
    done: int
    failed: int
    cancelled: int
    running: int
    success_rate: float | None = Field(
        description="done / (done + failed); cancels count in neither. None before any."
    )
    print_hours: float
    filament_g: dict[str, float] = Field(description="Grams used by material.")


class PrinterStatsOut(StatsOut):
    """One printer's statistics."""

    printer: str


class StatisticsOut(BaseModel):
    """The farm's statistics and each printer's, over the prints started in [since, until)."""

    since: datetime | None
    until: datetime | None
    fleet: StatsOut
    printers: list[PrinterStatsOut]


def _use_out(use: FilamentUse) -> FilamentUseOut:
    return FilamentUseOut(
        slot=use.slot,
        material=use.material,
        color=use.color,
        planned_g=use.planned_g,
        used_g=use.used_g,
    )


def print_out(record: PrintRecord) -> PrintOut:
    """The API view of a print attempt."""
    return PrintOut(
        id=record.id,
        job_id=record.job_id,
        attempt=record.attempt,
        printer=record.printer_serial,
        file_sha256=record.file_sha256,
        file_name=record.file_name,
        plate=record.plate,
        started_at=record.started_at,
        ended_at=record.ended_at,
        duration_s=record.duration_s,
        outcome=record.outcome,
        progress=record.progress,
        reason=record.reason,
        filament=[_use_out(u) for u in record.filament],
    )


def _stats_fields(stats: PrintStats) -> dict[str, Any]:
    return {
        "prints": stats.prints,
        "done": stats.done,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "running": stats.running,
        "success_rate": None if stats.success_rate is None else round(stats.success_rate, 4),
        "print_hours": stats.print_hours,
        "filament_g": dict(stats.filament_g),
    }


def stats_out(stats: PrintStats) -> StatsOut:
    """The API view of some prints' statistics."""
    return StatsOut(**_stats_fields(stats))


def printer_stats_out(stats: PrinterStats) -> PrinterStatsOut:
    """The API view of one printer's statistics."""
    return PrinterStatsOut(printer=stats.serial, **_stats_fields(stats.stats))


JobDetailOut.model_rebuild()
