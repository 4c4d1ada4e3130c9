"""aiocoap's server context, lean where a telemetry load showed aiocoap costly.

Under a closed loop of confirmable POSTs (`bench/ingest_coap.py`), two things in aiocoap's own
server path cost more than our whole pipeline:

- `Context.render_to_pipe` formats the `repr` of every request for the name of the task that
  renders it (the options, and the peer's address parsed again by `ipaddress`): ~8% of the
  server's loop, measured with py-spy.
- The message layer keeps every received message for EXCHANGE_LIFETIME (247 s, RFC 7252 §4.5)
  to recognise a repeated CON, as a timer on the event loop plus the response `Message`, which
  holds the request `Message` too. At 2,000 requests/s that is half a million timers and about
  20 tracked objects per exchange: full garbage collections every few seconds, up to 380 ms
  each (the server's loop stands still meanwhile), and memory growing for four minutes.

`IngestCoapContext` renders under a fixed task name and deduplicates with `DedupMessageManager`:
the same RFC 7252 rule for the same lifetime, kept as (peer, message ID) → the encoded
response, expired in arrival order by one sweep a second. No timer per message, and nothing the
garbage collector has to walk: the keys are tuples of strings and numbers, the responses bytes.

Both override aiocoap internals of the 0.4 series (`pyproject.toml` pins it);
`tests/server/test_ingest_coap.py` checks that a repeated CON is answered with the same bytes
and stored once, so a change in aiocoap shows up there.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Hashable
from typing import Any

import aiocoap  # type: ignore[import-untyped, unused-ignore]
from aiocoap.message import Direction, Message  # type: ignore[import-untyped, unused-ignore]
from aiocoap.messagemanager import MessageManager  # type: ignore[import-untyped, unused-ignore]
from aiocoap.numbers.constants import TransportTuning  # type: ignore[import-untyped, unused-ignore]
from aiocoap.numbers.types import Type  # type: ignore[import-untyped, unused-ignore]
from aiocoap.pipe import error_to_message, run_driving_pipe  # type: ignore[import-untyped, unused-ignore]
from aiocoap.tokenmanager import TokenManager  # type: ignore[import-untyped, unused-ignore]

EXCHANGE_LIFETIME_S: float = TransportTuning().EXCHANGE_LIFETIME
"""RFC 7252's default (247 s): how long a repeated CON is still recognised."""
SWEEP_S = 1.0
"""How often expired entries are dropped; an entry lives at most this much longer."""


def _peer(remote: Any) -> Hashable:
    """The peer as aiocoap's UDP address compares it (host, port, flow info), as plain values."""
    sockaddr = getattr(remote, "sockaddr", None)
    return tuple(sockaddr[:-1]) if sockaddr is not None else remote


class DedupMessageManager(MessageManager):  # type: ignore[misc, unused-ignore]
    """aiocoap's message layer with the deduplication described in the module docstring."""

    def __init__(self, token_manager: Any) -> None:
        super().__init__(token_manager)
        self._seen: dict[tuple[Hashable, int], bytes | None] = {}
        """(peer, message ID) → the encoded response (an ACK, piggybacked or empty), once sent."""
        self._expiry: collections.deque[tuple[float, tuple[Hashable, int]]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None

    def _deduplicate_message(self, message: Any) -> bool:
        key = (_peer(message.remote), message.mid)
        if key not in self._seen:
            self._seen[key] = None
            self._expiry.append((self.loop.time() + EXCHANGE_LIFETIME_S, key))
            if self._sweeper is None:
                self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)
            return False
        response = self._seen[key]
        if message.mtype is not Type.CON:
            self.log.info("Duplicate NON, ACK or RST received")
        elif response is None:
            self.log.info("Duplicate CON received, no response to send yet")
        else:
            self.log.info("Duplicate CON received, sending old response again")
            again = Message.decode(response, message.remote.as_response_address())
            again.direction = Direction.OUTGOING  # decoding marks it as received
            self._send_via_transport(again)
        return True

    def _store_response_for_duplicates(self, message: Any) -> None:
        key = (_peer(message.remote), message.mid)
        if key in self._seen:
            self._seen[key] = message.encode()

    def _sweep(self) -> None:
        now = self.loop.time()
        expiry, seen = self._expiry, self._seen
        while expiry and expiry[0][0] <= now:
            seen.pop(expiry.popleft()[1], None)
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep) if expiry else None

    @property
    def remembered(self) -> int:
        """Messages still recognised as repeats (for tests and diagnostics)."""
        return len(self._seen)

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await super().shutdown()


class IngestCoapContext(aiocoap.Context):  # type: ignore[misc, unused-ignore]
    """A server context whose UDP transports use `DedupMessageManager`, rendering each request
    in the task aiocoap would start, under a fixed name."""

    async def _append_tokenmanaged_messagemanaged_transport(self, constructor: Callable[[Any], Any]) -> None:
        tokens = TokenManager(self)
        messages = DedupMessageManager(tokens)
        messages.message_interface = await constructor(messages)
        tokens.token_interface = messages
        self.request_interfaces.append(tokens)

    def render_to_pipe(self, pipe: Any) -> None:
        run_driving_pipe(error_to_message(pipe, self.log), self._render_to_pipe(pipe), name="coap-render")

    def message_managers(self) -> list[DedupMessageManager]:
        managers = (t.token_interface for t in self.request_interfaces)
        return [m for m in managers if isinstance(m, DedupMessageManager)]
