"""Repositories: SQLAlchemy Core queries, every one scoped by a tenant id."""
