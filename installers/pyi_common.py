"""What every PyInstaller spec of the project shares: the hidden imports, data files and
exclusions of the two programs, on Linux and Windows alike.

Why hidden imports at all: SQLAlchemy imports the DBAPI driver of a URL only when an engine is
created (`import_dbapi()`), and Alembic loads `env.py` and the revisions by file path, so
PyInstaller's import graph never sees `asyncpg`, `aiosqlite` or the migration scripts. The
frozen `iiot-server check` (run by tests/installers on SQLite and PostgreSQL) is what proves
this list is complete.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# SQLAlchemy dialects and the DBAPI modules it imports lazily, for both supported databases.
DATABASE_IMPORTS = [
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.ext.asyncio",
    "aiosqlite",
    "sqlite3",
    "asyncpg",
    "asyncpg.pgproto.pgproto",
    "greenlet",
    # Alembic's migration scripts are run from source files (data below); what they import:
    "alembic",
    "alembic.op",
    "alembic.context",
    "alembic.ddl.sqlite",
    "alembic.ddl.postgresql",
]

# uvicorn picks its loop, HTTP and WebSocket implementations by name at run time.
HTTP_IMPORTS = [
    "uvicorn.loops.auto",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn.lifespan.off",
    "uvicorn.lifespan.on",
]

# The field protocols; the adapters import them at module level, aiocoap its transports lazily.
PROTOCOL_IMPORTS = [
    "aiomqtt",
    "paho.mqtt.client",
    "aio_pika",
    "aiormq",
    "pamqp",
    "aiocoap.transports.udp6",
    "aiocoap.transports.generic_udp",
    "aiocoap.numbers.contentformat",
    "asyncua",
    "asyncua.crypto.security_policies",
    "pymodbus.client",
    "google.protobuf",
]

# Development tools reachable through optional imports (pydantic's mypy plugin, hypothesis'
# pytest plugin, uvicorn's --reload): 20 MB that a plant never runs.
DEV_EXCLUDES = ["tkinter", "pytest", "_pytest", "hypothesis", "mypy", "ast_serialize", "librt", "IPython",
                "matplotlib", "watchfiles", "uvicorn.supervisors.watchfilesreload"]  # fmt: skip
SERVER_EXCLUDES = [*DEV_EXCLUDES, "PySide6", "shiboken6", "pyqtgraph", "qasync", "hmi"]
# The console needs only the wire schema from the server package, none of its machinery.
HMI_EXCLUDES = [*DEV_EXCLUDES, "sqlalchemy", "alembic", "asyncua", "aiocoap", "pymodbus", "aio_pika", "aiomqtt",
                "fastapi", "uvicorn", "uvloop", "asyncpg", "aiosqlite", "numpy.f2py"]  # fmt: skip


def _submodules(package: str) -> list[str]:
    """A package's modules, including any a registry imports by name (ours, skops')."""
    from PyInstaller.utils.hooks import collect_submodules

    return collect_submodules(package, filter=lambda name: ".migrations.versions" not in name)


def _namespace_modules(package: str) -> list[str]:
    """The modules of a namespace package (no __init__.py), which collect_submodules leaves out."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [f"{package}.{f.stem}" for d in spec.submodule_search_locations for f in sorted(Path(d).glob("[!.]*.py"))]


def server_analysis(extra_imports: list[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `Analysis` of `iiot-server` (and the Windows service host)."""
    hidden = DATABASE_IMPORTS + HTTP_IMPORTS + PROTOCOL_IMPORTS + _submodules("server") + (extra_imports or [])
    # skops loads its per-library (de)serialisers by name (skops.io._sklearn, ._numpy, ...), and
    # those of older file formats from skops.io.old, a namespace package collect_submodules skips.
    hidden += _submodules("skops.io") + _namespace_modules("skops.io.old")
    if sys.platform != "win32":
        hidden.append("uvloop")
    migrations = ROOT / "server" / "storage" / "migrations"
    return {
        "pathex": [str(ROOT)],
        "hiddenimports": hidden,
        # Alembic runs env.py and versions/*.py from the directory beside server/storage/database.py.
        "datas": [(str(migrations), "server/storage/migrations")],
        "excludes": SERVER_EXCLUDES,
        "noarchive": False,
    }


def hmi_analysis() -> dict[str, Any]:
    """Keyword arguments for `Analysis` of `iiot-hmi`: Qt's plugins come with PyInstaller's
    PySide6 hooks (platforms: offscreen, xcb and its libxcb-* dependencies on Linux)."""
    return {
        "pathex": [str(ROOT)],
        "hiddenimports": _submodules("hmi") + ["server.api.schema", "keyrings.alt.file", "qasync"],
        # hmi/style.py looks for assets/ beside the package directory: _internal/assets.
        "datas": [(str(ROOT / "assets"), "assets")],
        "excludes": HMI_EXCLUDES,
        "noarchive": False,
    }


def spec_args(argv: list[str]) -> dict[str, Any]:
    """Options after `--` on the pyinstaller command line (`-- --onefile`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="spec")
    parser.add_argument("--onefile", action="store_true", help="one self-extracting file instead of a directory")
    return vars(parser.parse_args(argv))
