"""radiology: reports index (worklist) and signing ceremonies

Revision ID: 0016_radiology_reports
Revises: 0001
Create Date: 2026-12-06 23:00:00.000000

Rooted at 0001 like the other contexts' branches; it references no other branch's table (ids
are plain strings), so it needs no ``depends_on``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_radiology_reports"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("radiology",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "radiology_reports",
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("study_uid_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("signed_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("report_id"),
    )
    op.create_index("ix_radiology_reports_patient_id", "radiology_reports", ["patient_id"])
    op.create_index(
        "ix_radiology_reports_study_uid_index", "radiology_reports", ["study_uid_index"]
    )
    op.create_table(
        "radiology_sign_challenges",
        sa.Column("challenge_id", sa.String(length=64), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("signer_id", sa.String(length=64), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("challenge_id"),
    )


def downgrade() -> None:
    op.drop_table("radiology_sign_challenges")
    op.drop_index("ix_radiology_reports_study_uid_index", table_name="radiology_reports")
    op.drop_index("ix_radiology_reports_patient_id", table_name="radiology_reports")
    op.drop_table("radiology_reports")
