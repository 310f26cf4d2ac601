"""imaging archive: studies, series, instances, DICOM patient identifiers (issue 10)

Revision ID: 0012_imaging
Revises: 0001
Create Date: 2026-12-06 21:30:00.000000

A branch of its own ("imaging") rooted at 0001: its tables reference no other branch's table
(the patient id is a plain id, as in ``fhir_resources``), so no ``depends_on`` is needed (see
0006_row_integrity for why ``down_revision="0001"`` plus ``depends_on`` breaks).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_imaging"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("imaging",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imaging_studies",
        sa.Column("study_key", sa.String(length=32), nullable=False),
        sa.Column("study_uid_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("holding_owner", sa.String(length=64), nullable=True),
        sa.Column("sensitivity", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("unmatched_reason", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("study_key", name=op.f("pk_imaging_studies")),
        sa.UniqueConstraint("study_uid_index", name=op.f("uq_imaging_studies_study_uid_index")),
    )
    with op.batch_alter_table("imaging_studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_imaging_studies_patient_id"), ["patient_id"])
    op.create_table(
        "imaging_series",
        sa.Column("series_key", sa.String(length=32), nullable=False),
        sa.Column("series_uid_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("study_key", sa.String(length=32), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("series_key", name=op.f("pk_imaging_series")),
        sa.UniqueConstraint("series_uid_index", name=op.f("uq_imaging_series_series_uid_index")),
    )
    with op.batch_alter_table("imaging_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_imaging_series_study_key"), ["study_key"])
    op.create_table(
        "imaging_instances",
        sa.Column("instance_key", sa.String(length=32), nullable=False),
        sa.Column("sop_uid_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("series_key", sa.String(length=32), nullable=False),
        sa.Column("study_key", sa.String(length=32), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=False),
        sa.Column("plaintext_size", sa.BigInteger(), nullable=False),
        sa.Column("digest_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("blob_name", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("layout", sa.LargeBinary(), nullable=False),
        sa.Column("meta", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_key", name=op.f("pk_imaging_instances")),
        sa.UniqueConstraint("sop_uid_index", name=op.f("uq_imaging_instances_sop_uid_index")),
    )
    with op.batch_alter_table("imaging_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_imaging_instances_series_key"), ["series_key"])
        batch_op.create_index(batch_op.f("ix_imaging_instances_study_key"), ["study_key"])
        batch_op.create_index(
            "ix_imaging_instances_series_number", ["series_key", "instance_number"]
        )
    op.create_table(
        "imaging_patient_ids",
        sa.Column("blind_value", sa.LargeBinary(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("row_mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("blind_value", "patient_id", name=op.f("pk_imaging_patient_ids")),
    )
    with op.batch_alter_table("imaging_patient_ids", schema=None) as batch_op:
        batch_op.create_index("ix_imaging_patient_ids_patient_id", ["patient_id"])


def downgrade() -> None:
    op.drop_table("imaging_patient_ids")
    op.drop_table("imaging_instances")
    op.drop_table("imaging_series")
    op.drop_table("imaging_studies")
