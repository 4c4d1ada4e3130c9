"""anomaly models: a registry of versions with their skops artifacts

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ml_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(precision=53), server_default="0", nullable=False),
        sa.Column("phase", sa.String(length=32), server_default="", nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("features", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("train_start", sa.Float(precision=53), nullable=False),
        sa.Column("train_end", sa.Float(precision=53), nullable=False),
        sa.Column("threshold", sa.Float(precision=53), nullable=True),
        sa.Column("trained_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("artifact", sa.LargeBinary(), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_ml_models_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["nodes.id"], name=op.f("fk_ml_models_device_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_models")),
        sa.UniqueConstraint("tenant_id", "device_id", "version", name="uq_ml_models_tenant_device_version"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("ml_models")
