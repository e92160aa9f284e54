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
  and returns the parts that failed. The exporter-level ``timeout`` bounds each
  part on its own: a slow backend's part times out alone, and the parts other
  backends accepted are done with (never sent again by a retry).

Both ways the parts must also fit the process's memory budget
(:mod:`dataplane.memory`), or the request is refused whole with
``memory_limit``. A backend whose full queue refuses a request is reported to
the :class:`~dataplane.ejection.Ejector`: if it also makes no progress, it is
ejected, so that one hung backend cannot stop all intake.

:class:`RefusedError` is what the receivers turn into a status for the client.
"""

from __future__ import annotations

import asyncio

from .backends import Backend, Route
from .delivery import BackendDelivery, PartFailure, Progress
from .ejection import Ejector
from .memory import MemoryBudget
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

    def __init__(
        self,
        delivery: BackendDelivery,
        queued: bool,
        budget: MemoryBudget | None = None,
        ejector: Ejector | None = None,
    ) -> None:
        self._delivery = delivery
        self._queued = queued
        self._budget = budget or MemoryBudget.unlimited()
        self._ejector = ejector

    async def dispatch(
        self,
        signal: str,
        route: Route,
        split: Split,
        whole: Batch,
        timeout: float | None = None,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> list[PartFailure]:
        """Admit (or export) the parts of ``whole``; the failures, empty when all went through.

        ``timeout`` limits each directly exported part (the exporter-level ``timeout``);
        ``deadline`` is the client's, as ``time.monotonic()``.
        """
        parts = [(route.backends[idx], Batch(signal, payload, items)) for idx, (payload, items) in split.parts.items()]
        nbytes = sum(len(part.payload) for _, part in parts)
        if self._queued:
            for backend, part in parts:
                assert backend.queue is not None
                if not backend.queue.has_room(part.items, len(part.payload)):
                    if self._ejector is not None:
                        self._ejector.queue_full(backend.endpoint)
                    return [PartFailure(whole, True, "queue_full", f"sending queue of {backend.endpoint} is full")]
            if not self._budget.has_room(nbytes):
                return [self._over_budget(whole, nbytes)]
            for backend, part in parts:
                assert backend.queue is not None
                backend.queue.put(part)  # charges the budget
            return []
        if not self._budget.try_charge(nbytes):
            return [self._over_budget(whole, nbytes)]
        try:
            results = await asyncio.gather(
                *(self._export_part(backend, part, timeout, deadline, progress) for backend, part in parts)
            )
        finally:
            self._budget.release(nbytes)
        return [f for f in results if f is not None]

    def _over_budget(self, whole: Batch, nbytes: int) -> PartFailure:
        budget = self._budget
        return PartFailure(
            whole,
            True,
            "memory_limit",
            f"memory budget exhausted ({budget.used >> 20} of {budget.data_limit >> 20} MiB of buffered data in use, "
            f"{nbytes} more bytes needed)",
        )

    async def _export_part(
        self, backend: Backend, part: Batch, timeout: float | None, deadline: float | None, progress: Progress | None
    ) -> PartFailure | None:
        attempt = self._delivery.export_direct(backend, part, deadline, progress)
        if not timeout:
            return await attempt
        try:
            return await asyncio.wait_for(attempt, timeout)
        except TimeoutError:
            message = f"{backend.endpoint}: no answer within the exporter-level timeout of {timeout:g}s"
            return PartFailure(part, True, "DEADLINE_EXCEEDED", message)
