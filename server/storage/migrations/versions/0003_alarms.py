"""alarm conditions, their current states, and the alarm journal

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alarm_conditions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alarm_conditions_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_conditions")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_alarm_conditions_tenant_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "alarm_states",
        sa.Column("condition_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["condition_id"], ["alarm_conditions.id"],
            name=op.f("fk_alarm_states_condition_id_alarm_conditions"), ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alarm_states_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("condition_id", name=op.f("pk_alarm_states")),
    )
    op.create_table(
        "alarm_journal",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("condition_id", sa.Integer(), nullable=False),
        sa.Column("condition_name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=1000), server_default="", nullable=False),
        sa.Column("ts", sa.Float(precision=53), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alarm_journal_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_journal")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alarm_journal_tenant_ts", "alarm_journal", ["tenant_id", "ts"])
    op.create_index("ix_alarm_journal_condition_ts", "alarm_journal", ["condition_id", "ts"])


def downgrade() -> None:
    op.drop_table("alarm_journal")
    op.drop_table("alarm_states")
    op.drop_table("alarm_conditions")
