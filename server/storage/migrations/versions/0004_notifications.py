"""notification set-up (channels, policies, schedules, preferences) and the delivery log

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notify_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_notify_objects_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_objects")),
        sa.UniqueConstraint("tenant_id", "kind", "name", name="uq_notify_objects_tenant_kind_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(precision=53), nullable=False),
        sa.Column("condition_id", sa.Integer(), nullable=True),
        sa.Column("episode", sa.Integer(), server_default="0", nullable=False),
        sa.Column("route", sa.String(length=100), nullable=False),
        sa.Column("step", sa.Integer(), server_default="0", nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=1000), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_notify_deliveries_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_deliveries")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notify_deliveries_tenant_ts", "notify_deliveries", ["tenant_id", "ts"])
    op.create_index("ix_notify_deliveries_episode", "notify_deliveries", ["tenant_id", "condition_id", "episode"])


def downgrade() -> None:
    op.drop_table("notify_deliveries")
    op.drop_table("notify_objects")
