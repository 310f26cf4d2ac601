"""row integrity: a row_mac tag column on every table a decision or a read rests on

Revision ID: 0006_row_integrity
Revises: (a root of its own; depends on 0003_identity, 0004_consent_policy, 0005_fhir_records)
Create Date: 2026-12-06 21:00:00.000000

Why not ``down_revision = "0001"`` like the other branches: with ``depends_on`` naming revisions
that themselves descend from 0001, Alembic 1.20 takes this revision for a merge of those
branches and fails on an empty database (``KeyError: '0001'`` in its head bookkeeping). A root
of its own with the same ``depends_on`` runs after the three tables' branches all the same.

Rows written before this revision have no tag: they are not trusted (a decision treats a row
with a missing tag as tampered). A database upgraded from an earlier version re-tags them once
with the platform's key: :func:`secretum.storage.integrity_backfill.tag_untagged` (the migration
itself has no access to the key vault, on purpose).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_row_integrity"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("integrity",)
depends_on: str | Sequence[str] | None = (
    "0003_identity",
    "0004_consent_policy",
    "0005_fhir_records",
)

TABLES = (
    "fhir_resources",
    "care_relationships",
    "restricted_data_named",
    "break_glass_grants",
    "processing_restrictions",
    "consents",
    "identity_accounts",
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("row_mac", sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("row_mac")
