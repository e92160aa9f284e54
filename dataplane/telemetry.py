"""Ringleader's own telemetry: Prometheus metrics and the reasons behind every drop.

One :class:`Telemetry` object owns a private Prometheus registry, so several data
planes (or tests) can live in one process without clashing. Components receive it
at construction and record through its small methods; nothing here is global.

Metric names follow the upstream ``loadbalancing`` exporter where upstream has one
(``otelcol_loadbalancer_*``, written without ``_total`` like upstream v0.161), and the
collector's standard self-metrics (``otelcol_receiver_*``, ``otelcol_exporter_*``) are derived
from Ringleader's counters (:mod:`dataplane.collector_metrics`), so existing dashboards and
alerts keep working.
Ringleader's additions are prefixed ``ringleader_``:

- ``ringleader_items_received_total{signal,transport}``: spans, log records or
  data points accepted from clients.
- ``ringleader_items_refused_total{signal,reason}``: items the client was told
  were not accepted (it may retry): ``queue_full``, ``no_backends``,
  ``malformed``, ``too_large``, ``invalid_trace_id``, ``signal_disabled``,
  ``shutting_down``, ``export_failed``, ``unsupported_media_type``,
  ``unsupported_encoding``, ``internal_error`` (see docs/operations.md).
- ``ringleader_items_exported_total{endpoint,signal}`` and
  ``ringleader_items_failed_total{endpoint,signal,reason}``: final outcome per
  backend. A *failed* item is data lost after it was accepted; each one is also
  logged with its reason.
- ``ringleader_items_at_least_once_total{signal,reason}``: items that may reach
  a backend more than once, in the cases the delivery contract names
  (``unknown_outcome``, ``partial_delivery``, ``late_answer``; see
  docs/operations.md).
- ``ringleader_items_rerouted_total{signal}``: queued items moved to a new owner
  because their backend left the ring.
- ``ringleader_items_missing_key_total{signal,key}``: items routed by a fallback
  rule because their routing key was absent (documented in docs/routing.md).
- ``ringleader_queue_size{endpoint}`` / ``ringleader_queue_items{endpoint}``:
  batches and items waiting per backend.
- ``ringleader_ring_share{endpoint}``: share of the hash space owned (0..1).
- ``ringleader_backend_ejected{endpoint}``, ``ringleader_backend_ejections_total{endpoint,reason}``,
  ``ringleader_backend_returns_total{endpoint}``: passive ejection (:mod:`dataplane.ejection`).
- ``ringleader_memory_buffered_bytes`` / ``ringleader_memory_data_limit_bytes``: data held
  against the memory budget (:mod:`dataplane.memory`).

Series labelled with an endpoint are removed a minute after that backend left the
set (:meth:`Telemetry.forget_endpoint`), so a churning backend set does not grow the
exposition forever; sums across endpoints of the counters therefore drop then.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .collector_metrics import render

log = logging.getLogger("ringleader.telemetry")

# The *_created series double every counter's exposition for no operational value.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Repeated refusals/drops of one kind are summarised in the log at most this often (seconds).
LOG_INTERVAL = 10.0

# Series of a departed backend are removed this long after it retired (seconds): long enough for a
# Prometheus scrape to see their last values, so rate() and increase() lose nothing.
FORGET_DELAY = 60.0

# Upstream records backend latency in milliseconds.
_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Telemetry:
    """Every metric the data plane exports, on one private registry."""

    def __init__(self, forget_delay: float = FORGET_DELAY) -> None:
        self.forget_delay = forget_delay
        self._refreshers: list[Callable[[], None]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # --- upstream-compatible names -------------------------------------------------
        self.num_resolutions = Counter(
            "otelcol_loadbalancer_num_resolutions",
            "Number of times the resolver has triggered new resolutions.",
            ["resolver", "success"],
            registry=r,
        )
        self.num_backends = Gauge(
            "otelcol_loadbalancer_num_backends",
            "Current number of backends in use.",
            ["resolver"],
            registry=r,
        )
        self.num_backend_updates = Counter(
            "otelcol_loadbalancer_num_backend_updates",
            "Number of times the list of backends was updated.",
            ["resolver"],
            registry=r,
        )
        self.backend_latency = Histogram(
            "otelcol_loadbalancer_backend_latency",
            "Response latency in ms for the backends.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS_MS,
            registry=r,
        )
        self.backend_outcome = Counter(
            "otelcol_loadbalancer_backend_outcome",
            "Number of successes and failures for each endpoint.",
            ["endpoint", "success"],
            registry=r,
        )
        # --- Ringleader's own -------------------------------------------------------------
        self.items_received = Counter(
            "ringleader_items_received",
            "Items (spans, log records, data points) accepted from clients.",
            ["signal", "transport"],
            registry=r,
        )
        self.items_refused = Counter(
            "ringleader_items_refused",
            "Items refused to the client, by reason.",
            ["signal", "reason"],
            registry=r,
        )
        self.requests_refused = Counter(
            "ringleader_requests_refused",
            "Requests refused to the client, by reason.",
            ["signal", "reason"],
            registry=r,
        )
        self.items_exported = Counter(
            "ringleader_items_exported",
            "Items delivered to a backend.",
            ["endpoint", "signal"],
            registry=r,
        )
        self.items_failed = Counter(
            "ringleader_items_failed",
            "Items lost after acceptance, by endpoint and reason.",
            ["endpoint", "signal", "reason"],
            registry=r,
        )
        self.items_at_least_once = Counter(
            "ringleader_items_at_least_once",
            "Items that may reach a backend more than once, by reason (the delivery contract's cases).",
            ["signal", "reason"],
            registry=r,
        )
        self.items_rerouted = Counter(
            "ringleader_items_rerouted",
            "Queued items re-routed because their backend left the ring.",
            ["signal"],
            registry=r,
        )
        self.items_missing_key = Counter(
            "ringleader_items_missing_key",
            "Items routed by the fallback rule because the routing key was absent or invalid.",
            ["signal", "key"],
            registry=r,
        )
        self.queue_size = Gauge(
            "ringleader_queue_size",
            "Batches waiting in the sending queue of each backend.",
            ["endpoint"],
            registry=r,
        )
        self.queue_items = Gauge(
            "ringleader_queue_items",
            "Items waiting in the sending queue of each backend.",
            ["endpoint"],
            registry=r,
        )
        self.ring_share = Gauge(
            "ringleader_ring_share",
            "Share of the hash space owned by each endpoint (0..1).",
            ["endpoint"],
            registry=r,
        )
        self.ring_version = Gauge(
            "ringleader_ring_version",
            "Number of ring versions built since start.",
            registry=r,
        )
        self.backend_ejected = Gauge(
            "ringleader_backend_ejected",
            "1 while the backend is ejected from the ring (passive ejection), else 0.",
            ["endpoint"],
            registry=r,
        )
        self.backend_ejections = Counter(
            "ringleader_backend_ejections",
            "Times a backend was ejected from the ring, by reason (export_failures, queue_full).",
            ["endpoint", "reason"],
            registry=r,
        )
        self.backend_returns = Counter(
            "ringleader_backend_returns",
            "Times an ejected backend answered a probe and went back into the ring.",
            ["endpoint"],
            registry=r,
        )
        self.backend_ejections_skipped = Counter(
            "ringleader_backend_ejections_skipped",
            "Ejections not done because max_ejected_percent (or the last backend) forbade them.",
            ["endpoint"],
            registry=r,
        )
        self.memory_buffered = Gauge(
            "ringleader_memory_buffered_bytes",
            "Bytes of data held against the memory budget (requests, queues, re-routes, orphans).",
            registry=r,
        )
        self.memory_data_limit = Gauge(
            "ringleader_memory_data_limit_bytes",
            "The part of memory.limit that buffered data may use.",
            registry=r,
        )
        self._log_state: dict[tuple[str, ...], _LogSummary] = {}
        # (signal, reason, transport) -> items: not exported itself; the collector's standard
        # otelcol_receiver_* metrics need the transport (dataplane.collector_metrics).
        self.refused_by_transport: dict[tuple[str, str, str], int] = {}
        # (sample name, labels without endpoint) -> value of item counters of backends that left.
        self.retired_items: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.resolver_healthy = Gauge(
            "ringleader_resolver_healthy",
            "1 when the last resolution or watch succeeded, else 0.",
            ["resolver"],
            registry=r,
        )

    # -- resolvers ------------------------------------------------------------------------
    def record_resolution(self, resolver: str, success: bool) -> None:
        self.num_resolutions.labels(resolver=resolver, success=str(success).lower()).inc()
        self.resolver_healthy.labels(resolver=resolver).set(1 if success else 0)

    def record_backends(self, resolver: str, count: int, changed: bool) -> None:
        self.num_backends.labels(resolver=resolver).set(count)
        if changed:
            self.num_backend_updates.labels(resolver=resolver).inc()

    def forget_endpoint(self, endpoint: str) -> None:
        """Remove every series labelled with ``endpoint`` (the backend left the set).

        What the removed item counters held is kept in :attr:`retired_items`, so the
        collector's standard totals derived from them (``otelcol_exporter_sent_spans``, ...)
        never go down when a backend leaves.
        """
        for counter in (self.items_exported, self.items_failed):
            for sample in next(iter(counter.collect())).samples:
                if sample.name.endswith("_total") and sample.labels.get("endpoint") == endpoint:
                    key = (sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k != "endpoint")))
                    self.retired_items[key] = self.retired_items.get(key, 0.0) + sample.value
        for metric in (
            self.backend_latency,
            self.backend_outcome,
            self.items_exported,
            self.items_failed,
            self.queue_size,
            self.queue_items,
            self.ring_share,
            self.backend_ejected,
            self.backend_ejections,
            self.backend_returns,
            self.backend_ejections_skipped,
        ):
            names = list(metric._labelnames)
            position = names.index("endpoint")
            for labels in [k for k in list(metric._metrics) if k[position] == endpoint]:
                with contextlib.suppress(KeyError):
                    metric.remove(*labels)

    # -- ejection ---------------------------------------------------------------------------
    def record_ejection(self, endpoint: str, reason: str) -> None:
        self.backend_ejected.labels(endpoint=endpoint).set(1)
        self.backend_ejections.labels(endpoint=endpoint, reason=reason).inc()

    def record_return(self, endpoint: str, returned: bool) -> None:
        self.backend_ejected.labels(endpoint=endpoint).set(0)
        if returned:
            self.backend_returns.labels(endpoint=endpoint).inc()

    def record_ejection_skipped(self, endpoint: str) -> None:
        self.backend_ejections_skipped.labels(endpoint=endpoint).inc()
        self._log_limited(
            ("ejection_skipped", endpoint, "not_ejected"),
            0,
            "max_ejected_percent reached or it is the last backend",
            f"backend {endpoint} keeps failing but is not ejected ({{events}} time(s))",
        )

    # -- data path ------------------------------------------------------------------------
    def record_refused(
        self, signal: str, reason: str, items: int | None, detail: str = "", transport: str = ""
    ) -> None:
        """Count a refusal and say why in the log (at most once per interval per reason).

        ``items`` is None when the body could not be read (undecodable compression):
        the request is counted, its items cannot be. ``transport`` (``grpc``/``http``, empty
        when not known) feeds the collector's standard ``otelcol_receiver_refused_*`` metrics
        (:mod:`dataplane.collector_metrics`).
        """
        self.items_refused.labels(signal=signal, reason=reason).inc(items or 0)
        if transport and items:
            key = (signal, reason, transport)
            self.refused_by_transport[key] = self.refused_by_transport.get(key, 0) + items
        self.requests_refused.labels(signal=signal, reason=reason).inc()
        self._log_limited(
            ("refused", signal, reason), items, detail, f"refused {{items}} {signal} item(s) in {{events}} request(s)"
        )

    def record_failed(self, endpoint: str, signal: str, reason: str, items: int, detail: str = "") -> None:
        """Count and log data lost after it was accepted: this is never silent."""
        self.items_failed.labels(endpoint=endpoint, signal=signal, reason=reason).inc(items)
        self._log_limited(
            ("failed", endpoint, signal, reason),
            items,
            detail,
            f"dropped {{items}} {signal} item(s) in {{events}} batch(es) for {endpoint}",
        )

    def record_at_least_once(self, signal: str, reason: str, items: int, detail: str = "") -> None:
        """Count items that may be delivered twice (a documented at-least-once case) and log it."""
        self.items_at_least_once.labels(signal=signal, reason=reason).inc(items)
        self._log_limited(
            ("at_least_once", signal, reason),
            items,
            detail,
            f"{{items}} {signal} item(s) in {{events}} request(s) may reach a backend twice",
        )

    def _log_limited(self, key: tuple[str, ...], items: int | None, detail: str, what: str) -> None:
        """Log the first event of a kind at once, then a summary at most every LOG_INTERVAL seconds.

        A client hammering a full queue must not turn the log into the bottleneck, but
        every refusal and drop still shows up in the log with its reason and counts. A
        summary sums the items and events of its interval and lists each distinct detail
        with its count (the first few), so different causes under one reason are not
        reported under the first one's message.
        """
        now = time.monotonic()
        state = self._log_state.get(key)
        if state is None:
            state = self._log_state[key] = _LogSummary(key[-1], what, now - LOG_INTERVAL)
        state.add(items, detail)
        if now - state.since >= LOG_INTERVAL:
            log.warning(state.take(now))

    def flush_logs(self) -> None:
        """Log the summaries still held back (called periodically and at shutdown)."""
        now = time.monotonic()
        for state in self._log_state.values():
            if state.events:
                log.warning(state.take(now))

    def add_refresher(self, refresh: Callable[[], None]) -> None:
        """Call ``refresh`` before every exposition (the native pipeline copies its counters in)."""
        self._refreshers.append(refresh)

    def refresh(self) -> None:
        """Bring every metric counted elsewhere up to date (see :meth:`add_refresher`)."""
        for refresh in self._refreshers:
            refresh()

    def render(self) -> bytes:
        """The exposition: ``otelcol_*`` counters without ``_total``, as upstream writes them."""
        self.refresh()
        return render(self.registry)


class _LogSummary:
    """What happened under one key (refusal or drop reason) since its last log line."""

    MAX_DETAILS = 5

    def __init__(self, reason: str, what: str, since: float) -> None:
        self.reason = reason
        self.what = what  # "refused {items} traces item(s) in {events} request(s)"
        self.since = since
        self.events = 0
        self.items = 0
        self.uncounted = 0  # events whose items could not be counted
        self.details: dict[str, int] = {}
        self.other_details = 0

    def add(self, items: int | None, detail: str) -> None:
        self.events += 1
        if items is None:
            self.uncounted += 1
        else:
            self.items += items
        if detail in self.details or len(self.details) < self.MAX_DETAILS:
            self.details[detail] = self.details.get(detail, 0) + 1
        else:
            self.other_details += 1

    def take(self, now: float) -> str:
        """The log line for what was gathered; starts a new interval."""
        if len(self.details) == 1 and not self.other_details:
            (detail,) = self.details
            causes = detail
        else:
            causes = "; ".join(f"{d} (x{n})" for d, n in self.details.items())
            if self.other_details:
                causes += f"; {self.other_details} more"
        line = self.what.format(items=self.items, events=self.events)
        if self.uncounted:
            line += f" ({self.uncounted} of them with items that could not be counted)"
        line += f": {self.reason}: {causes}"
        self.since = now
        self.events = self.items = self.uncounted = self.other_details = 0
        self.details = {}
        return line
