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

Every item that is lost after acceptance is counted in
``ringleader_items_failed_total{reason=...}`` and logged.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import shutdown
from .admission import Admission, RefusedError
from .backends import Backend, BackendSet, Route
from .config_model import LoadBalancingConfig
from .delivery import BackendDelivery
from .queue import Batch
from .request_retry import RequestRetry
from .rerouting import Rerouter
from .routing import Split, Splitter, make_splitter
from .tasks import Background
from .telemetry import Telemetry

__all__ = ["LoadBalancer", "RefusedError", "Route"]


class LoadBalancer:
    """Routes accepted requests to backends; see the module documentation."""

    def __init__(self, cfg: LoadBalancingConfig, signals: Sequence[str], telemetry: Telemetry) -> None:
        self.cfg = cfg
        self.telemetry = telemetry
        self.splitters: dict[str, Splitter] = {
            s: make_splitter(s, cfg.routing_key_for(s), cfg.routing_attributes) for s in signals
        }
        self._stopping = False
        self._tasks = Background()
        self._delivery = BackendDelivery(
            cfg.protocol.retry_on_failure, telemetry, self._reroute, lambda: self._stopping
        )
        self._backends = BackendSet(
            cfg, telemetry, self._delivery.consume, self._reroute, self._adopt_orphans, self._tasks
        )
        self._rerouter = Rerouter(self.splitters, telemetry, lambda: self._backends.route, self._send_direct)
        self._admission = Admission(self._delivery, queued=cfg.protocol.sending_queue.enabled)
        self._requests = RequestRetry(
            cfg, self.splitters, telemetry, self._admission, lambda: self._backends.route, lambda: self._stopping
        )

    # ------------------------------------------------------------------ state -----
    def start(self) -> None:
        self._requests.start()

    @property
    def route(self) -> Route | None:
        return self._backends.route

    @property
    def ready(self) -> bool:
        return self._backends.route is not None

    @property
    def orphans(self) -> int:
        return self._rerouter.orphans

    def queue_sizes(self) -> dict[str, int]:
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
        self._tasks.spawn(self._delivery.consume(backend, batch))

    # --------------------------------------------------------------- data path -----
    def split(self, signal: str, data: bytes) -> tuple[Route | None, Split]:
        """Validate and split a request (raises MalformedError / InvalidRequestError)."""
        route = self._backends.route
        splitter = self.splitters[signal]
        if route is None:
            return None, splitter.split(data, _validate_only)
        return route, splitter.split(data, route.ring.lookup)

    async def consume(self, signal: str, data: bytes, route: Route | None, split: Split) -> None:
        """Deliver an accepted request, or raise :class:`RefusedError` (nothing kept)."""
        if self._stopping:
            raise RefusedError("shutting_down", "the data plane is shutting down")
        if split.items == 0:
            return
        queue = self._requests.queue
        if queue is not None:
            if not queue.has_room(split.items, len(data)):
                raise RefusedError("queue_full", "the load balancer's sending queue is full")
            queue.put(Batch(signal, data, split.items))
            return
        if route is None and not self.cfg.retry_on_failure.enabled:
            raise RefusedError("no_backends", "no backends are available")
        failures = await self._requests.deliver(Batch(signal, data, split.items), route, split)
        if failures:
            retryable = all(f.retryable for f in failures)
            first = failures[0]
            reason = first.code if first.code in ("queue_full", "no_backends") else "export_failed"
            raise RefusedError(
                reason,
                "; ".join(sorted({f.message for f in failures})),
                retryable=retryable,
                code="UNAVAILABLE" if retryable else first.code,
            )

    # ----------------------------------------------------------------- shutdown -----
    async def shutdown(self, drain_timeout: float) -> None:
        """Stop accepting, flush every queue within ``drain_timeout``, count what is left."""
        self._stopping = True
        backends = self._backends.backends
        queues = [q for q in [self._requests.queue, *(b.queue for b in backends)] if q is not None]
        await shutdown.drain(
            queues, self._tasks, self._rerouter, backends, self._backends.ring_builder, self.telemetry, drain_timeout
        )


def _validate_only(key: bytes) -> int:
    """A lookup used when no ring exists yet: the split only validates the request."""
    return 0
