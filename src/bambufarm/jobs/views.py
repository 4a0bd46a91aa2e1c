"""The inputs of a matching round, built from the fleet and the queue, and its waiting summaries.

`printer_view` turns a fleet snapshot (last known state, link) plus the plate gate and the
dispatcher's reservations into the `PrinterView` the pure `match` reads; `job_request` turns a
stored job and its file's 3MF metadata into a `JobRequest`; `wait_summary` condenses a job's
per-printer reasons into the one line kept on the job ("2 busy, 1 plate not cleared").
"""

from collections.abc import Sequence
from typing import Final

from bambufarm.fleet.config import PrinterConfig, PrinterSnapshot
from bambufarm.jobs.dispatch import (
    ANY_PRINTER,
    CandidateReason,
    JobRequest,
    PrinterView,
    Target,
    WaitReason,
)
from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import PrinterModel, model_by_code, model_by_name, model_for_serial
from bambufarm.storage.jobs import JobRecord
from bambufarm.storage.library import BlobRecord

# How the summary names each reason, in the order it lists them (most actionable first).
# The number of candidates changes only when printers are added or removed.
_WORDS: Final = (
    (WaitReason.PLATE_NOT_CLEARED, "plate not cleared"),
    (WaitReason.MISSING_FILAMENT, "missing filament"),
    (WaitReason.NOT_ENOUGH_FILAMENT, "not enough filament"),
    (WaitReason.BUSY, "busy"),
    (WaitReason.HIGHER_PRIORITY_JOB, "taken by a job ahead"),
    (WaitReason.OFFLINE, "offline"),
    (WaitReason.MAINTENANCE, "in maintenance"),
    (WaitReason.READ_ONLY, "read-only (Developer Mode off)"),
    (WaitReason.WRONG_NOZZLE, "wrong nozzle"),
    (WaitReason.WRONG_MODEL, "wrong model"),
)
# Details that stay the same round after round, so a one-printer summary is not rewritten
# every time a busy printer's progress moves.
_STABLE_DETAIL: Final = frozenset(WaitReason) - {WaitReason.BUSY, WaitReason.HIGHER_PRIORITY_JOB}


def model_of(config: PrinterConfig) -> PrinterModel:
    """The printer's model from its configuration (code or name), else from its serial."""
    if not config.model:
        return model_for_serial(config.serial)
    try:
        return model_by_code(config.model)
    except ModelError:
        return model_by_name(config.model)


def printer_view(
    snapshot: PrinterSnapshot,
    model: PrinterModel,
    *,
    plate_cleared: bool,
    reserved_for: str | None,
    ready_since: float | None,
) -> PrinterView:
    """The dispatcher's view of one printer."""
    config = snapshot.config
    return PrinterView(
        serial=config.serial,
        name=config.name or config.serial,
        model=model,
        state=snapshot.state,
        online=snapshot.connection.connected,
        enabled=snapshot.enabled,
        plate_cleared=plate_cleared,
        reserved_for=reserved_for,
        ready_since=ready_since,
    )


def job_request(record: JobRecord, blob: BlobRecord, *, color_tolerance: float) -> JobRequest:
    """The matching request of a stored job (`DispatchInputError`/`ThreeMFError` if unusable)."""
    if record.target_serial is not None:
        target = Target.printer(record.target_serial)
    elif record.target_models:
        target = Target.of_models(*record.target_models)
    else:
        target = ANY_PRINTER
    file = blob.metadata
    return JobRequest.for_plate(
        str(record.id),
        file,
        file.plate(record.plate),
        priority=record.priority,
        created=float(record.position),
        due=None if record.due_at is None else record.due_at.timestamp(),
        target=target,
        color_tolerance=color_tolerance,
    )


def wait_summary(reasons: Sequence[CandidateReason]) -> str:
    """One line for the job: why no printer takes it now.

    It names the kinds of reasons, not how many printers give each: the counts move with
    every print that starts or ends, and a summary that changes is a database write for
    every waiting job in every round. The per-printer reasons carry the detail.
    """
    if not reasons:
        return "waiting: there are no printers in the farm"
    relevant = [r for r in reasons if r.reason is not WaitReason.NOT_TARGETED]
    if not relevant:
        return f"waiting: no printer in the farm matches the target ({reasons[0].detail})"
    if len(relevant) == 1 and relevant[0].reason in _STABLE_DETAIL:
        only = relevant[0]
        return f"waiting for {only.serial}: {only.detail}"
    kinds = {r.reason for r in relevant}
    words = ", ".join(text for reason, text in _WORDS if reason in kinds)
    total = len(relevant)
    return (
        f"waiting: none of {total} candidate printer{'s' if total != 1 else ''} fits now ({words})"
    )
