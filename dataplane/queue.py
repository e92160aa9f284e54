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
big request cannot be refused forever.

With ``block_on_overflow`` the admission waits instead of refusing:
:meth:`SendingQueue.room_freed` returns an event that is set the next time room
is freed (a batch taken by a consumer, or the queue emptied), so a waiting
request re-checks its destination queues only when that can change the answer.

:meth:`SendingQueue.take_all` removes everything still waiting (not in flight);
the data plane uses it to re-route the queue of a backend that left the ring.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .config_model import QueueConfig

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
    ) -> None:
        self.name = name
        self._cfg = cfg
        self._handler = handler
        self._on_size_change = on_size_change
        self._items: collections.deque[Batch] = collections.deque()
        self._queued_items = 0
        self._queued_bytes = 0
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._consumers: list[asyncio.Task[None]] = []
        self._closed = False
        self._room = asyncio.Event()

    # -- admission ----------------------------------------------------------------------
    def has_room(self, items: int, nbytes: int, batches: int = 1) -> bool:
        """Whether ``batches`` batches holding ``items`` items in ``nbytes`` bytes fit now."""
        if not self._items:
            return True
        sizer = self._cfg.sizer
        if sizer == "items":
            return self._queued_items + items <= self._cfg.queue_size
        if sizer == "bytes":
            return self._queued_bytes + nbytes <= self._cfg.queue_size
        return len(self._items) + batches <= self._cfg.queue_size

    def put(self, batch: Batch) -> None:
        """Enqueue without checking room: callers check :meth:`has_room` first, and
        re-routed data is always taken (it was accepted from a client already)."""
        self._items.append(batch)
        self._queued_items += batch.items
        self._queued_bytes += len(batch.payload)
        self._idle.clear()
        self._changed()
        self._notify()

    def take_all(self) -> list[Batch]:
        """Remove and return every batch still waiting (in-flight ones stay with their consumer)."""
        taken = list(self._items)
        self._items.clear()
        self._queued_items = 0
        self._queued_bytes = 0
        self._changed()
        self._maybe_idle()
        self.wake_waiters()
        return taken

    def room_freed(self) -> asyncio.Event:
        """An event set the next time room is freed in this queue (see the module documentation)."""
        return self._room

    def wake_waiters(self) -> None:
        """Wake everyone waiting for room (room was freed, or they must give up: shutdown)."""
        self._room.set()
        self._room = asyncio.Event()

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
            batch = self._items.popleft()
            self._queued_items -= batch.items
            self._queued_bytes -= len(batch.payload)
            self._in_flight += 1
            self._changed()
            self.wake_waiters()
            try:
                await self._handler(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the handler accounts for its own failures; never kill a consumer
                log.exception("queue %s: unexpected error while sending a batch", self.name)
            finally:
                self._in_flight -= 1
                self._maybe_idle()

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
