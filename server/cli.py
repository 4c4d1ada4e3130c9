"""`iiot-server`: run, init, create-user, migrate, config. Errors are one line, not a traceback."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from server import __version__
from server.config import ConfigError, Settings, example_toml, load_settings
from server.domain.errors import DomainError
from server.storage.database import Database, DatabaseError

log = logging.getLogger("iiot-server")


class CliError(Exception):
    pass


def _password(env_name: str, prompt: str) -> str:
    """From the environment (automation) or a prompt typed twice; never echoed or logged."""
    value = os.environ.get(env_name)
    if value:
        return value
    if not sys.stdin.isatty():
        raise CliError(f"no password: set {env_name} or run in a terminal to be prompted")
    first = getpass.getpass(f"{prompt}: ")
    if first != getpass.getpass(f"{prompt} (again): "):
        raise CliError("the two passwords differ")
    return first


async def _init(settings: Settings, tenant: str, admin: str) -> str:
    from server.app import Server

    db = Database(settings.database_url)
    try:
        await db.check()
        revision = await db.migrate()
    finally:
        await db.dispose()
    server = Server(settings)
    try:
        existing = await server.admin.tenants.by_name(tenant)
        if existing is not None:
            return f"database {server.db.display_url} at revision {revision}; tenant {tenant!r} already exists"
        password = _password("IIOT_ADMIN_PASSWORD", f"password for {admin}")
        await server.admin.create_tenant(None, tenant, None, admin, password)
    finally:
        await server.db.dispose()
    return f"database {server.db.display_url} at revision {revision}; tenant {tenant!r} created with admin {admin!r}"


async def _migrate(settings: Settings) -> str:
    db = Database(settings.database_url)
    try:
        await db.check()
        before = await db.revision()
        after = await db.migrate()
    finally:
        await db.dispose()
    return f"database {db.display_url}: schema {before or 'empty'} -> {after}"


async def _create_user(settings: Settings, tenant: str, username: str, roles: list[str]) -> str:
    from server.app import Server
    from server.security.passwords import hash_password

    server = Server(settings)
    try:
        await server.db.check()
        await server.db.ensure_current()
        found = await server.admin.tenants.by_name(tenant)
        if found is None:
            raise CliError(f"tenant {tenant!r} does not exist (iiot-server init --tenant {tenant} --admin NAME)")
        password = _password("IIOT_PASSWORD", f"password for {username}")
        user = await server.admin.users.create(found.id, username, await hash_password(password), roles)
        await server.audit.record(found.id, "cli", "user.create", username, detail={"roles": roles})
    finally:
        await server.db.dispose()
    return f"user {user.username!r} created in tenant {tenant!r} with role(s) {', '.join(user.roles)}"


async def _check(settings: Settings) -> str:
    db = Database(settings.database_url)
    try:
        await db.check()
        await db.ensure_current()
    finally:
        await db.dispose()
    return f"configuration valid; database {db.display_url} reachable and current; {_protocols_loaded()}"


def _protocols_loaded() -> str:
    """Import every protocol adapter and its library: a frozen build missing one fails here,
    in `check` (which the installers run), instead of at the first message from the field."""
    from server.ingest import registry

    names = ", ".join(module.__name__.rsplit(".", 1)[-1] for module in registry.MODULES)
    return f"protocol adapters loaded: {names}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iiot-server", description="Industrial historian, alarms and live data server"
    )
    parser.add_argument("--version", action="version", version=f"iiot-server {__version__}")
    parser.add_argument("-c", "--config", type=Path, help="TOML configuration file (default: $IIOT_CONFIG)")
    parser.add_argument("--check", action="store_true", help="the same as the check command (what installers run)")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the server")
    init = sub.add_parser("init", help="create or migrate the database and the first tenant with its admin")
    init.add_argument("--tenant", required=True)
    init.add_argument("--admin", required=True, help="admin username (password: $IIOT_ADMIN_PASSWORD or prompt)")
    user = sub.add_parser("create-user", help="add a user to a tenant (password: $IIOT_PASSWORD or prompt)")
    user.add_argument("--tenant", required=True)
    user.add_argument("--username", required=True)
    user.add_argument("--role", action="append", required=True, help="repeat for several roles")
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check", help="load the configuration, open the database, exit")
    sub.add_parser("example-config", help="print a configuration file with every key and its default")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check:
        args.command = "check"
    elif args.command is None:
        parser.error("a command is required (run, init, create-user, migrate, check, example-config)")
    if args.command == "example-config":
        print(example_toml(), end="")
        return 0
    try:
        settings = load_settings(args.config)
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        if args.command == "run":
            from server.app import main_loop

            main_loop(settings)
            return 0
        if args.command == "init":
            message = asyncio.run(_init(settings, args.tenant, args.admin))
        elif args.command == "migrate":
            message = asyncio.run(_migrate(settings))
        elif args.command == "create-user":
            message = asyncio.run(_create_user(settings, args.tenant, args.username, args.role))
        else:
            message = asyncio.run(_check(settings))
    except (ConfigError, DatabaseError, CliError) as exc:
        print(f"iiot-server: error: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:
        print(f"iiot-server: error: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"iiot-server: error: {exc}", file=sys.stderr)
        return 2
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
