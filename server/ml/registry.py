"""The model registry: one row per model version of a device, with its parameters, feature
set, training range, metrics, who trained it, and the skops artifact. Every query names the
tenant; the artifact lives in the row, so it is backed up, restored and shared by several
servers with the rest of the database (and leaves with its tenant or device)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.errors import NotFound
from server.storage.database import Database
from server.storage.repositories.base import now, utc
from server.storage.schema import ml_models, nodes

QUEUED, TRAINING, READY, FAILED = "queued", "training", "ready", "failed"

_COLUMNS = [c for c in ml_models.c if c.name != "artifact"]


@dataclass(slots=True)
class StoredModel:
    id: int
    tenant_id: int
    device_id: int
    device_node_id: str
    device_path: str
    version: int
    status: str
    progress: float
    phase: str
    error: str | None
    params: dict[str, Any]
    features: dict[str, Any]
    metrics: dict[str, Any]
    train_start: float
    train_end: float
    threshold: float | None
    trained_by: str
    created_at: datetime | None
    finished_at: datetime | None
    artifact_sha256: str | None


def _model(row: Any) -> StoredModel:
    return StoredModel(
        id=row.id, tenant_id=row.tenant_id, device_id=row.device_id, device_node_id=row.node_id,
        device_path=row.path, version=row.version, status=row.status, progress=float(row.progress),
        phase=row.phase, error=row.error, params=dict(row.params), features=dict(row.features),
        metrics=dict(row.metrics), train_start=float(row.train_start), train_end=float(row.train_end),
        threshold=row.threshold, trained_by=row.trained_by, created_at=utc(row.created_at),
        finished_at=utc(row.finished_at), artifact_sha256=row.artifact_sha256,
    )  # fmt: skip


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS, nodes.c.node_id, nodes.c.path).join(nodes, nodes.c.id == ml_models.c.device_id)


class ModelRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, tenant_id: int, device_id: int, params: dict[str, Any], train_start: float, train_end: float,
        user: str,
    ) -> StoredModel:  # fmt: skip
        """A new version of the device's model, queued for training."""
        for attempt in range(3):  # two engineers training the same device at once: next number
            try:
                async with self.db.begin() as conn:
                    latest = await conn.scalar(
                        sa.select(sa.func.max(ml_models.c.version)).where(
                            ml_models.c.tenant_id == tenant_id, ml_models.c.device_id == device_id
                        )
                    )
                    new_id = await conn.scalar(
                        ml_models.insert()
                        .values(tenant_id=tenant_id, device_id=device_id, version=int(latest or 0) + 1, status=QUEUED,
                                progress=0.0, phase=QUEUED, params=params, features={}, metrics={},
                                train_start=train_start, train_end=train_end, trained_by=user, created_at=now())
                        .returning(ml_models.c.id)
                    )  # fmt: skip
                return await self.get(tenant_id, int(new_id))
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def get(self, tenant_id: int, model_id: int) -> StoredModel:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(_select().where(ml_models.c.tenant_id == tenant_id, ml_models.c.id == model_id))
            ).first()
        if row is None:
            raise NotFound(f"model {model_id} not found")
        return _model(row)

    async def models(self, tenant_id: int, device_id: int | None = None) -> list[StoredModel]:
        query = _select().where(ml_models.c.tenant_id == tenant_id)
        if device_id is not None:
            query = query.where(ml_models.c.device_id == device_id)
        async with self.db.connect() as conn:
            rows = await conn.execute(query.order_by(nodes.c.path, ml_models.c.version.desc()))
            return [_model(r) for r in rows]

    async def active(self, tenant_id: int | None = None) -> list[StoredModel]:
        """The newest ready version of each device's model (all tenants: the scorer's start)."""
        newest = (
            sa.select(ml_models.c.device_id, sa.func.max(ml_models.c.version).label("v"))
            .where(ml_models.c.status == READY)
            .group_by(ml_models.c.device_id)
            .subquery()
        )
        query = _select().join(
            newest, sa.and_(newest.c.device_id == ml_models.c.device_id, newest.c.v == ml_models.c.version)
        )
        if tenant_id is not None:
            query = query.where(ml_models.c.tenant_id == tenant_id)
        async with self.db.connect() as conn:
            return [_model(r) for r in await conn.execute(query.order_by(ml_models.c.id))]

    async def active_for(self, tenant_id: int, device_id: int) -> StoredModel | None:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    _select()
                    .where(
                        ml_models.c.tenant_id == tenant_id,
                        ml_models.c.device_id == device_id,
                        ml_models.c.status == READY,
                    )
                    .order_by(ml_models.c.version.desc())
                    .limit(1)
                )  # fmt: skip
            ).first()
        return _model(row) if row is not None else None

    async def progress(self, model_id: int, status: str, progress: float, phase: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                ml_models.update()
                .where(ml_models.c.id == model_id)
                .values(status=status, progress=progress, phase=phase)
            )

    async def finish(
        self, model_id: int, artifact: bytes, features: dict[str, Any], metrics: dict[str, Any], threshold: float
    ) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                ml_models.update()
                .where(ml_models.c.id == model_id)
                .values(status=READY, progress=1.0, phase=READY, artifact=artifact, features=features,
                        metrics=metrics, threshold=threshold, finished_at=now(),
                        artifact_sha256=hashlib.sha256(artifact).hexdigest())
            )  # fmt: skip

    async def fail(self, model_id: int, error: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                ml_models.update()
                .where(ml_models.c.id == model_id)
                .values(status=FAILED, phase=FAILED, error=error[:1000], finished_at=now())
            )

    async def interrupted(self) -> int:
        """Jobs that were queued or running when the server last stopped: failed, say so."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                ml_models.update()
                .where(ml_models.c.status.in_([QUEUED, TRAINING]))
                .values(status=FAILED, phase=FAILED, error="interrupted: the server stopped during training",
                        finished_at=now())
            )  # fmt: skip
            return int(result.rowcount or 0)

    async def artifact(self, tenant_id: int, model_id: int) -> bytes:
        async with self.db.connect() as conn:
            data = await conn.scalar(
                sa.select(ml_models.c.artifact).where(ml_models.c.tenant_id == tenant_id, ml_models.c.id == model_id)
            )
        if data is None:
            raise NotFound(f"model {model_id} has no trained artifact")
        return bytes(data)

    async def delete(self, tenant_id: int, model_id: int) -> None:
        async with self.db.begin() as conn:
            result = await conn.execute(
                ml_models.delete().where(ml_models.c.tenant_id == tenant_id, ml_models.c.id == model_id)
            )
        if not result.rowcount:
            raise NotFound(f"model {model_id} not found")
