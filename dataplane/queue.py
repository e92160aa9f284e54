"""A bounded in-memory sending queue with its own consumers.

Used at both levels the upstream exporter has: in front of each backend
(``protocol.otlp.sending_queue``) and, optionally, in front of routing
(``exporters.loadbalancing.sending_queue``).

Admission is decided *before* anything is enqueued: :meth:`SendingQueue.has_room`
answers whether a batch fits (by requests, items or bytes, as ``sizer`` says), so
the data plane can check every destination queue of an incoming request first
and enqueue all parts or none. Because the data plane runs on one event loop and
nothing awaits between the check and the puts, no other request can slip in.

A batch larger than the whole queue is admitted into an empty queue, so a single
big request cannot be refused forever; the process's memory budget
(:mod:`dataplane.memory`) still bounds it. Every batch in the queue, waiting or
being sent, is charged to that budget by its payload size, and released when
its consumer is done with it.

Coalescing: a consumer takes not just the first waiting batch but every waiting
batch of the same signal behind it, up to ``coalesce.max_size`` bytes, and sends
them as ONE export (serialized OTLP export requests concatenate on the wire into
one valid request holding all their resources). With ``coalesce.max_delay`` above
zero a consumer that finds less than ``max_size`` waits until the oldest batch is
that old, so parts arriving close together share an export; no part waits longer.
With many backends and small requests this turns N exports per request into a
few per interval.

:meth:`SendingQueue.take_all` removes everything still waiting (not in flight);
the data plane uses it to re-route the queue of a backend that left the ring.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .config_model import CoalesceConfig, QueueConfig
from .memory import MemoryBudget

log = logging.getLogger("ringleader.queue")


@dataclass(slots=True)
class Batch:
    """One serialized export request waiting to be sent."""

    signal: str
    payload: bytes
    items: int


Handler = Callable[[Batch], Awaitable[None]]


class SendingQueue:
    """FIFO of batches drained by ``num_consumers`` tasks calling ``handler``."""

    def __init__(
        self,
        name: str,
        cfg: QueueConfig,
        handler: Handler,
        on_size_change: Callable[[int, int], None] | None = None,
        budget: MemoryBudget | None = None,
        coalesce: CoalesceConfig | None = None,
    ) -> None:
        self.name = name
        self._cfg = cfg
        self._handler = handler
        self._on_size_change = on_size_change
        self._budget = budget or MemoryBudget.unlimited()
        self._coalesce = coalesce or CoalesceConfig(max_size=0, max_delay=0.0)
        self._items: collections.deque[Batch] = collections.deque()
        self._times: collections.deque[float] = collections.deque()  # enqueue time of each batch
        self._grew = asyncio.Event()
        self._queued_items = 0
        self._queued_bytes = 0
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._consumers: list[asyncio.Task[None]] = []
        self._closed = False

    # -- admission ----------------------------------------------------------------------
    def has_room(self, items: int, nbytes: int) -> bool:
        if not self._items:
            return True
        sizer = self._cfg.sizer
        if sizer == "items":
            return self._queued_items + items <= self._cfg.queue_size
        if sizer == "bytes":
            return self._queued_bytes + nbytes <= self._cfg.queue_size
        return len(self._items) + 1 <= self._cfg.queue_size

    def put(self, batch: Batch) -> None:
        """Enqueue without checking room: callers check :meth:`has_room` first, and
        re-routed data is always taken (it was accepted from a client already).
        The batch is charged to the memory budget until its consumer is done with it."""
        self._budget.charge(len(batch.payload))
        self._items.append(batch)
        self._times.append(time.monotonic())
        self._queued_items += batch.items
        self._queued_bytes += len(batch.payload)
        self._idle.clear()
        self._changed()
        self._grew.set()
        self._notify()

    def take_all(self) -> list[Batch]:
        """Remove and return every batch still waiting (in-flight ones stay with their consumer)."""
        taken = list(self._items)
        self._items.clear()
        self._times.clear()
        self._budget.release(self._queued_bytes)  # whoever takes them charges them again
        self._queued_items = 0
        self._queued_bytes = 0
        self._changed()
        self._maybe_idle()
        return taken

    # -- state ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._items)

    @property
    def queued_items(self) -> int:
        return self._queued_items

    @property
    def busy(self) -> bool:
        return bool(self._items) or self._in_flight > 0

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- consumers ------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self._cfg.num_consumers):
            self._consumers.append(asyncio.create_task(self._consume(), name=f"queue-{self.name}-{i}"))

    async def stop(self) -> None:
        """Stop the consumers; waiting batches stay queued (see :meth:`take_all`)."""
        self._closed = True
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._consumers.clear()

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                    raise
            if self._coalesce.max_delay > 0:
                await self._linger()
                if not self._items:
                    continue
            batch = self._take()
            self._in_flight += 1
            self._changed()
            try:
                await self._handler(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the handler accounts for its own failures; never kill a consumer
                log.exception("queue %s: unexpected error while sending a batch", self.name)
            finally:
                self._budget.release(len(batch.payload))
                self._in_flight -= 1
                self._maybe_idle()

    async def _linger(self) -> None:
        """Wait while the queue holds less than one full export and its oldest batch is young."""
        limit = self._coalesce.max_size
        while self._items and self._queued_bytes < limit:
            left = self._times[0] + self._coalesce.max_delay - time.monotonic()
            if left <= 0:
                return
            self._grew.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grew.wait(), left)

    def _take(self) -> Batch:
        """The first batch, with the batches of its signal behind it concatenated (coalescing)."""
        first = self._items.popleft()
        self._times.popleft()
        self._queued_items -= first.items
        self._queued_bytes -= len(first.payload)
        limit = self._coalesce.max_size
        size = len(first.payload)
        if not self._items or size + len(self._items[0].payload) > limit or self._items[0].signal != first.signal:
            return first
        payloads = [first.payload]
        items = first.items
        while self._items:
            nxt = self._items[0]
            if nxt.signal != first.signal or size + len(nxt.payload) > limit:
                break
            self._items.popleft()
            self._times.popleft()
            self._queued_items -= nxt.items
            self._queued_bytes -= len(nxt.payload)
            payloads.append(nxt.payload)
            items += nxt.items
            size += len(nxt.payload)
        return Batch(first.signal, b"".join(payloads), items)

    def _notify(self) -> None:
        # Wake one idle consumer; a consumer that is busy will find the batch when it loops.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _maybe_idle(self) -> None:
        if not self._items and self._in_flight == 0:
            self._idle.set()

    def _changed(self) -> None:
        if self._on_size_change is not None:
            self._on_size_change(len(self._items), self._queued_items)
