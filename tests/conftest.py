"""Shared fixtures. Every database-backed suite runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.notify_support import Mailbox, Receiver
from tests.support import BACKENDS, LiveServer, TenantHandle, database_url, free_port, make_settings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server per backend for the whole run; tests isolate themselves by tenant."""
    tmp: Path = tmp_path_factory.mktemp(f"live-{backend}")
    with database_url(backend, tmp) as url:
        server = LiveServer(make_settings(tmp, url)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def tenant(live: LiveServer) -> TenantHandle:
    return live.new_tenant()


@pytest.fixture
def other_tenant(live: LiveServer) -> TenantHandle:
    return live.new_tenant("other")


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server (aiosmtpd) on loopback, collecting what it receives."""
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
