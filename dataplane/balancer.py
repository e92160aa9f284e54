"""The load balancer: from an accepted request to deliveries on the right backends.

:class:`LoadBalancer` is the small surface the receivers and the resolver talk
to. Per request the flow is, one module per step:

1. **split** (:mod:`dataplane.routing`): validate the request and cut it into at
   most one part per backend with the current ring;
2. **admit** (:mod:`dataplane.admission`): all parts into their backends' queues,
   or none and the client is told to retry; without queues, export directly;
   the exporter-level queue, timeout and retry (:mod:`dataplane.request_retry`)
   wrap this step when configured;
3. **queue** (:mod:`dataplane.queue`): each backend's bounded queue and consumers;
4. **export** (:mod:`dataplane.delivery` over :mod:`dataplane.exporter`): with
   the backend's retry policy (:mod:`dataplane.backoff`).

Around the flow: the backend set and its route (:mod:`dataplane.backends`,
rings built by :mod:`dataplane.ring_worker`), re-routing of a departed
backend's data (:mod:`dataplane.rerouting`) and the drain at exit
(:mod:`dataplane.shutdown`).

With the usual configuration all of this runs natively
(:mod:`dataplane.pipeline`): the receivers hand requests to the native pipeline
directly, and this class only starts it, feeds it the backend sets and drains it;
:func:`~dataplane.pipeline.native_unsupported` names the settings that keep the
flow in Python (it is logged at start-up).

Every item that is lost after acceptance is counted in
``ringleader_items_failed_total{reason=...}`` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from . import shutdown
from .admission import Admission, RefusedError, wait_for_room
from .backends import Backend, BackendSet, Route, python_backend
from .config_model import LoadBalancingConfig
from .delivery import BackendDelivery, Progress
from .ejection import Ejector, grpc_probe
from .memory import MemoryBudget
from .pipeline import NativePipeline, native_unsupported
from .queue import Batch, SendingQueue
from .request_retry import RequestRetry
from .rerouting import Rerouter
from .routing import Split, Splitter, make_splitter
from .size_limit import ItemTooLargeError, SizeLimit
from .tasks import Background
from .telemetry import Telemetry

__all__ = ["LoadBalancer", "RefusedError", "Route"]

log = logging.getLogger("ringleader.balancer")


class LoadBalancer:
    """Routes accepted requests to backends; see the module documentation."""

    def __init__(
        self,
        cfg: LoadBalancingConfig,
        signals: Sequence[str],
        telemetry: Telemetry,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.cfg = cfg
        self.telemetry = telemetry
        self.budget = budget or MemoryBudget.unlimited()
        self.signals = tuple(signals)
        self.native: NativePipeline | None = None
        self.splitters: dict[str, Splitter] = {
            s: make_splitter(s, cfg.routing_key_for(s), cfg.routing_attributes) for s in signals
        }
        self._stopping = False
        self._tasks = Background()
        self.ejector = Ejector(cfg.ejection, telemetry, grpc_probe(cfg.protocol), lambda: self._backends.reapply())
        self._delivery = BackendDelivery(
            cfg.protocol.retry_on_failure, telemetry, self._reroute, lambda: self._stopping, self.ejector
        )
        self._backends = BackendSet(
            cfg,
            telemetry,
            self._delivery.consume,
            self._reroute,
            self._adopt_orphans,
            self._tasks,
            self.budget,
            self.ejector,
        )
        self._rerouter = Rerouter(
            self.splitters, telemetry, lambda: self._backends.route, self._send_direct, self.budget
        )
        self._size_limit = SizeLimit(cfg.protocol.max_request_size)
        self._admission = Admission(
            self._delivery,
            cfg.protocol.sending_queue.enabled,
            self._size_limit,
            self.budget,
            self.ejector,
            block_on_overflow=cfg.protocol.sending_queue.block_on_overflow,
            stopping=lambda: self._stopping,
        )
        self._requests = RequestRetry(
            cfg,
            self.splitters,
            telemetry,
            self._admission,
            lambda: self._backends.route,
            lambda: self._stopping,
            self.budget,
        )

    # ------------------------------------------------------------------ state -----
    def start(self) -> None:
        """Start the data path: the native pipeline when it serves the config, else Python's."""
        why = native_unsupported(self.cfg, self.signals)
        if why is None:
            self.native = NativePipeline(self.cfg, self.signals, self.telemetry, self.budget, self.ejector)
            self._backends.native = self.native
            log.info("data path: native pipeline")
        else:
            log.info("data path: Python orchestration over the native transport, because %s", why)
        self._requests.start()

    @property
    def route(self) -> Route | None:
        return self._backends.route

    @property
    def ready(self) -> bool:
        return self._backends.route is not None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def orphans(self) -> int:
        if self.native is not None:
            return self.native.orphans
        return self._rerouter.orphans

    def queue_sizes(self) -> dict[str, int]:
        if self.native is not None:
            return self.native.queue_sizes()
        return {b.endpoint: b.queue.size if b.queue else 0 for b in self._backends.backends}

    # ------------------------------------------------------------ backend updates -----
    def update_endpoints(self, endpoints: Sequence[str]) -> None:
        """Resolver callback: schedule a ring swap to this set (latest set wins)."""
        self._backends.update(endpoints)

    async def wait_for_updates(self) -> None:
        """Wait until every reported backend set is in effect (used by start-up and tests)."""
        await self._backends.wait_for_updates()

    def _reroute(self, batches: list[Batch]) -> None:
        self._rerouter.reroute(batches)

    def _adopt_orphans(self) -> None:
        self._rerouter.adopt_orphans()

    def _send_direct(self, backend: Backend, batch: Batch) -> None:
        async def send() -> None:
            try:
                await self._delivery.consume(backend, batch)
            finally:
                self.budget.release(len(batch.payload))  # charged by the rerouter

        self._tasks.spawn(send())

    # --------------------------------------------------------------- data path -----
    def split(self, signal: str, data: bytes) -> tuple[Route | None, Split]:
        """Validate and split a request (raises MalformedError / InvalidRequestError)."""
        route = self._backends.route
        splitter = self.splitters[signal]
        return route, splitter.split_ring(data, None if route is None else route.ring)

    async def consume(
        self, signal: str, data: bytes, route: Route | None, split: Split, deadline: float | None = None
    ) -> None:
        """Deliver an accepted request, or raise :class:`RefusedError` (nothing kept).

        ``deadline`` is the client's (``time.monotonic()``), if it sent one: nothing is
        attempted on its behalf after it. Cancelling this call (the client went away)
        stops the exports of a request that is not queued.
        """
        if self._stopping:
            raise RefusedError("shutting_down", "the data plane is shutting down")
        if split.items == 0:
            return
        try:
            self._size_limit.check(signal, data)
        except ItemTooLargeError as exc:
            raise RefusedError("item_too_large", str(exc), retryable=False, code="RESOURCE_EXHAUSTED") from None
        queue = self._requests.queue
        if queue is not None:
            # block_on_overflow: wait for room up to the client's deadline, as at the backend level.
            while not queue.has_room(split.items, len(data)):
                if self._stopping:
                    raise RefusedError("shutting_down", "the data plane is shutting down")
                if not self.cfg.sending_queue.block_on_overflow:
                    raise RefusedError("queue_full", "the load balancer's sending queue is full")
                if not await wait_for_room(queue, deadline):
                    raise RefusedError("deadline_exceeded", "the load balancer's sending queue stayed full")
            if not self.budget.has_room(len(data)):
                raise RefusedError("memory_limit", "the memory budget is exhausted")
            queue.put(Batch(signal, data, split.items))
            return
        if route is None and not self.cfg.retry_on_failure.enabled:
            raise RefusedError("no_backends", "no backends are available")
        progress = Progress()
        try:
            failures = await self._requests.deliver(Batch(signal, data, split.items), route, split, deadline, progress)
        except asyncio.CancelledError:
            if progress.delivered:
                self.telemetry.record_at_least_once(
                    signal, "partial_delivery", progress.delivered, "the client gave up after some parts were delivered"
                )
            raise
        if failures:
            retryable = all(f.retryable for f in failures)
            first = failures[0]
            refusals = ("queue_full", "no_backends", "deadline_exceeded", "memory_limit")
            reason = first.code if first.code in refusals else "export_failed"
            message = "; ".join(sorted({f.message for f in failures}))
            if retryable and progress.delivered:
                self.telemetry.record_at_least_once(
                    signal, "partial_delivery", progress.delivered, f"the client is told to retry: {message}"
                )
            raise RefusedError(reason, message, retryable=retryable, code="UNAVAILABLE" if retryable else first.code)

    # ----------------------------------------------------------------- shutdown -----
    def stop_accepting(self) -> None:
        """Refuse new requests (``shutting_down``) and release those waiting for room."""
        self._stopping = True
        if self.native is not None:
            self.native.stop_accepting()
        for q in self._queues():
            q.wake_waiters()

    def _queues(self) -> list[SendingQueue]:
        backends = self._backends.backends
        return [q for q in [self._requests.queue, *(b.queue for b in backends)] if q is not None]

    async def shutdown(self, drain_timeout: float) -> None:
        """Stop accepting, flush every queue within ``drain_timeout``, count what is left."""
        self.stop_accepting()
        await self.ejector.close()
        if self.native is not None:
            await self._shutdown_native(drain_timeout)
            return
        backends = [python_backend(b) for b in self._backends.backends]
        queues = self._queues()
        await shutdown.drain(
            queues, self._tasks, self._rerouter, backends, self._backends.ring_builder, self.telemetry, drain_timeout
        )

    async def _shutdown_native(self, drain_timeout: float) -> None:
        deadline = time.monotonic() + drain_timeout
        assert self.native is not None
        # Retirements under way finish as their queues drain (or are stopped by the drain).
        retiring = asyncio.ensure_future(self._tasks.wait())
        await self.native.drain(drain_timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(retiring, max(0.1, deadline - time.monotonic()))
        await self._tasks.cancel()
        self._backends.ring_builder.close()
