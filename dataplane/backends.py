"""The backend set: one :class:`Backend` per tier-2 endpoint, and the route over them.

:class:`BackendSet` is what the resolver talks to. It holds the current
:class:`Route` (a hash ring plus the backend objects its owners map to) and swaps
it atomically when the resolver reports a new set, so a change never blocks the
data path: the ring is built natively on a thread (:mod:`dataplane.ring_worker`)
and requests keep using the old route until the new one is complete.

A backend that joins gets its gRPC client and, with ``protocol.otlp.sending_queue``
on, its own queue and consumers. A backend that leaves is *retired*: what waits in
its queue is handed to the new owners (:mod:`dataplane.rerouting`), its in-flight
exports finish (a failure re-routes too), then its channel is closed, and the
metric series labelled with its endpoint are removed ``Telemetry.forget_delay``
(60 s) later unless it came back meanwhile.

With the native pipeline (:mod:`dataplane.pipeline`) a backend is a
:class:`~dataplane.pipeline.NativeBackend` (channel, queue and consumers are
native), each route is handed to the pipeline as it is swapped, and retiring
is the pipeline's :meth:`~dataplane.pipeline.NativePipeline.retire`.

Passive ejection (:mod:`dataplane.ejection`) takes a persistently failing
backend out of the ring the same way, while the resolver still lists it: the
ring is built over the resolved endpoints the :class:`~dataplane.ejection.Ejector`
says are eligible, and rebuilt when an ejected backend answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .config_model import CoalesceConfig, LoadBalancingConfig, OTLPExporterConfig
from .ejection import Ejector
from .exporter import BackendClient
from .memory import MemoryBudget
from .pipeline import NativeBackend, NativePipeline
from .queue import Batch, SendingQueue
from .ring import NoBackendsError, Ring
from .ring_worker import RingBuilder
from .tasks import Background
from .telemetry import Telemetry

log = logging.getLogger("ringleader.backends")

Consume = Callable[["Backend", Batch], Awaitable[None]]
"""Exports one queued batch to a backend (the queue consumers' handler)."""


class Backend:
    """One tier-2 endpoint: its gRPC client, its queue and whether it is leaving."""

    def __init__(
        self,
        endpoint: str,
        cfg: OTLPExporterConfig,
        telemetry: Telemetry,
        consume: Consume,
        budget: MemoryBudget | None = None,
        coalesce: CoalesceConfig | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client = BackendClient(endpoint, cfg, telemetry)
        self.retiring = asyncio.Event()
        self.queue: SendingQueue | None = None
        if cfg.sending_queue.enabled:
            size = telemetry.queue_size.labels(endpoint=endpoint)
            items = telemetry.queue_items.labels(endpoint=endpoint)

            def on_size(batches: int, queued: int) -> None:
                size.set(batches)
                items.set(queued)

            if coalesce is not None and coalesce.max_size > cfg.max_request_size:
                # A coalesced export must stay within what the backend accepts.
                coalesce = dataclasses.replace(coalesce, max_size=cfg.max_request_size)
            self.queue = SendingQueue(
                endpoint, cfg.sending_queue, lambda b: consume(self, b), on_size, budget=budget, coalesce=coalesce
            )
            self.queue.start()


def python_backend(backend: Backend | NativeBackend) -> Backend:
    """A backend as the Python orchestration holds it (it never sees native ones)."""
    assert isinstance(backend, Backend), "a native backend reached the Python data path"
    return backend


@dataclass(frozen=True, slots=True)
class Route:
    """A ring and the backend objects its indexes refer to (swapped as one)."""

    ring: Ring
    backends: tuple[Backend | NativeBackend, ...]
    version: int


class BackendSet:
    """The current backends and route; applies the resolver's updates, latest set wins."""

    def __init__(
        self,
        cfg: LoadBalancingConfig,
        telemetry: Telemetry,
        consume: Consume,
        reroute: Callable[[list[Batch]], None],
        on_route: Callable[[], None],
        tasks: Background,
        budget: MemoryBudget | None = None,
        ejector: Ejector | None = None,
    ) -> None:
        self._cfg = cfg
        self._telemetry = telemetry
        self._consume = consume
        self._reroute = reroute
        self._on_route = on_route
        self._tasks = tasks
        self._budget = budget
        self.ejector = ejector
        self._resolved: tuple[str, ...] = ()
        self._route: Route | None = None
        self._backends: dict[str, Backend | NativeBackend] = {}
        self.native: NativePipeline | None = None  # set when the native pipeline serves the config
        self._pending: tuple[str, ...] | None = None
        self._updater: asyncio.Task[None] | None = None
        self._version = 0
        self.ring_builder = RingBuilder()

    @property
    def route(self) -> Route | None:
        return self._route

    @property
    def backends(self) -> list[Backend | NativeBackend]:
        return list(self._backends.values())

    def update(self, endpoints: Sequence[str]) -> None:
        """Resolver callback: schedule a ring swap to this set (latest set wins)."""
        self._resolved = tuple(endpoints)
        self._pending = tuple(endpoints)
        if self._updater is None or self._updater.done():
            self._updater = asyncio.get_running_loop().create_task(self._apply_updates())

    def reapply(self) -> None:
        """The ejector changed its mind: rebuild the ring over the last resolved set."""
        self.update(self._resolved)

    async def wait_for_updates(self) -> None:
        """Wait until every reported backend set is in effect (used by start-up and tests)."""
        while self._updater is not None and not self._updater.done():
            await asyncio.shield(self._updater)

    async def _apply_updates(self) -> None:
        while self._pending is not None:
            endpoints, self._pending = self._pending, None
            try:
                await self._swap_to(endpoints)
            except Exception:
                log.exception("failed to apply backend set %s", endpoints)

    async def _swap_to(self, resolved: tuple[str, ...]) -> None:
        endpoints = self.ejector.eligible(resolved) if self.ejector is not None else resolved
        ring: Ring | None = None
        if endpoints:
            try:
                ring, shares = await self.ring_builder.build(self._cfg.ring_algorithm, endpoints)
            except NoBackendsError:
                ring = None
        for ep in endpoints:
            if ep not in self._backends:
                self._backends[ep] = (
                    self.native.backend(ep)
                    if self.native is not None
                    else Backend(
                        ep, self._cfg.protocol, self._telemetry, self._consume, self._budget, self._cfg.coalesce
                    )
                )
        leaving = [b for ep, b in self._backends.items() if ep not in set(endpoints)]
        if ring is not None:
            self._version += 1
            self._route = Route(ring, tuple(self._backends[ep] for ep in ring.endpoints), self._version)
            self._telemetry.ring_version.set(self._version)
            for ep, share in shares.items():
                self._telemetry.ring_share.labels(endpoint=ep).set(share)
        else:
            self._route = None
        if self.native is not None:
            route = self._route
            self.native.set_route(ring, route.backends if route is not None else ())
        for backend in leaving:
            del self._backends[backend.endpoint]
            with contextlib.suppress(KeyError):
                self._telemetry.ring_share.remove(backend.endpoint)
            self._tasks.spawn(self._retire(backend))
        if ring is not None:
            self._on_route()

    def _forget_if_gone(self, endpoint: str) -> None:
        if endpoint not in self._resolved:
            self._telemetry.forget_endpoint(endpoint)

    async def _retire(self, backend: Backend | NativeBackend) -> None:
        """Take a backend out: re-route what waits for it, let in-flight calls finish, close."""
        if isinstance(backend, NativeBackend):
            assert self.native is not None
            await self.native.retire(backend)
        else:
            await self._retire_python(backend)
        if backend.endpoint not in self._backends:
            # Back in the set while this one drained? Then the series belong to its successor.
            if backend.endpoint in self._resolved:
                # Ejected, not gone: its counters and ejection state stay; only the queue gauges go.
                for metric in (self._telemetry.queue_size, self._telemetry.queue_items):
                    with contextlib.suppress(KeyError):
                        metric.remove(backend.endpoint)
            else:
                # After a grace period, so that a scrape sees each series' last value first.
                asyncio.get_running_loop().call_later(
                    self._telemetry.forget_delay, self._forget_if_gone, backend.endpoint
                )
        log.info("backend %s retired", backend.endpoint)

    async def _retire_python(self, backend: Backend) -> None:
        backend.retiring.set()
        if backend.queue is not None:
            waiting = backend.queue.take_all()
            if waiting:
                log.info("backend %s left: re-routing %d queued batch(es)", backend.endpoint, len(waiting))
                self._reroute(waiting)
            # In-flight exports finish (bounded by the export timeout); failures re-route.
            await backend.queue.wait_idle()
            await backend.queue.stop()
        await backend.client.close(grace=1.0)
