"""What routes receive: the services of the running server and the authenticated caller."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from server.alarms.service import AlarmService
from server.analytics.service import AnalyticsService
from server.bus import Bus
from server.config import Settings
from server.domain.errors import Unauthorized
from server.domain.principal import Principal
from server.ingest.dead_letters import DeadLetterRepository
from server.ingest.pipeline import IngestPipeline
from server.ml.service import AnomalyService
from server.notify.service import NotifyService
from server.services.admin import AdminService
from server.services.auth import AuthService
from server.services.commands import CommandService
from server.services.connections import ConnectionService
from server.services.history import HistoryService
from server.services.namespace import NamespaceService
from server.services.user_settings import UserSettingsService
from server.storage.database import Database
from server.storage.historian.writer import HistorianWriter
from server.storage.repositories.audit import AuditRepository
from server.storage.repositories.credentials import ApiKeyRepository
from server.storage.repositories.nodes import NodeRepository


@dataclass(slots=True)
class ApiContext:
    """Built by server/app.py; routes never construct services themselves."""

    settings: Settings
    db: Database
    bus: Bus
    auth: AuthService
    admin: AdminService
    namespace: NamespaceService
    history: HistoryService
    pipeline: IngestPipeline
    writer: HistorianWriter
    nodes: NodeRepository
    audit: AuditRepository
    api_keys: ApiKeyRepository
    dead_letters: DeadLetterRepository | None = None
    connections: ConnectionService | None = None
    alarms: AlarmService | None = None
    notify: NotifyService | None = None
    commands: CommandService | None = None
    user_settings: UserSettingsService | None = None
    analytics: AnalyticsService | None = None
    anomaly: AnomalyService | None = None
    started_at: float = field(default_factory=time.monotonic)
    stream_clients: int = 0


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


_bearer = HTTPBearer(auto_error=False, description="access token from /api/v1/auth/login")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key for machines")


async def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    ctx = context(request)
    if bearer is not None and bearer.credentials:
        return await ctx.auth.principal_for_token(bearer.credentials)
    if api_key:
        who = await ctx.auth.principal_for_api_key(api_key)
        return who
    raise Unauthorized("authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'")


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


Ctx = Annotated[ApiContext, Depends(context)]
Caller = Annotated[Principal, Depends(principal)]
