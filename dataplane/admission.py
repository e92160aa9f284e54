"""Admission: a request is taken whole or refused whole.

After a request is split (:mod:`dataplane.routing`) into at most one part per
backend, :class:`Admission` hands the parts on:

- with per-backend queues (``protocol.otlp.sending_queue``, on by default): it
  checks that *every* destination queue has room, then enqueues all parts, or
  none and reports ``queue_full`` so the client is told to retry (UNAVAILABLE /
  HTTP 503). A client retry can therefore never duplicate data (upstream
  #47600). The data plane runs on one event loop and nothing awaits between the
  check and the puts, so no other request can slip in between;
- without them: it exports every part concurrently (:mod:`dataplane.delivery`)
  and returns the parts that failed.

:class:`RefusedError` is what the receivers turn into a status for the client.
"""

from __future__ import annotations

import asyncio

from .backends import Route
from .delivery import BackendDelivery, PartFailure
from .queue import Batch
from .routing import Split


class RefusedError(Exception):
    """The request was not accepted; the client may retry if ``retryable``."""

    def __init__(self, reason: str, message: str, retryable: bool = True, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.code = code


class Admission:
    """All-or-nothing admission into the backend queues, or direct export without them."""

    def __init__(self, delivery: BackendDelivery, queued: bool) -> None:
        self._delivery = delivery
        self._queued = queued

    async def dispatch(self, signal: str, route: Route, split: Split, whole: Batch) -> list[PartFailure]:
        """Admit (or export) the parts of ``whole``; the failures, empty when all went through."""
        parts = [(route.backends[idx], payload, items) for idx, (payload, items) in split.parts.items()]
        if self._queued:
            for backend, payload, items in parts:
                assert backend.queue is not None
                if not backend.queue.has_room(items, len(payload)):
                    return [PartFailure(whole, True, "queue_full", f"sending queue of {backend.endpoint} is full")]
            for backend, payload, items in parts:
                assert backend.queue is not None
                backend.queue.put(Batch(signal, payload, items))
            return []
        results = await asyncio.gather(
            *(self._delivery.export_direct(backend, Batch(signal, payload, items)) for backend, payload, items in parts)
        )
        return [f for f in results if f is not None]
