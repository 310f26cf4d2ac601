"""consent evidence: the signing date and scanned form of consents recorded on paper

Revision ID: 0009_consent_evidence
Revises: 0001
Create Date: 2026-12-06 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_consent_evidence"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("consent_evidence",)
depends_on: str | Sequence[str] | None = "0004_consent_policy"


def upgrade() -> None:
    op.create_table(
        "consent_paper_forms",
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.consent_id"],
            name=op.f("fk_consent_paper_forms_consent_id_consents"),
        ),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consent_paper_forms")),
    )


def downgrade() -> None:
    op.drop_table("consent_paper_forms")
