"""Persistence: schema, migrations, tenant-scoped repositories and the historian."""
