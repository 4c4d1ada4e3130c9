"""The REST + WebSocket API (FastAPI)."""
