"""Print library, job queue and print history.

Revision 0002. Like 0001, types are spelled out rather than imported from the tables modules:
a migration is a snapshot.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JOB_STATES = (
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
_PRINT_OUTCOMES = ("running", "done", "failed", "cancelled")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the library, job and history tables."""
    op.create_table(
        "library_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("printer_model", sa.String(32), nullable=False),
        sa.Column("nozzle_diameter", sa.Float(), nullable=True),
        sa.Column("plate_count", sa.Integer(), nullable=False),
        sa.Column("prediction_s", sa.Integer(), nullable=True),
        sa.Column("weight_g", sa.Float(), nullable=True),
        sa.Column("meta", _json(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_library_blobs")),
    )
    op.create_table(
        "library_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["library_blobs.sha256"],
            name=op.f("fk_library_files_sha256_library_blobs"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_files")),
        sa.UniqueConstraint("folder", "name", name="uq_library_files_folder_name"),
    )
    op.create_index(op.f("ix_library_files_sha256"), "library_files", ["sha256"])
    op.create_table(
        "library_tags",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["library_files.id"],
            name=op.f("fk_library_tags_file_id_library_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", "tag", name=op.f("pk_library_tags")),
    )
    op.create_index(op.f("ix_library_tags_tag"), "library_tags", ["tag"])
    op.create_table(
        "jobs",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("copy_index", sa.Integer(), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("plate", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("due_at", _utc(), nullable=True),
        sa.Column("target_serial", sa.String(32), nullable=True),
        sa.Column("target_models", _json(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("printer_serial", sa.String(32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=True),
        sa.Column("layer", sa.Integer(), nullable=True),
        sa.Column("remaining_s", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.CheckConstraint(f"state IN {_JOB_STATES!r}", name=op.f("ck_jobs_state")),
        sa.CheckConstraint(
            "copies >= 1 AND copy_index BETWEEN 1 AND copies", name=op.f("ck_jobs_copies")
        ),
        sa.ForeignKeyConstraint(
            ["file_sha256"],
            ["library_blobs.sha256"],
            name=op.f("fk_jobs_file_sha256_library_blobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_batch"), "jobs", ["batch"])
    op.create_index(op.f("ix_jobs_file_sha256"), "jobs", ["file_sha256"])
    op.create_index(op.f("ix_jobs_printer_serial"), "jobs", ["printer_serial"])
    op.create_index("ix_jobs_state_priority_position", "jobs", ["state", "priority", "position"])
    op.create_table(
        "print_history",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("job_id", _big_id(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("printer_serial", sa.String(32), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("plate", sa.Integer(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            f"outcome IN {_PRINT_OUTCOMES!r}", name=op.f("ck_print_history_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_print_history_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_print_history")),
        sa.UniqueConstraint("job_id", "attempt", name="uq_print_history_job_id_attempt"),
    )
    op.create_index(op.f("ix_print_history_started_at"), "print_history", ["started_at"])
    op.create_index(
        "ix_print_history_printer_serial_started_at",
        "print_history",
        ["printer_serial", "started_at"],
    )
    op.create_table(
        "print_filament",
        sa.Column("print_id", _big_id(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("material", sa.String(32), nullable=True),
        sa.Column("color", sa.String(9), nullable=True),
        sa.Column("planned_g", sa.Float(), nullable=True),
        sa.Column("used_g", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["print_id"],
            ["print_history.id"],
            name=op.f("fk_print_filament_print_id_print_history"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("print_id", "slot", name=op.f("pk_print_filament")),
    )


def downgrade() -> None:
    """Drop the tables of this revision (children first)."""
    for table in (
        "print_filament",
        "print_history",
        "jobs",
        "library_tags",
        "library_files",
        "library_blobs",
    ):
        op.drop_table(table)
