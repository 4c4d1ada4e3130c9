"""Ingestion: protocol adapters and the one pipeline every sample goes through."""
