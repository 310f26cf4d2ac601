"""agenda: weekly hours, closures and openings, appointments (double booking refused)

Revision ID: 0011_agenda
Revises: 0001
Create Date: 2026-12-06 21:30:00.000000

Rooted at 0001 like the other contexts' branches. It references no other branch's table (ids
are plain strings, as in the policy's tables), so it needs no ``depends_on`` and is not taken
for a merge (see 0006_row_integrity.py for that trap).

The two partial unique indexes (``WHERE status = 'booked'``, on SQLite and PostgreSQL) are what
makes double booking impossible: a practitioner, or a patient, has at most one active booking
starting at a given instant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_agenda"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("agenda",)
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("status = 'booked'")


def upgrade() -> None:
    op.create_table(
        "agenda_weekly_hours",
        sa.Column("hours_id", sa.String(length=32), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_local", sa.Time(), nullable=False),
        sa.Column("end_local", sa.Time(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("hours_id", name=op.f("pk_agenda_weekly_hours")),
    )
    op.create_index(
        op.f("ix_agenda_weekly_hours_practitioner_id"),
        "agenda_weekly_hours",
        ["practitioner_id"],
    )
    op.create_table(
        "agenda_exceptions",
        sa.Column("exception_id", sa.String(length=32), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("start_local", sa.Time(), nullable=True),
        sa.Column("end_local", sa.Time(), nullable=True),
        sa.Column("slot_minutes", sa.Integer(), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("exception_id", name=op.f("pk_agenda_exceptions")),
    )
    op.create_index(
        op.f("ix_agenda_exceptions_practitioner_id"), "agenda_exceptions", ["practitioner_id"]
    )
    op.create_table(
        "agenda_appointments",
        sa.Column("appointment_id", sa.String(length=32), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("start_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("relationship_id", sa.String(length=32), nullable=True),
        sa.Column("moved_to", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminder_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("appointment_id", name=op.f("pk_agenda_appointments")),
    )
    op.create_index(
        op.f("ix_agenda_appointments_patient_id"), "agenda_appointments", ["patient_id"]
    )
    op.create_index(
        "ix_agenda_appointments_practitioner_start",
        "agenda_appointments",
        ["practitioner_id", "start_utc"],
    )
    for name, column in (
        ("uq_agenda_practitioner_start", "practitioner_id"),
        ("uq_agenda_patient_start", "patient_id"),
    ):
        op.create_index(
            name,
            "agenda_appointments",
            [column, "start_utc"],
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        )


def downgrade() -> None:
    op.drop_table("agenda_appointments")
    op.drop_index(op.f("ix_agenda_exceptions_practitioner_id"), table_name="agenda_exceptions")
    op.drop_table("agenda_exceptions")
    op.drop_index(op.f("ix_agenda_weekly_hours_practitioner_id"), table_name="agenda_weekly_hours")
    op.drop_table("agenda_weekly_hours")
