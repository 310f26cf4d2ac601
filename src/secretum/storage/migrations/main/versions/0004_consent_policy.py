"""consent and policy facts: consents and withdrawals, care relationships, practitioners named
for restricted data, break-the-glass grants and reviews, restrictions of processing

Revision ID: 0004_consent_policy
Revises: 0001
Create Date: 2026-11-29 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_consent_policy"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("consent",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("grantee_id", sa.String(length=64), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("text_version", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=48), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("source_address", sa.String(length=45), nullable=True),
        sa.Column("evidence_id", sa.String(length=64), nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "consent_withdrawals",
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=48), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("source_address", sa.String(length=45), nullable=True),
        sa.Column("evidence_id", sa.String(length=64), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.consent_id"],
            name=op.f("fk_consent_withdrawals_consent_id_consents"),
        ),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consent_withdrawals")),
    )

    op.create_table(
        "care_relationships",
        sa.Column("relationship_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("relationship_id", name=op.f("pk_care_relationships")),
    )
    with op.batch_alter_table("care_relationships", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_care_relationships_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_care_relationships_practitioner_id"), ["practitioner_id"], unique=False
        )

    op.create_table(
        "restricted_data_named",
        sa.Column("naming_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("named_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("naming_id", name=op.f("pk_restricted_data_named")),
    )
    with op.batch_alter_table("restricted_data_named", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_restricted_data_named_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "break_glass_grants",
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("reason_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_break_glass_grants")),
    )
    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_break_glass_grants_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_break_glass_grants_practitioner_id"), ["practitioner_id"], unique=False
        )

    op.create_table(
        "break_glass_reviews",
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("reviewer_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["break_glass_grants.grant_id"],
            name=op.f("fk_break_glass_reviews_grant_id_break_glass_grants"),
        ),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_break_glass_reviews")),
    )

    op.create_table(
        "processing_restrictions",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "seq", name=op.f("pk_processing_restrictions")),
    )


def downgrade() -> None:
    op.drop_table("processing_restrictions")
    op.drop_table("break_glass_reviews")
    with op.batch_alter_table("break_glass_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_break_glass_grants_practitioner_id"))
        batch_op.drop_index(batch_op.f("ix_break_glass_grants_patient_id"))
    op.drop_table("break_glass_grants")
    with op.batch_alter_table("restricted_data_named", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_restricted_data_named_patient_id"))
    op.drop_table("restricted_data_named")
    with op.batch_alter_table("care_relationships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_care_relationships_practitioner_id"))
        batch_op.drop_index(batch_op.f("ix_care_relationships_patient_id"))
    op.drop_table("care_relationships")
    op.drop_table("consent_withdrawals")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_patient_id"))
    op.drop_table("consents")
