"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.storage.database import Database
from server.storage.schema import metadata
from tests.support import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def test_migrations_match_the_declared_schema(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert await db.migrate() == Database.head_revision()
        async with db.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        # Server defaults and JSON variants compare loosely across dialects; structure must match.
        structural = [d for d in diff if d[0] in {"add_table", "remove_table", "add_column", "remove_column"}]
        assert structural == []
        await db.ensure_current()
    finally:
        await db.dispose()
