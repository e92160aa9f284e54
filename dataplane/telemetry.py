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
- ``ringleader_items_rerouted_total{signal}``: queued items moved to a new owner
  because their backend left the ring.
- ``ringleader_items_missing_key_total{signal,key}``: items routed by a fallback
  rule because their routing key was absent (documented in docs/routing.md).
- ``ringleader_queue_size{endpoint}`` / ``ringleader_queue_items{endpoint}``:
  batches and items waiting per backend.
- ``ringleader_ring_share{endpoint}``: share of the hash space owned (0..1).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .collector_metrics import render

log = logging.getLogger("ringleader.telemetry")

# The *_created series double every counter's exposition for no operational value.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Repeated refusals/drops of one kind are summarised in the log at most this often (seconds).
LOG_INTERVAL = 10.0

# Upstream records backend latency in milliseconds.
_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Telemetry:
    """Every metric the data plane exports, on one private registry."""

    def __init__(self) -> None:
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
        self._log_state: dict[tuple[str, ...], list[Any]] = {}
        # (signal, reason, transport) -> items: not exported itself; the collector's standard
        # otelcol_receiver_* metrics need the transport (dataplane.collector_metrics).
        self.refused_by_transport: dict[tuple[str, str, str], int] = {}
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

    # -- data path ------------------------------------------------------------------------
    def record_refused(self, signal: str, reason: str, items: int, detail: str = "", transport: str = "") -> None:
        """Count a refusal and say why in the log (at most once per interval per reason).

        ``transport`` (``grpc``/``http``, empty when not known) feeds the collector's standard
        ``otelcol_receiver_refused_*`` metrics (:mod:`dataplane.collector_metrics`).
        """
        self.items_refused.labels(signal=signal, reason=reason).inc(items)
        if transport:
            key = (signal, reason, transport)
            self.refused_by_transport[key] = self.refused_by_transport.get(key, 0) + items
        self.requests_refused.labels(signal=signal, reason=reason).inc()
        self._log_limited(
            ("refused", signal, reason),
            items,
            f"refused {{items}} {signal} item(s) in {{requests}} request(s): {reason}: {detail}",
        )

    def record_failed(self, endpoint: str, signal: str, reason: str, items: int, detail: str = "") -> None:
        """Count and log data lost after it was accepted: this is never silent."""
        self.items_failed.labels(endpoint=endpoint, signal=signal, reason=reason).inc(items)
        self._log_limited(
            ("failed", endpoint, signal, reason),
            items,
            f"dropped {{items}} {signal} item(s) in {{requests}} batch(es) for {endpoint}: {reason}: {detail}",
        )

    def _log_limited(self, key: tuple[str, ...], items: int, template: str) -> None:
        """Log the first event of a kind at once, then a summary at most every LOG_INTERVAL seconds.

        A client hammering a full queue must not turn the log into the bottleneck, but
        every refusal and drop still shows up in the log with its reason and counts.
        """
        now = time.monotonic()
        state = self._log_state.get(key)
        if state is None or now - state[0] >= LOG_INTERVAL:
            pending_items, pending_requests = (int(state[1]), int(state[2])) if state else (0, 0)
            log.warning(template.format(items=items + pending_items, requests=1 + pending_requests))
            self._log_state[key] = [now, 0, 0, template]
        else:
            state[1] += items
            state[2] += 1

    def flush_logs(self) -> None:
        """Log the summaries still held back (called periodically and at shutdown)."""
        for key, state in list(self._log_state.items()):
            if state[2]:
                log.warning(str(state[3]).format(items=int(state[1]), requests=int(state[2])))
                self._log_state[key] = [time.monotonic(), 0, 0, state[3]]

    def render(self) -> bytes:
        """The exposition: ``otelcol_*`` counters without ``_total``, as upstream writes them."""
        return render(self.registry)
