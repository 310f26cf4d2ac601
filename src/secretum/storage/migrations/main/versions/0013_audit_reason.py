"""audit reason: the reason code of a refused attempt (outcome_desc) on every audit entry

Revision ID: 0013_audit_reason
Revises: 0001
Create Date: 2026-12-06 22:10:00.000000

``audit_entries`` is created by 0001 itself, so this branch roots at 0001 like the others (no
``depends_on`` needed). The column is nullable: entries written before it have no reason code,
and their canonical bytes (hence leaf hashes) leave the member out, so they verify unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_audit_reason"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("audit_reason",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome_desc", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_column("outcome_desc")
