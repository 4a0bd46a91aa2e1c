"""Per-printer plate state: the plate-clear gate between two prints, and auto-clear.

Revision 0003. Types are spelled out rather than imported from the tables modules: a migration
is a snapshot.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PLATE_OUTCOMES = ("finished", "failed")


def upgrade() -> None:
    """Create the printer_plates table."""
    op.create_table(
        "printer_plates",
        sa.Column("serial", sa.String(32), nullable=False),
        sa.Column("cleared", sa.Boolean(), nullable=False),
        sa.Column("auto_clear", sa.Boolean(), nullable=False),
        sa.Column(
            "last_job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("last_outcome", sa.String(16), nullable=True),
        sa.Column("changed_by", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            f"last_outcome IN {_PLATE_OUTCOMES!r}", name=op.f("ck_printer_plates_last_outcome")
        ),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_printer_plates")),
    )


def downgrade() -> None:
    """Drop the printer_plates table."""
    op.drop_table("printer_plates")
