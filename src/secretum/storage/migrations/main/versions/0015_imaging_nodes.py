"""imaging nodes: the registered DICOM nodes (AE title, certificate fingerprint, scopes)

Revision ID: 0015_imaging_nodes
Revises: 0012_imaging
Create Date: 2026-12-06 23:00:00.000000

On the imaging branch, after the archive's tables. Rows are tagged (``row_mac``) when written
by ``secretum.imaging.nodes``: a row without a tag is refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_imaging_nodes"
down_revision: str | None = "0012_imaging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "imaging_nodes",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("cert_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_mac", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_imaging_nodes")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_imaging_nodes_ae_title")),
        sa.UniqueConstraint("cert_sha256", name=op.f("uq_imaging_nodes_cert_sha256")),
    )


def downgrade() -> None:
    op.drop_table("imaging_nodes")
