"""SQLAlchemy Core schema, shared by the repositories and the Alembic migrations."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from server.domain.rollup import TIERS

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

SampleTime = sa.Float(precision=53).with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
"""Sample times: timestamptz on PostgreSQL, UTC epoch seconds (REAL) on SQLite."""

BucketTime = sa.BigInteger().with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")

JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("settings", JsonDoc, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    _created(),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)

roles = sa.Table(
    "roles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    sa.Column("permissions", JsonDoc, nullable=False),
    sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
    _created(),
    sa.UniqueConstraint("tenant_id", "name", name="uq_roles_tenant_name"),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("password_hash", sa.String(100), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("is_system_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
    _created(),
    sa.UniqueConstraint("tenant_id", "username", name="uq_users_tenant_username"),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)

user_roles = sa.Table(
    "user_roles",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role_id", sa.Integer, sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("roles", JsonDoc, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    _created(),
    sa.UniqueConstraint("tenant_id", "name", name="uq_api_keys_tenant_name"),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("family", sa.String(32), nullable=False, index=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    _created(),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(500), nullable=False, server_default=""),
    sa.Column("success", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Column("detail", JsonDoc, nullable=False),
    sa.Index("ix_audit_tenant_ts", "tenant_id", "ts"),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("node_id", sa.String(600), nullable=False),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True),
    sa.Column("node_class", sa.String(16), nullable=False),
    sa.Column("browse_name", sa.String(100), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("path", sa.String(2000), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False, server_default=""),
    sa.Column("data_type", sa.String(16), nullable=True),
    sa.Column("unit", sa.String(32), nullable=True),
    sa.Column("range_low", sa.Float(precision=53), nullable=True),
    sa.Column("range_high", sa.Float(precision=53), nullable=True),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "node_id", name="uq_nodes_tenant_node_id"),
    sa.UniqueConstraint("tenant_id", "path", name="uq_nodes_tenant_path"),
    sa.Index("ix_nodes_tenant_parent", "tenant_id", "parent_id"),
    sqlite_autoincrement=True,  # ids are never reused: a deleted tag's id must not return
)


def _sample_columns() -> list[sa.Column[Any]]:
    """A sample's columns, new objects for each table that holds samples."""
    return [
        sa.Column("tag_id", sa.Integer, nullable=False),
        sa.Column("ts", SampleTime, nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=False),
    ]


samples = sa.Table("samples", metadata, *_sample_columns(), sa.Index("ix_samples_tag_ts", "tag_id", "ts"))

samples_recent = sa.Table(
    "samples_recent",
    metadata,
    *_sample_columns(),
    comment="SQLite's staging table; PostgreSQL's historian never uses it.",
)
"""SQLite commits land here first, with no index, and move into `samples` about once a second.
A commit into `samples` writes every index page it touches, one per tag, whole, to the WAL:
moving a second's samples in one go writes each page once instead of once per commit."""


def rollup_table_name(width: int) -> str:
    return f"rollup_{width}s"


def _rollup_table(width: int) -> sa.Table:
    return sa.Table(
        rollup_table_name(width),
        metadata,
        sa.Column("tag_id", sa.Integer, primary_key=True),
        sa.Column("bucket", BucketTime, primary_key=True),
        sa.Column("vmin", sa.Float(precision=53), nullable=False),
        sa.Column("vmax", sa.Float(precision=53), nullable=False),
        sa.Column("vsum", sa.Float(precision=53), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("first", sa.Float(precision=53), nullable=False),
        sa.Column("first_ts", sa.Float(precision=53), nullable=False),
        sa.Column("last", sa.Float(precision=53), nullable=False),
        sa.Column("last_ts", sa.Float(precision=53), nullable=False),
    )


rollups = {width: _rollup_table(width) for width in TIERS}

rollup_pending = sa.Table(
    "rollup_pending",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("min_ts", sa.Float(precision=53), nullable=False),
    sa.Column("max_ts", sa.Float(precision=53), nullable=False),
)
"""Time spans of committed sample batches whose rollups are not yet persisted (crash recovery)."""


dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("origin", sa.String(500), nullable=False, server_default=""),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.String(1000), nullable=False, server_default=""),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("payload_size", sa.Integer, nullable=False),
    sa.Index("ix_dead_letters_tenant_received", "tenant_id", "received_at"),
    sqlite_autoincrement=True,
)
"""Payloads an adapter could not use, kept (truncated) so an engineer can see what arrived."""

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("config", JsonDoc, nullable=False),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "name", name="uq_connections_tenant_name"),
    sqlite_autoincrement=True,
)
"""Outbound field connections of a tenant (OPC UA servers, Modbus devices), configured via the API."""

alarm_conditions = sa.Table(
    "alarm_conditions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("config", JsonDoc, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_by", sa.String(200), nullable=False, server_default=""),
    sa.UniqueConstraint("tenant_id", "name", name="uq_alarm_conditions_tenant_name"),
    sqlite_autoincrement=True,
)
"""What engineers configure; every version is also in the audit log."""

alarm_states = sa.Table(
    "alarm_states",
    metadata,
    sa.Column("condition_id", sa.Integer, sa.ForeignKey("alarm_conditions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("state", JsonDoc, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
"""Each condition's alarm as the engine last saw it: what a restart comes back to."""

alarm_journal = sa.Table(
    "alarm_journal",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("condition_id", sa.Integer, nullable=False),
    sa.Column("condition_name", sa.String(200), nullable=False),
    sa.Column("source", sa.String(1000), nullable=False, server_default=""),
    sa.Column("ts", sa.Float(precision=53), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("from_state", sa.String(16), nullable=False),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(8), nullable=False),
    sa.Column("value", sa.Float(precision=53), nullable=True),
    sa.Column("level", sa.String(16), nullable=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("comment", sa.String(2000), nullable=True),
    sa.Index("ix_alarm_journal_tenant_ts", "tenant_id", "ts"),
    sa.Index("ix_alarm_journal_condition_ts", "condition_id", "ts"),
    sqlite_autoincrement=True,
)
"""Every alarm transition: time, condition, from and to, value, user (or system), comment.
No foreign key to the condition: the record outlives a deleted condition."""

notify_objects = sa.Table(
    "notify_objects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("config", JsonDoc, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "kind", "name", name="uq_notify_objects_tenant_kind_name"),
    sqlite_autoincrement=True,
)
"""A tenant's notification set-up: channels, policies, on-call schedules, user preferences and
the webhook allowlist (kind + name), each a validated JSON document."""

notify_deliveries = sa.Table(
    "notify_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ts", sa.Float(precision=53), nullable=False),
    sa.Column("condition_id", sa.Integer, nullable=True),
    sa.Column("episode", sa.Integer, nullable=False, server_default="0"),
    sa.Column("route", sa.String(100), nullable=False),
    sa.Column("step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("target", sa.String(400), nullable=False),
    sa.Column("channel", sa.String(100), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("detail", sa.String(1000), nullable=False, server_default=""),
    sa.Index("ix_notify_deliveries_tenant_ts", "tenant_id", "ts"),
    sa.Index("ix_notify_deliveries_episode", "tenant_id", "condition_id", "episode"),
    sqlite_autoincrement=True,
)
"""Every delivery attempt and its outcome; also what dedup looks at after a restart."""

user_settings = sa.Table(
    "user_settings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("value", JsonDoc, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("tenant_id", "user_id", "key", name="uq_user_settings_tenant_user_key"),
    sqlite_autoincrement=True,
)
"""A user's own documents (the console's saved trend sets, say), keyed by name: they follow the
user from one workstation to the next."""

ml_models = sa.Table(
    "ml_models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float(precision=53), nullable=False, server_default="0"),
    sa.Column("phase", sa.String(32), nullable=False, server_default=""),
    sa.Column("error", sa.String(1000), nullable=True),
    sa.Column("params", JsonDoc, nullable=False),
    sa.Column("features", JsonDoc, nullable=False),
    sa.Column("metrics", JsonDoc, nullable=False),
    sa.Column("train_start", sa.Float(precision=53), nullable=False),
    sa.Column("train_end", sa.Float(precision=53), nullable=False),
    sa.Column("threshold", sa.Float(precision=53), nullable=True),
    sa.Column("trained_by", sa.String(200), nullable=False),
    _created(),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("artifact", sa.LargeBinary, nullable=True),
    sa.Column("artifact_sha256", sa.String(64), nullable=True),
    sa.UniqueConstraint("tenant_id", "device_id", "version", name="uq_ml_models_tenant_device_version"),
    sqlite_autoincrement=True,
)
"""Anomaly models of devices, one row per version: parameters, feature set, training range,
metrics, who trained it, and the skops artifact (a tenant's models live in its own rows)."""
