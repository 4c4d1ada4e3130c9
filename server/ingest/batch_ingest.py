"""A tenant's messages of one received batch in one pipeline call, for the queueing adapters.

One call per batch instead of per message is what lets MQTT and AMQP keep up with their
brokers: the pipeline's per-call cost (device lookups, one bus batch, one writer chunk, one
commit wait) is paid once per few hundred messages. The pipeline is all or nothing, so when a
merged call is refused the messages are stored one by one and only the bad one is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy.exc

from server.domain.errors import DomainError, InvalidInput, NotFound, Unavailable
from server.ingest.pipeline import DeviceValues, IngestPipeline, refusal_reason

log = logging.getLogger(__name__)

Outcome = Exception | None
"""Per message: None (stored), the DomainError that refused it, or an unexpected exception."""


def storage_trouble(exc: BaseException) -> bool:
    """The historian or the database failed, not the message: keep it with the broker (no ack)."""
    return isinstance(exc, Unavailable | OSError | TimeoutError | sqlalchemy.exc.SQLAlchemyError)


async def ingest_together(
    pipeline: IngestPipeline,
    tenant_id: int,
    source: str,
    messages: Sequence[list[DeviceValues]],
) -> list[Outcome]:
    """Store the messages (each a list of items) and say what became of each.

    Storage trouble (`storage_trouble`) propagates: none of the messages may be
    acknowledged, the broker redelivers them. Counters end up as if every message had been
    ingested on its own.
    """
    if len(messages) > 1:
        items = [item for m in messages for item in m]
        try:
            await pipeline.ingest(tenant_id, items, source=source)
            return [None] * len(messages)
        except Exception as exc:
            if storage_trouble(exc):
                raise
            _uncount(pipeline, tenant_id, source, items, exc)
    outcomes: list[Outcome] = []
    for m in messages:
        try:
            await pipeline.ingest(tenant_id, m, source=source)
            outcomes.append(None)
        except Exception as exc:
            if storage_trouble(exc):
                raise
            outcomes.append(exc)
    return outcomes


def _uncount(pipeline: IngestPipeline, tenant_id: int, source: str, items: list[DeviceValues], exc: Exception) -> None:
    """The pipeline counted the refused merged call; the calls one by one count again."""
    stats = pipeline.adapter(source, tenant_id)
    n = sum(len(i.values) for i in items)
    stats.received -= n
    if isinstance(exc, InvalidInput | NotFound):
        reason = refusal_reason(exc)
        stats.rejected[reason] -= n
        if stats.rejected[reason] <= 0:
            del stats.rejected[reason]
    elif not isinstance(exc, DomainError):
        log.warning("%s: a merged ingest failed (%r); storing one by one", source, exc)
