"""Re-routing: data accepted for a backend that left goes to the new owners.

Upstream drops the queue of a backend that leaves the ring (#35378). Here,
everything a departed backend still held (its waiting batches, and any batch
whose export fails once it is leaving) is re-split with the current ring and
handed to the new owners' queues, without a room check: the client was already
told it was accepted. Each re-routed item is counted in
``ringleader_items_rerouted_total``.

If no backend is left at all, the batches wait as *orphans* (shown in
``/debug/ring``) until a backend appears again, or shutdown counts them as
dropped.

Re-routed parts and orphans stay charged to the memory budget
(:mod:`dataplane.memory`): they were accepted already, so they are charged
without a check, but they only move, so the total stays what admission let in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .backends import Backend, Route, python_backend
from .memory import MemoryBudget
from .queue import Batch
from .routing import Splitter
from .telemetry import Telemetry

log = logging.getLogger("ringleader.rerouting")


class Rerouter:
    """Hands batches of departed backends to their new owners; keeps orphans."""

    def __init__(
        self,
        splitters: dict[str, Splitter],
        telemetry: Telemetry,
        route: Callable[[], Route | None],
        send_direct: Callable[[Backend, Batch], None],
        budget: MemoryBudget | None = None,
    ) -> None:
        self._budget = budget or MemoryBudget.unlimited()
        self._splitters = splitters
        self._telemetry = telemetry
        self._route = route
        self._send_direct = send_direct
        self._orphans: list[Batch] = []

    @property
    def orphans(self) -> int:
        return len(self._orphans)

    def reroute(self, batches: list[Batch]) -> None:
        """Hand batches accepted for a departed backend to their new owners."""
        route = self._route()
        if route is None:
            for batch in batches:
                self._budget.charge(len(batch.payload))
            self._orphans.extend(batches)
            return
        for batch in batches:
            self._telemetry.items_rerouted.labels(signal=batch.signal).inc(batch.items)
            split = self._splitters[batch.signal].split_ring(batch.payload, route.ring)
            for idx, (payload, items) in split.parts.items():
                backend = python_backend(route.backends[idx])
                part = Batch(batch.signal, payload, items)
                if backend.queue is not None:
                    backend.queue.put(part)  # already accepted: never refused for room
                else:
                    self._budget.charge(len(part.payload))  # released when the export is done
                    self._send_direct(backend, part)

    def adopt_orphans(self) -> None:
        """A route exists again: send the orphans to their owners."""
        if self._orphans:
            orphans, self._orphans = self._orphans, []
            log.info("re-routing %d orphaned batch(es) to the new backend set", len(orphans))
            self.reroute(orphans)
            for batch in orphans:
                self._budget.release(len(batch.payload))

    def take_orphans(self) -> list[Batch]:
        orphans, self._orphans = self._orphans, []
        for batch in orphans:
            self._budget.release(len(batch.payload))
        return orphans
