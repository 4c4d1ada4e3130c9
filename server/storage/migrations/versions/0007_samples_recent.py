"""samples_recent: SQLite's unindexed staging table in front of samples

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "samples_recent",
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column(
            "ts",
            sa.Float(precision=53).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql"),
            nullable=False,
        ),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("quality", sa.SmallInteger(), nullable=False),
        comment="SQLite's staging table; PostgreSQL's historian never uses it.",
    )


def downgrade() -> None:
    # Samples still staged must not be lost with the table.
    op.execute("INSERT INTO samples (tag_id, ts, value, quality) SELECT tag_id, ts, value, quality FROM samples_recent")
    op.drop_table("samples_recent")
