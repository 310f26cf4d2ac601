"""fhir records: resource index, blind index of identifiers, scheduled erasures

Revision ID: 0005_fhir_records
Revises: 0001
Create Date: 2026-11-29 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_fhir_records"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("fhir",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_resources",
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sensitivity", sa.String(length=16), nullable=False),
        sa.Column("file_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", name=op.f("pk_fhir_resources")),
    )
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_resources_patient_type", ["patient_id", "resource_type"], unique=False
        )
    op.create_table(
        "fhir_identifiers",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("blind_value", sa.LargeBinary(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "kind", "blind_value", "patient_id", name=op.f("pk_fhir_identifiers")
        ),
    )
    with op.batch_alter_table("fhir_identifiers", schema=None) as batch_op:
        batch_op.create_index("ix_fhir_identifiers_patient_id", ["patient_id"], unique=False)
    op.create_table(
        "scheduled_erasures",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_scheduled_erasures")),
    )
    with op.batch_alter_table("scheduled_erasures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scheduled_erasures_due_at"), ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scheduled_erasures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scheduled_erasures_due_at"))
    op.drop_table("scheduled_erasures")
    with op.batch_alter_table("fhir_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_identifiers_patient_id")
    op.drop_table("fhir_identifiers")
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resources_patient_type")
    op.drop_table("fhir_resources")
