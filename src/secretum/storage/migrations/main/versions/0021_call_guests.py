"""call guests: a second practitioner or an interpreter the patient accepted into a call

Revision ID: 0021_call_guests
Revises: 0001
Create Date: 2026-12-07 00:00:00.000000

Rooted at 0001 like the other contexts' branches (a table of the policy's facts). It references
no other branch's table (the appointment id is a plain string, as in the policy's tables), so
it needs no ``depends_on``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_call_guests"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("call_guests",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_guests",
        sa.Column("guest_id", sa.String(length=32), nullable=False),
        sa.Column("appointment_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("guest_id", name=op.f("pk_call_guests")),
    )
    op.create_index(op.f("ix_call_guests_appointment_id"), "call_guests", ["appointment_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_call_guests_appointment_id"), table_name="call_guests")
    op.drop_table("call_guests")
