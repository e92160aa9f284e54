"""The OpenTelemetry Collector's standard self-metrics, exposed as the upstream release does.

Collector dashboards and alerts are built on a handful of self-metrics every collector has
(``otelcol_receiver_accepted_spans``, ``otelcol_exporter_sent_spans``, queue size and capacity,
...) and on the ``loadbalancing`` exporter's own ``otelcol_loadbalancer_*`` metrics. This module
makes a Ringleader scrape carry them with the names, label sets and types the upstream collector
v0.161 exposes on its Prometheus endpoint (tests/test_collector_metrics.py diffs a Ringleader
scrape against a real v0.161 scrape for the same traffic); docs/operations.md has the mapping.

Two pieces:

- :class:`CollectorSelfMetrics` is a Prometheus *collector* that derives the standard metrics,
  at scrape time, from Ringleader's own counters (``ringleader_items_received_total`` and
  friends). Nothing is counted twice and the data path does no extra work per request.
- :func:`render` writes the exposition. Upstream's counters carry no ``_total`` suffix (the
  collector's Prometheus exporter keeps the OpenTelemetry instrument name), while
  ``prometheus_client`` appends ``_total`` to every counter it writes. :func:`render` writes the
  ``otelcol_*`` counter families itself, under their own name, and hands every other family to
  ``prometheus_client`` unchanged (Ringleader's ``ringleader_*_total`` counters keep the suffix).

Use::

    telemetry.registry.register(
        CollectorSelfMetrics(telemetry.registry, cfg, telemetry.refused_by_transport, telemetry.retired_items)
    )
    body = render(telemetry.registry)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _go_float

from .config_model import Config

# Upstream's item nouns per signal (otelcol_receiver_accepted_<noun>, ...).
NOUNS = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}

# Refusal reasons that upstream's receiver never counts: the request fails to decode (or names a
# signal with no pipeline) before the receiver's accounting starts.
NOT_COUNTED_BY_RECEIVER = frozenset(
    {
        "malformed",
        "invalid_trace_id",
        "too_large",
        "unsupported_media_type",
        "unsupported_encoding",
        "signal_disabled",
    }
)
# Refusals caused by a fault of the data plane itself; upstream counts those as "failed"; every
# other refusal (queue full, no backends, export failed, shutting down, client gone) is "refused".
RECEIVER_FAILED = frozenset({"internal_error"})

# A failure reason that is a gRPC status code is reported as Go's name for it (error_type="Unavailable").
_RETRYABLE_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED"})
# Items lost after acceptance for these reasons were never refused by the backend for good.
_TRANSIENT_REASONS = frozenset({"retries_exhausted", "shutdown"})

# The exporter-level queue's name in ringleader_queue_size{endpoint}.
_LB_QUEUE = "loadbalancer"


class CollectorSelfMetrics(Collector):
    """Derives the collector's standard self-metrics from Ringleader's counters at scrape time."""

    def __init__(
        self,
        registry: CollectorRegistry,
        cfg: Config,
        refused_by_transport: Mapping[tuple[str, str, str], int],
        retired: Mapping[tuple[str, tuple[tuple[str, str], ...]], float] | None = None,
    ) -> None:
        """``refused_by_transport``: items refused per (signal, reason, transport); ``retired``: what
        the per-endpoint item counters of backends that left held (both kept by Telemetry)."""
        self._registry = registry
        self._refused = refused_by_transport
        self._retired = retired if retired is not None else {}
        self._receiver = cfg.receiver_id
        self._exporter = cfg.exporter_id
        self._signals = tuple(s for s in NOUNS if s in cfg.signals)
        lb = cfg.exporter
        self._backend_queue = lb.protocol.sending_queue
        self._lb_queue = lb.sending_queue

    def describe(self) -> list[Metric]:
        # Registering calls describe(), or collect() without it, under the registry's lock;
        # collect() takes that lock itself. The derived names never clash with Ringleader's own.
        return []

    def collect(self) -> Iterator[Metric]:
        samples = _samples(self._registry)
        for (name, retired_labels), retired_value in list(self._retired.items()):
            samples[name].append((dict(retired_labels), retired_value))
        rec, exp = {"receiver": self._receiver}, {"exporter": self._exporter}

        counts: dict[tuple[str, str, str], float] = defaultdict(float)  # (kind, signal, transport)
        for labels, value in samples.get("ringleader_items_received_total", ()):
            counts[("accepted", labels["signal"], labels["transport"])] += value
        for (signal, reason, transport), items in list(self._refused.items()):
            if reason in NOT_COUNTED_BY_RECEIVER:
                continue
            kind = "failed" if reason in RECEIVER_FAILED else "refused"
            counts[(kind, signal, transport)] += items
        # Like upstream, a signal's series exist once a request of it was handled on that transport.
        seen = {(signal, t) for (_, signal, t), v in counts.items() if v > 0}
        docs = {
            "accepted": "Number of {} successfully pushed into the pipeline.",
            "refused": "Number of {} that could not be pushed into the pipeline.",
            "failed": "Number of {} that failed to be processed by the receiver due to internal errors.",
        }
        for signal in self._signals:
            noun = NOUNS[signal]
            transports = sorted(t for s, t in seen if s == signal)
            if not transports:
                continue
            for kind, doc in docs.items():
                family = CounterMetricFamily(
                    f"otelcol_receiver_{kind}_{noun}", doc.format(noun.replace("_", " ")), labels=[*rec, "transport"]
                )
                for transport in transports:
                    family.add_metric([self._receiver, transport], counts.get((kind, signal, transport), 0.0))
                yield family

        sent: dict[str, float] = defaultdict(float)
        for labels, value in samples.get("ringleader_items_exported_total", ()):
            sent[labels["signal"]] += value
        failed: dict[tuple[str, str, str], float] = defaultdict(float)
        for labels, value in samples.get("ringleader_items_failed_total", ()):
            error_type, permanent = _error_labels(labels["reason"])
            failed[(labels["signal"], error_type, permanent)] += value
        for labels, value in samples.get("ringleader_items_refused_total", ()):
            # Without a sending queue a failed export is refused to the client: a failed send too.
            if labels["reason"] == "export_failed":
                failed[(labels["signal"], "export_failed", "false")] += value
        for signal in self._signals:
            noun = NOUNS[signal]
            rows = [(k, v) for k, v in failed.items() if k[0] == signal and v > 0]
            if not sent.get(signal) and not rows:
                continue  # like upstream: the series exist once an export of the signal was attempted
            family = CounterMetricFamily(
                f"otelcol_exporter_sent_{noun}",
                f"Number of {noun.replace('_', ' ')} successfully sent to destination.",
                labels=list(exp),
            )
            family.add_metric([self._exporter], sent.get(signal, 0.0))
            yield family
            if rows:  # like upstream: the series exist once something failed
                family = CounterMetricFamily(
                    f"otelcol_exporter_send_failed_{noun}",
                    f"Number of {noun.replace('_', ' ')} in failed attempts to send to destination.",
                    labels=["error_permanent", "error_type", "exporter"],
                )
                for (_, error_type, permanent), value in sorted(rows):
                    family.add_metric([permanent, error_type, self._exporter], value)
                yield family

        size, capacity = self._queue_totals(samples)
        if capacity:
            size_family = GaugeMetricFamily(
                "otelcol_exporter_queue_size",
                "Current size of the retry queue (in batches).",
                labels=["data_type", "exporter"],
            )
            capacity_family = GaugeMetricFamily(
                "otelcol_exporter_queue_capacity",
                "Fixed capacity of the retry queue (in batches).",
                labels=["data_type", "exporter"],
            )
            for signal in self._signals:
                size_family.add_metric([signal, self._exporter], size)
                capacity_family.add_metric([signal, self._exporter], capacity)
            yield size_family
            yield capacity_family

    def _queue_totals(self, samples: dict[str, list[tuple[dict[str, str], float]]]) -> tuple[float, float]:
        """Size and capacity of all sending queues together, in the unit of their sizer.

        Ringleader's queues (one per backend, plus the exporter-level one when enabled) are
        shared by the signals, so each ``data_type`` series reports the same shared totals.
        """
        size = capacity = 0.0
        by_endpoint = {
            "requests": dict((lab["endpoint"], v) for lab, v in samples.get("ringleader_queue_size", ())),
            "items": dict((lab["endpoint"], v) for lab, v in samples.get("ringleader_queue_items", ())),
        }
        for endpoint in by_endpoint["requests"]:
            queue = self._lb_queue if endpoint == _LB_QUEUE else self._backend_queue
            if not queue.enabled:
                continue
            unit = "items" if queue.sizer == "items" else "requests"
            size += by_endpoint[unit].get(endpoint, 0.0)
            capacity += queue.queue_size
        return size, capacity


def _error_labels(reason: str) -> tuple[str, str]:
    """(error_type, error_permanent) for a Ringleader failure reason."""
    if reason.isupper():  # a gRPC status code name, e.g. UNAVAILABLE
        go_name = "".join(part.capitalize() for part in reason.split("_"))
        return go_name, "false" if reason in _RETRYABLE_CODES else "true"
    return reason, "false" if reason in _TRANSIENT_REASONS else "true"


def _samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the registry's own metrics, by sample name (this collector excluded)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for metric in _own_metrics(registry):
        for sample in metric.samples:
            out[sample.name].append((sample.labels, sample.value))
    return out


def _own_metrics(registry: CollectorRegistry) -> Iterator[Metric]:
    # The registry's collectors minus the derived ones, so a scrape does not recurse.
    with registry._lock:
        collectors = [c for c in registry._collector_to_names if not isinstance(c, CollectorSelfMetrics)]
    for collector in collectors:
        yield from collector.collect()


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format, ``otelcol_*`` counters without ``_total``."""
    families = list(registry.collect())
    ours = [m for m in families if m.type == "counter" and m.name.startswith("otelcol_")]
    rest = [m for m in families if not (m.type == "counter" and m.name.startswith("otelcol_"))]
    return generate_latest(_Families(rest)) + "".join(_unsuffixed_counter(m) for m in ours).encode()


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def _unsuffixed_counter(metric: Metric) -> str:
    name = metric.name
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    lines = [f"# HELP {name} {doc}\n", f"# TYPE {name} counter\n"]
    for sample in metric.samples:
        if sample.name != f"{name}_total":
            continue  # _created: disabled for the whole process; nothing else is a counter sample
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
        value = str(_go_float(sample.value))  # type: ignore[no-untyped-call]
        lines.append(f"{name}{{{labels}}} {value}\n" if labels else f"{name} {value}\n")
    return "".join(lines)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
