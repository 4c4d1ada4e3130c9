"""The historian: batched sample writes, rollup tiers and decimated reads.

Samples bypass the ORM: the stores talk to the raw drivers (COPY binary on PostgreSQL,
executemany in large transactions on SQLite) because that is where the throughput is.
"""
