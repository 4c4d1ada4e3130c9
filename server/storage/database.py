"""The SQLAlchemy async engine, its dialect quirks, and schema migration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(Exception):
    """Start-up problem with the database, phrased for a plant engineer (no traceback)."""


def normalize_url(raw: str) -> URL:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    url = make_url(raw)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise DatabaseError(f"unsupported database {backend!r} in {safe_url(url)}: use postgresql:// or sqlite:///")


def safe_url(url: URL | str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Owns the engine; repositories borrow connections from it."""

    def __init__(self, raw_url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(raw_url)
        self.dialect = self.url.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "postgresql":
            kwargs |= {"pool_size": 10, "max_overflow": 10, "pool_pre_ping": True}
        else:
            kwargs |= {"connect_args": {"timeout": 30}}
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def display_url(self) -> str:
        """As the user wrote it: no password, no async driver name."""
        return self.url.set(drivername=self.dialect).render_as_string(hide_password=True)

    async def check(self, wait_s: float = 10.0) -> None:
        """Fail with one clear line when the database can't be reached."""
        try:
            async with asyncio.timeout(wait_s):
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        except TimeoutError:
            raise DatabaseError(f"database {self.display_url} did not answer within {wait_s:.0f} s") from None
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DatabaseError(f"cannot connect to database {self.display_url}: {reason}") from None

    async def migrate(self) -> str:
        """Bring the schema to the newest revision; returns that revision."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)
        if self.dialect == "sqlite":
            restrict_file(self.url.database)
        revision = await self.revision()
        assert revision is not None
        return revision

    async def revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

    @staticmethod
    def head_revision() -> str:
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        assert head is not None
        return head

    async def ensure_current(self) -> None:
        if self.dialect == "sqlite":
            restrict_file(self.url.database)
        current, head = await self.revision(), self.head_revision()
        if current != head:
            raise DatabaseError(
                f"database {self.display_url} is at schema revision {current or 'none'}, expected {head}: "
                "run `iiot-server migrate` (or `iiot-server init` on a new database)"
            )

    def connect(self) -> Any:
        return self.engine.connect()

    def begin(self) -> Any:
        return self.engine.begin()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(sync_conn: sa.Connection) -> None:
    cfg = _alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def restrict_file(path: str | None) -> None:
    """The database holds password hashes and plant data: owner-only, like the secret file."""
    if path and path != ":memory:" and os.name != "nt":
        with contextlib.suppress(OSError):
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


Conn = AsyncConnection
