"""audit verifications: the outcome of each "Verify now" of the DPO (ids, codes, counts)

Revision ID: 0010_audit_verifications
Revises: 0001
Create Date: 2026-12-06 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_audit_verifications"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("audit_verify",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_verifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("entries_verified", sa.BigInteger(), nullable=False),
        sa.Column("checkpoints_verified", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("first_kind", sa.String(length=32), nullable=True),
        sa.Column("first_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_verifications")),
    )


def downgrade() -> None:
    op.drop_table("audit_verifications")
