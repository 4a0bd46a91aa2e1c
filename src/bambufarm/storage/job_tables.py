"""Tables of the print library, the job queue and the print history (same `Base` as `tables`).

Imported at the end of `tables.py`, so `Base.metadata` always holds them: the migrations and
the test that compares the migrated schema with the tables see one schema.

* `library_blobs`: one row per distinct file content (sha256), with its parsed 3MF metadata;
  the bytes live on disk under the library root, named by the hash.
* `library_files`: what the operator sees: a name in a folder with tags, pointing at a blob.
  Two entries may share a blob (the same upload under two names costs its bytes once).
* `jobs`: one row per copy to print. State names are `JOB_STATES`; the transitions between
  them belong to `bambufarm.jobs.model`, and are enforced by compare-and-set updates.
* `print_history` and `print_filament`: one row per print attempt and its filament per slot.
  Serial, file hash and name are plain text: history outlives printers and library files.
"""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bambufarm.storage.tables import Base, BigId, JsonType

# The vocabulary of `jobs.state`; `bambufarm.jobs.model.JobState` holds the same names (a unit
# test keeps them equal) and the transitions between them.
JOB_STATES = (
    "queued",
    "waiting",
    "uploading",
    "starting",
    "printing",
    "paused",
    "awaiting_clear",
    "done",
    "failed",
    "cancelled",
)
# How a print attempt ended; "running" until it does.
PRINT_OUTCOMES = ("running", "done", "failed", "cancelled")


class LibraryBlobRow(Base):
    """One stored file content: its hash, size, target printer and parsed 3MF metadata."""

    __tablename__ = "library_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    printer_model: Mapped[str] = mapped_column(String(32))
    nozzle_diameter: Mapped[float | None] = mapped_column(Float)
    plate_count: Mapped[int]
    # Sum over plates of the slicer's prediction and weight, for lists that sort by them.
    prediction_s: Mapped[int | None]
    weight_g: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, object]] = mapped_column(JsonType)
    created_at: Mapped[datetime]


class LibraryFileRow(Base):
    """A library entry: a name in a folder ("" is the top) for one blob."""

    __tablename__ = "library_files"
    __table_args__ = (UniqueConstraint("folder", "name", name="uq_library_files_folder_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(
        ForeignKey("library_blobs.sha256", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LibraryTagRow(Base):
    """One tag on one library entry."""

    __tablename__ = "library_tags"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("library_files.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class JobRow(Base):
    """One copy of one plate to print, and where it is in its life."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),
        CheckConstraint("copies >= 1 AND copy_index BETWEEN 1 AND copies", name="copies"),
        # The dispatcher's scan: unfinished jobs in queue order.
        Index("ix_jobs_state_priority_position", "state", "priority", "position"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch: Mapped[str] = mapped_column(String(32), index=True)
    copy_index: Mapped[int]
    copies: Mapped[int]
    name: Mapped[str] = mapped_column(String(255))
    # NULL once the file is deleted from the library (only finished jobs allow that).
    file_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("library_blobs.sha256", ondelete="SET NULL"), index=True
    )
    plate: Mapped[int]
    priority: Mapped[int]
    position: Mapped[int] = mapped_column(BigInteger)
    due_at: Mapped[datetime | None]
    target_serial: Mapped[str | None] = mapped_column(String(32))
    target_models: Mapped[list[str]] = mapped_column(JsonType)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    printer_serial: Mapped[str | None] = mapped_column(String(32), index=True)
    attempt: Mapped[int]
    progress: Mapped[int | None]
    layer: Mapped[int | None]
    remaining_s: Mapped[int | None]
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class PrintRow(Base):
    """One print attempt on one printer, from its start to its outcome."""

    __tablename__ = "print_history"
    __table_args__ = (
        CheckConstraint(f"outcome IN {PRINT_OUTCOMES!r}", name="outcome"),
        # A job's attempt starts one print, never two (the "never started twice" backstop).
        UniqueConstraint("job_id", "attempt", name="uq_print_history_job_id_attempt"),
        Index("ix_print_history_printer_serial_started_at", "printer_serial", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("jobs.id", ondelete="SET NULL"))
    attempt: Mapped[int | None]
    printer_serial: Mapped[str] = mapped_column(String(32))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(255))
    plate: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int]
    reason: Mapped[str | None] = mapped_column(Text)


class PrintFilamentRow(Base):
    """The filament one print used from one slot: planned by the slicer, used by the outcome."""

    __tablename__ = "print_filament"

    print_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("print_history.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    material: Mapped[str | None] = mapped_column(String(32))
    color: Mapped[str | None] = mapped_column(String(9))
    planned_g: Mapped[float | None] = mapped_column(Float)
    used_g: Mapped[float | None] = mapped_column(Float)
