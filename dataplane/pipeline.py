"""The native pipeline: Python's side of a data path that runs in Rust.

With the usual configuration (per-backend queues on, no exporter-level queue or
retry, a routing key the wire splitter serves for every signal) every request and
every export runs in the native extension (``dataplane/native/src/pipeline``): the
receivers hand protobuf requests straight to it, it splits, admits all parts or
none, queues, coalesces, exports with retries, re-routes a departing backend's
batches and drains at shutdown, on the data path's own threads without the
interpreter lock. The rules are those the Python modules describe
(:mod:`dataplane.admission`, :mod:`dataplane.queue`, :mod:`dataplane.delivery`,
:mod:`dataplane.rerouting`, :mod:`dataplane.shutdown`); the delivery contract in
docs/operations.md holds word for word.

What stays here is control:

- :func:`native_unsupported` says why a configuration needs the Python
  orchestration (``None`` when the native pipeline serves it);
- :class:`NativePipeline` creates a backend per endpoint (:meth:`~NativePipeline.backend`),
  swaps routes, retires backends and drains, each awaited on the asyncio loop;
- the pipeline's *events* (every refusal, drop and at-least-once case, re-routes,
  backends that look unhealthy) are counted and logged by
  :class:`~dataplane.telemetry.Telemetry` and passed to the
  :class:`~dataplane.ejection.Ejector`, and the native counters (items received and
  exported, call outcomes and latencies, queue sizes) are copied into the metrics
  before every scrape (:meth:`~NativePipeline.refresh`), events first, so a count is
  never behind an answer a client already has.

OTLP/JSON bodies still come to Python (:mod:`dataplane.receiver` converts them to
protobuf) and are then submitted to the pipeline like any other request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any

from . import _native
from .config_model import LoadBalancingConfig
from .ejection import Ejector
from .exporter import open_channel
from .memory import MemoryBudget
from .ring import Ring
from .routing import REQUEST_TYPES
from .routing._native_split import NativeSplitter
from .telemetry import _LATENCY_BUCKETS_MS, Telemetry

log = logging.getLogger("ringleader.pipeline")

_SIGNALS = tuple(REQUEST_TYPES)  # traces, logs, metrics: the native side's order
_TRANSPORTS = ("grpc", "http")


def native_unsupported(cfg: LoadBalancingConfig, signals: Sequence[str]) -> str | None:
    """Why ``cfg`` needs the Python orchestration, or None when the native pipeline serves it."""
    if not cfg.protocol.sending_queue.enabled:
        return "protocol.otlp.sending_queue is disabled (parts are exported while the client waits)"
    if cfg.sending_queue.enabled:
        return "the exporter-level sending_queue is enabled"
    if cfg.retry_on_failure.enabled:
        return "the exporter-level retry_on_failure is enabled"
    for signal in signals:
        key = cfg.routing_key_for(signal)
        if (signal, key) not in NativeSplitter.ITEM_KEYS and key not in NativeSplitter.RESOURCE_KEYS:
            return f"{signal} are routed by {key}, which needs the decode splitter"
    return None


class NativeBackend:
    """One backend of the native pipeline (what :class:`~dataplane.backends.BackendSet` holds)."""

    queue = None  # the queue is native

    def __init__(self, endpoint: str, handle: _native.Backend) -> None:
        self.endpoint = endpoint
        self.handle = handle
        self.retiring = asyncio.Event()
        self._seen_exported = [0, 0, 0]
        self._seen_calls = [0, 0]
        self._seen_latency: list[int] = [0] * (len(_LATENCY_BUCKETS_MS) + 1)
        self._seen_latency_sum = 0.0

    def declare(self, telemetry: Telemetry) -> None:
        """Create its series at 0 (a scrape shows every backend from the start)."""
        ep = self.endpoint
        telemetry.backend_latency.labels(endpoint=ep)
        telemetry.backend_outcome.labels(endpoint=ep, success="true")
        telemetry.backend_outcome.labels(endpoint=ep, success="false")
        self.refresh(telemetry)

    def refresh(self, telemetry: Telemetry, gauges: bool = True) -> None:
        """Copy what the native backend counted since the last call into the metrics."""
        exported, ok, failed, buckets, latency_sum = self.handle.counters()
        ep = self.endpoint
        for i, value in enumerate(exported):
            if value > self._seen_exported[i]:
                telemetry.items_exported.labels(endpoint=ep, signal=_SIGNALS[i]).inc(value - self._seen_exported[i])
                self._seen_exported[i] = value
        for i, (value, label) in enumerate(((ok, "true"), (failed, "false"))):
            if value > self._seen_calls[i]:
                telemetry.backend_outcome.labels(endpoint=ep, success=label).inc(value - self._seen_calls[i])
                self._seen_calls[i] = value
        if any(b != s for b, s in zip(buckets, self._seen_latency, strict=True)):
            _histogram_add(
                telemetry.backend_latency.labels(endpoint=ep),
                [b - s for b, s in zip(buckets, self._seen_latency, strict=True)],
                latency_sum - self._seen_latency_sum,
            )
            self._seen_latency = list(buckets)
            self._seen_latency_sum = latency_sum
        if gauges:
            batches, items = self.handle.sizes()
            telemetry.queue_size.labels(endpoint=ep).set(batches)
            telemetry.queue_items.labels(endpoint=ep).set(items)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _histogram_add(child: Any, buckets: list[int], total: float) -> None:
    """Add observations counted elsewhere to a prometheus_client histogram child.

    ``buckets``: new observations per bucket (not cumulative, the last +Inf), ``total``
    their sum. prometheus_client has no public call for this, so it adds to the child's
    per-bucket values (what ``observe`` increments); tests/test_native_pipeline.py checks the
    exposition it gives.
    """
    for value, n in zip(child._buckets, buckets, strict=True):
        if n:
            value.inc(n)
    child._sum.inc(total)


class NativePipeline:
    """The control side of the native pipeline; see the module documentation."""

    def __init__(
        self,
        cfg: LoadBalancingConfig,
        signals: Sequence[str],
        telemetry: Telemetry,
        budget: MemoryBudget,
        ejector: Ejector,
    ) -> None:
        self._cfg = cfg
        self._telemetry = telemetry
        self._ejector = ejector
        self._loop = asyncio.get_running_loop()
        self._keys = {s: cfg.routing_key_for(s) for s in signals}
        self.native = _native.Pipeline(
            list(self._keys.items()),
            cfg.protocol.max_request_size,
            cfg.protocol.sending_queue.block_on_overflow,
            budget.native,
            self._loop,
            self.take_events,
        )
        self._backends: dict[str, NativeBackend] = {}
        self._seen_received = [[0, 0] for _ in _SIGNALS]
        self._seen_missing = [0, 0, 0]
        telemetry.add_refresher(self.refresh)

    @property
    def orphans(self) -> int:
        return int(self.native.orphans)

    # -- backends and routes ----------------------------------------------------------------
    def backend(self, endpoint: str) -> NativeBackend:
        """Start a backend: its channel (settings of ``protocol.otlp``), queue and consumers."""
        proto = self._cfg.protocol
        queue, retry, ejection = proto.sending_queue, proto.retry_on_failure, self._cfg.ejection
        coalesce = self._cfg.coalesce
        handle = self.native.add_backend(
            endpoint,
            open_channel(endpoint, proto),
            sizer=queue.sizer,
            queue_size=queue.queue_size,
            num_consumers=queue.num_consumers,
            # A coalesced export must stay within what the backend accepts.
            coalesce_max_size=min(coalesce.max_size, proto.max_request_size),
            coalesce_max_delay=coalesce.max_delay,
            timeout=proto.timeout or None,
            retry=(
                retry.enabled,
                retry.initial_interval,
                retry.randomization_factor,
                retry.multiplier,
                retry.max_interval,
                retry.max_elapsed_time,
            ),
            ejection=(ejection.enabled, ejection.window, ejection.consecutive_failures),
            latency_buckets_ms=[float(b) for b in _LATENCY_BUCKETS_MS],
        )
        backend = NativeBackend(endpoint, handle)
        self._backends[endpoint] = backend
        backend.declare(self._telemetry)
        return backend

    def set_route(self, ring: Ring | None, backends: Sequence[Any]) -> None:
        """Swap the native route to ``ring`` over ``backends`` (None: no backend)."""
        table = None if ring is None else ring.native_table()
        self.native.set_route(table, [b.handle for b in backends])

    async def retire(self, backend: NativeBackend) -> None:
        """Re-route what waits for ``backend``, let its exports finish, stop it."""
        backend.retiring.set()
        done: asyncio.Future[None] = self._loop.create_future()
        backend.handle.retire(self.native, functools.partial(_resolve, done))
        await done
        self.take_events()
        backend.refresh(self._telemetry, gauges=False)  # its last counts, before its series go
        if self._backends.get(backend.endpoint) is backend:
            del self._backends[backend.endpoint]

    def queue_sizes(self) -> dict[str, int]:
        return {ep: b.handle.sizes()[0] for ep, b in self._backends.items()}

    # -- shutdown ---------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        self.native.stop_accepting()

    async def drain(self, timeout: float) -> None:
        """Flush every queue within ``timeout``, count what is left as dropped (``shutdown``)."""
        done: asyncio.Future[None] = self._loop.create_future()
        self.native.drain(timeout, functools.partial(_resolve, done))
        await done
        self.refresh()

    # -- events and counters ----------------------------------------------------------------
    def submit(self, call: _native.Call, data: bytes) -> None:
        """Handle a converted OTLP/JSON request natively; the answer goes to ``call``."""
        self.native.submit(call, data)

    def take_events(self) -> None:
        """Count and log what the pipeline reported (see the module documentation)."""
        t = self._telemetry
        for event in self.native.take_events():
            kind = event[0]
            if kind == "refused":
                _, signal, reason, items, detail, transport = event
                t.record_refused(signal, reason, items, detail, transport)
            elif kind == "failed":
                _, endpoint, signal, reason, items, detail = event
                t.record_failed(endpoint, signal, reason, items, detail)
            elif kind == "at_least_once":
                _, signal, reason, items, detail = event
                t.record_at_least_once(signal, reason, items, detail)
            elif kind == "rerouted":
                _, signal, items = event
                t.items_rerouted.labels(signal=signal).inc(items)
            elif kind == "unhealthy":
                _, endpoint, reason, stalled, failures = event
                self._ejector.unhealthy(endpoint, reason, stalled, failures)
            elif kind == "warning":
                log.warning("%s", event[1])
            else:
                log.info("%s", event[1])

    def refresh(self) -> None:
        """Bring the metrics up to date with the native side (called before every scrape)."""
        self.take_events()
        t = self._telemetry
        received, missing = self.native.counters()
        for i, signal in enumerate(_SIGNALS):
            for j, transport in enumerate(_TRANSPORTS):
                value = received[i][j]
                if value > self._seen_received[i][j]:
                    t.items_received.labels(signal=signal, transport=transport).inc(value - self._seen_received[i][j])
                    self._seen_received[i][j] = value
            if missing[i] > self._seen_missing[i]:
                t.items_missing_key.labels(signal=signal, key=self._keys.get(signal, "")).inc(
                    missing[i] - self._seen_missing[i]
                )
                self._seen_missing[i] = missing[i]
        for backend in self._backends.values():
            backend.refresh(t)
