"""Admission: a request is taken whole or refused whole.

After a request is split (:mod:`dataplane.routing`) into at most one part per
backend, and parts over the export size limit are cut into several requests
(:mod:`dataplane.size_limit`), :class:`Admission` hands the parts on:

- with per-backend queues (``protocol.otlp.sending_queue``, on by default): it
  checks that *every* destination queue has room, then enqueues all parts, or
  none and reports ``queue_full`` so the client is told to retry (UNAVAILABLE /
  HTTP 503). A client retry can therefore never duplicate data (upstream
  #47600). The data plane runs on one event loop and nothing awaits between the
  check and the puts, so no other request can slip in between. With
  ``block_on_overflow`` (alias ``blocking``) a request that does not fit waits
  for room instead, up to the client's deadline (or until the client goes away
  or shutdown starts), and is then admitted whole or refused whole as before;
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
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends import Backend, Route, python_backend
from .delivery import BackendDelivery, PartFailure, Progress
from .ejection import Ejector
from .memory import MemoryBudget
from .queue import Batch, SendingQueue
from .routing import Split
from .size_limit import SizeLimit


class RefusedError(Exception):
    """The request was not accepted; the client may retry if ``retryable``."""

    def __init__(self, reason: str, message: str, retryable: bool = True, code: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.code = code


@dataclass(frozen=True, slots=True)
class _NoRoom:
    reason: str
    message: str

    def failure(self, whole: Batch) -> PartFailure:
        return PartFailure(whole, True, self.reason, self.message)


class Admission:
    """All-or-nothing admission into the backend queues, or direct export without them."""

    def __init__(
        self,
        delivery: BackendDelivery,
        queued: bool,
        size_limit: SizeLimit,
        budget: MemoryBudget | None = None,
        ejector: Ejector | None = None,
        block_on_overflow: bool = False,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._delivery = delivery
        self._queued = queued
        self._size_limit = size_limit
        self._budget = budget or MemoryBudget.unlimited()
        self._ejector = ejector
        self._block = block_on_overflow
        self._stopping = stopping

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
        fit = self._size_limit.fit
        parts = [
            (python_backend(route.backends[idx]), fit(Batch(signal, payload, items)))
            for idx, (payload, items) in split.parts.items()
        ]
        nbytes = sum(len(chunk.payload) for _, chunks in parts for chunk in chunks)
        if self._queued:
            refused = await self._room_for(parts, nbytes, deadline)
            if refused is not None:
                return [refused.failure(whole)]
            for backend, chunks in parts:
                assert backend.queue is not None
                for chunk in chunks:
                    backend.queue.put(chunk)  # charges the budget
            return []
        if not self._budget.try_charge(nbytes):
            return [self._over_budget(whole, nbytes)]
        try:
            results = await asyncio.gather(
                *(
                    self._export_part(backend, chunk, timeout, deadline, progress)
                    for backend, chunks in parts
                    for chunk in chunks
                )
            )
        finally:
            self._budget.release(nbytes)
        return [f for f in results if f is not None]

    def _over_budget(self, whole: Batch, nbytes: int) -> PartFailure:
        return PartFailure(whole, True, "memory_limit", self._over_budget_message(nbytes))

    def _over_budget_message(self, nbytes: int) -> str:
        budget = self._budget
        return (
            f"memory budget exhausted ({budget.used >> 20} of {budget.data_limit >> 20} MiB of buffered data in use, "
            f"{nbytes} more bytes needed)"
        )

    async def _room_for(
        self, parts: list[tuple[Backend, list[Batch]]], nbytes: int, deadline: float | None
    ) -> _NoRoom | None:
        """None once every destination queue has room for its chunks; else why not.

        Without ``block_on_overflow`` this answers at once. With it, it waits for the
        first full queue to free room and checks all of them again, until they all fit,
        the client's deadline passes, a destination leaves the ring or shutdown starts.
        The memory budget is not waited for: over it, the request is refused at once.
        """
        while True:
            full = None
            for backend, chunks in parts:
                assert backend.queue is not None
                items = sum(c.items for c in chunks)
                if not backend.queue.has_room(items, sum(len(c.payload) for c in chunks), len(chunks)):
                    full = backend
                    break
            if full is None:
                if not self._budget.has_room(nbytes):
                    return _NoRoom("memory_limit", self._over_budget_message(nbytes))
                return None
            if self._ejector is not None:
                self._ejector.queue_full(full.endpoint)
            message = f"sending queue of {full.endpoint} is full"
            if not self._block or self._stopping():
                return _NoRoom("queue_full", message)
            if any(backend.retiring.is_set() for backend, _ in parts):
                return _NoRoom("queue_full", f"{message}, and a destination left the ring meanwhile")
            assert full.queue is not None
            if not await wait_for_room(full.queue, deadline):
                return _NoRoom("deadline_exceeded", f"{message} until the client's deadline")

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


async def wait_for_room(queue: SendingQueue, deadline: float | None) -> bool:
    """Wait until ``queue`` frees some room; False if ``deadline`` (monotonic) passes first."""
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        return False
    try:
        await asyncio.wait_for(queue.room_freed().wait(), remaining)
    except TimeoutError:
        return False
    return True
