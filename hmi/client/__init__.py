"""The server connection: REST + WebSocket, token refresh, reconnect. Imports no Qt, so it can be
tested and reused (scripts, the soak bench) without a display."""

from hmi.client.errors import ApiError, AuthError, ServerUnreachable
from hmi.client.rest import Api
from hmi.client.session import Session
from hmi.client.stream import LinkState, LiveStream, StreamListener, Update

__all__ = ["Api", "ApiError", "AuthError", "LinkState", "LiveStream", "ServerUnreachable", "Session",
           "StreamListener", "Update"]  # fmt: skip
