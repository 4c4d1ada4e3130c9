"""The FastAPI application: routers, problem documents, body limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI

from server import __version__
from server.api import problems, stream
from server.api.deps import ApiContext
from server.api.limits import BodyLimitMiddleware
from server.api.routes import (
    admin,
    alarms,
    analytics,
    anomaly,
    auth,
    commands,
    connections,
    data,
    me,
    nodes,
    notifications,
    opcua,
    system,
)


def create_api(
    ctx: ApiContext, lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None
) -> FastAPI:
    @asynccontextmanager
    async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="iiot-server",
        version=__version__,
        description="Industrial historian, namespace and live stream. Errors are RFC 7807 problem documents.",
        lifespan=lifespan or _no_lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)
    v1 = APIRouter(prefix="/api/v1")
    for router in (
        auth.router,
        admin.router,
        nodes.router,
        data.router,
        analytics.router,
        anomaly.router,
        connections.router,
        opcua.router,
        commands.router,
        alarms.router,
        notifications.router,
        me.router,
    ):
        v1.include_router(router)
    app.include_router(v1)
    app.include_router(system.router)
    app.include_router(stream.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=ctx.settings.max_body_bytes)
    return app
