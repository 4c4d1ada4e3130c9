"""A tenant's messages of one received batch in one pipeline call.

One call per batch instead of per message is what lets MQTT and AMQP keep up with their
brokers: the pipeline's per-call cost (device lookups, one bus batch, one writer chunk, one
commit wait) is paid once per few hundred messages. The pipeline is all or nothing, so when a
merged call is refused, the message at fault is refused alone and the rest stored together.
`Coalescer` does the same for request/response protocols (CoAP), whose requests each wait
for their commit: requests that arrive while earlier calls are being stored go together.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import sqlalchemy.exc

from server.domain.errors import DomainError, InvalidInput, NotFound, Unavailable
from server.ingest.pipeline import DeviceValues, IngestPipeline, IngestResult, refusal_reason

log = logging.getLogger(__name__)

Outcome = IngestResult | Exception
"""Per message: its result (stored), the DomainError that refused it, or an unexpected exception."""


def storage_trouble(exc: BaseException) -> bool:
    """The historian or the database failed, not the message: keep it with the broker (no ack)."""
    return isinstance(exc, Unavailable | OSError | TimeoutError | sqlalchemy.exc.SQLAlchemyError)


async def ingest_together(
    pipeline: IngestPipeline,
    tenant_id: int,
    source: str,
    messages: Sequence[list[DeviceValues]],
    *,
    urgent: bool = False,
) -> list[Outcome]:
    """Store the messages (each a list of items) and say what became of each.

    A refused merged call names the item at fault (`[i].device`, `[i].values.x`): that message
    is tried alone (and refused, counted as on its own), the rest merged again, so one bad
    message in a batch costs two calls, not one per message. A refusal that names no item falls
    back to one call per message. Storage trouble (`storage_trouble`) propagates: none of the
    messages may be acknowledged, the broker redelivers them. Counters end up as if every
    message had been ingested on its own. `urgent` goes to `IngestPipeline.ingest`.
    """
    outcomes: list[Outcome | None] = [None] * len(messages)
    pending = list(range(len(messages)))
    while len(pending) > 1:
        owner = [m for m in pending for _ in messages[m]]
        items = [item for m in pending for item in messages[m]]
        try:
            merged = await pipeline.ingest(tenant_id, items, source=source, urgent=urgent)
        except Exception as exc:
            if storage_trouble(exc):
                raise
            _uncount(pipeline, tenant_id, source, items, exc)
            culprit = _culprit(exc, owner)
            if culprit is None:
                break
            outcomes[culprit] = await _alone(pipeline, tenant_id, source, messages[culprit], urgent)
            pending.remove(culprit)
            continue
        for m, outcome in zip(pending, _split(merged, [messages[m] for m in pending]), strict=True):
            outcomes[m] = outcome
        pending = []
    for m in pending:
        outcomes[m] = await _alone(pipeline, tenant_id, source, messages[m], urgent)
    done: list[Outcome] = []
    for each in outcomes:
        assert each is not None  # every message was stored merged, refused or tried alone
        done.append(each)
    return done


async def _alone(
    pipeline: IngestPipeline, tenant_id: int, source: str, message: list[DeviceValues], urgent: bool
) -> Outcome:
    try:
        return await pipeline.ingest(tenant_id, message, source=source, urgent=urgent)
    except Exception as exc:
        if storage_trouble(exc):
            raise
        return exc


_ITEM = re.compile(r"\[(\d+)\]")


def _culprit(exc: Exception, owner: list[int]) -> int | None:
    """The message whose item a refusal names, if it names one."""
    match = _ITEM.match(exc.field or "") if isinstance(exc, DomainError) else None
    if match is None or int(match.group(1)) >= len(owner):
        return None
    return owner[int(match.group(1))]


def _split(merged: IngestResult, messages: Sequence[list[DeviceValues]]) -> list[Outcome]:
    """Each message's share of a merged call: its samples, and the tags it named first."""
    out: list[Outcome] = []
    start = 0
    for m in messages:
        end = start + len(m)
        created = [path for path, i in zip(merged.created_tags, merged.created_by, strict=True) if start <= i < end]
        by = [i - start for i in merged.created_by if start <= i < end]
        out.append(IngestResult(sum(len(item.values) for item in m), created, by))
        start = end
    return out


class Coalescer:
    """Requests that arrive while `in_flight` pipeline calls are being stored share the next one.

    A lone request goes at once; under load the requests gather behind the commits in flight,
    so the pipeline's per-call cost is paid once per many requests, each still answered only
    after its own samples are committed. Its calls are urgent (`IngestPipeline.ingest`): the
    requests are batched here already, and their clients can send nothing more until answered.
    """

    def __init__(self, pipeline: IngestPipeline, source: str, *, in_flight: int = 2) -> None:
        self.pipeline, self.source, self.in_flight = pipeline, source, in_flight
        self._waiting: list[tuple[int, list[DeviceValues], asyncio.Future[IngestResult]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def ingest(self, tenant_id: int, items: list[DeviceValues]) -> IngestResult:
        """What `pipeline.ingest` would answer for these items alone, refusals included."""
        done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((tenant_id, items, done))
        self._pump()
        return await done

    def _pump(self) -> None:
        if self._waiting and len(self._running) < self.in_flight:
            batch, self._waiting = self._waiting, []
            task = asyncio.create_task(self._store(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._pump()

    async def _store(self, batch: list[tuple[int, list[DeviceValues], asyncio.Future[IngestResult]]]) -> None:
        groups: dict[int, list[tuple[list[DeviceValues], asyncio.Future[IngestResult]]]] = {}
        for tenant_id, items, done in batch:
            groups.setdefault(tenant_id, []).append((items, done))
        results = await asyncio.gather(
            *(
                ingest_together(self.pipeline, t, self.source, [items for items, _ in g], urgent=True)
                for t, g in groups.items()
            ),
            return_exceptions=True,
        )
        for group, result in zip(groups.values(), results, strict=True):
            outcomes = [result] * len(group) if isinstance(result, BaseException) else result
            for (_, done), outcome in zip(group, outcomes, strict=True):
                if done.done():  # its request was given up meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)


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
