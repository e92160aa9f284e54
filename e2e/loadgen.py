"""A load generator built on the real OpenTelemetry Python SDK.

It plays the applications of a small system: several services, each with its own
``TracerProvider`` and OTLP exporter (gRPC or HTTP), producing traces that cross
services (a root in one service, children in others), so one trace's spans reach
the data plane in different requests from different clients — the case tail
sampling depends on.

:func:`send_traces` returns what was produced (trace ID, span ID, service) so a
test can check every span arrived exactly once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass(frozen=True)
class ProducedSpan:
    trace_id: bytes
    span_id: bytes
    service: str


def otlp_span_exporter(endpoint: str, protocol: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCExporter

        return GRPCExporter(endpoint=endpoint, insecure=True, timeout=30)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPExporter

    return HTTPExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=30)


def send_traces(
    endpoint: str,
    protocol: str = "grpc",
    services: tuple[str, ...] = ("frontend", "checkout", "payment", "inventory"),
    traces: int = 200,
    spans_per_trace: int = 6,
    seed: int = 1,
    max_export_batch_size: int = 128,
    pause: float = 0.0,
) -> list[ProducedSpan]:
    """Produce ``traces`` cross-service traces through the SDK and flush them.

    ``pause`` seconds between traces stretch the stream out in time (for tests that
    disturb a backend while data flows).
    """
    rnd = random.Random(seed)
    providers: dict[str, TracerProvider] = {}
    memory: dict[str, InMemorySpanExporter] = {}
    for svc in services:
        provider = TracerProvider(resource=Resource.create({"service.name": svc, "service.instance.id": f"{svc}-1"}))
        mem = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(mem))
        provider.add_span_processor(
            BatchSpanProcessor(
                otlp_span_exporter(endpoint, protocol),
                max_export_batch_size=max_export_batch_size,
                schedule_delay_millis=200,
                max_queue_size=100_000,
            )
        )
        providers[svc] = provider
        memory[svc] = mem
    tracers = {svc: p.get_tracer("ringleader.loadgen", "1.0") for svc, p in providers.items()}
    for t in range(traces):
        root_svc = services[t % len(services)]
        with tracers[root_svc].start_as_current_span(f"GET /api/{t % 7}", kind=trace.SpanKind.SERVER) as root:
            root.set_attribute("http.route", f"/api/{t % 7}")
            ctx = trace.set_span_in_context(root)
            for i in range(spans_per_trace - 1):
                svc = services[rnd.randrange(len(services))]
                with tracers[svc].start_as_current_span(f"op-{i}", context=ctx) as child:
                    child.set_attribute("iteration", i)
                    child.set_attribute("peer.service", root_svc)
        if pause:
            time.sleep(pause)
    for provider in providers.values():
        provider.force_flush(60_000)
        provider.shutdown()
    produced = []
    for svc, mem in memory.items():
        for span in mem.get_finished_spans():
            sc = span.get_span_context()
            assert sc is not None
            produced.append(ProducedSpan(sc.trace_id.to_bytes(16, "big"), sc.span_id.to_bytes(8, "big"), svc))
    return produced


# --------------------------------------------------------------------------- logs -----
#
# :func:`send_logs` plays the same small system for logs: every (service, instance)
# pair is one resource with its own ``LoggerProvider`` and OTLP log exporter, and two
# instrumentation scopes. Most records are emitted inside a span, so they carry that
# span's trace and span IDs; the records of one trace come from several resources.
# Some records are emitted outside any span and carry no trace ID. Each record's body
# is unique, so a test can find every record again at the backends.

from typing import Any  # noqa: E402 - this part was appended to the traces generator

TENANTS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "initrode",
    "soylent",
)
LOG_SCOPES = ("ringleader.loadgen.http", "ringleader.loadgen.db")


@dataclass(frozen=True)
class ProducedLog:
    body: str
    trace_id: bytes  # b"" for a record emitted outside any span
    service: str
    instance: str
    scope: str
    tenant: str  # "" when the record has no tenant attribute


def otlp_log_exporter(endpoint: str, protocol: str, gzip: bool = False) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GRPCLogExporter

        return GRPCLogExporter(endpoint=endpoint, insecure=True, timeout=30)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter

    return HTTPLogExporter(
        endpoint=f"{endpoint.rstrip('/')}/v1/logs",
        timeout=30,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )


def _checked_log_exporter(inner: Any) -> Any:
    """Wrap an OTLP log exporter to count failed exports (the SDK only logs them)."""
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class Checked(LogRecordExporter):
        failures = 0

        def export(self, batch: Any) -> Any:
            result = inner.export(batch)
            if result is not LogRecordExportResult.SUCCESS:
                Checked.failures += 1
            return result

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return Checked()


def send_logs(
    endpoint: str,
    protocol: str = "grpc",
    services: tuple[str, ...] = ("frontend", "checkout", "payment", "inventory"),
    instances: int = 2,
    traces: int = 60,
    records_per_trace: int = 4,
    untraced: int = 40,
    seed: int = 1,
    gzip: bool = False,
) -> list[ProducedLog]:
    """Emit ``traces * records_per_trace`` records inside spans plus ``untraced`` outside, flush them.

    Every seventh record has no ``tenant`` attribute (for attribute routing's missing-key rule).
    ``gzip`` compresses the HTTP exporter's bodies. Raises RuntimeError if an export failed.
    """
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    rnd = random.Random(seed)
    resources = [(svc, f"{svc}-{i}") for svc in services for i in range(instances)]
    providers: dict[tuple[str, str], LoggerProvider] = {}
    exporters = []
    for svc, inst in resources:
        provider = LoggerProvider(resource=Resource.create({"service.name": svc, "service.instance.id": inst}))
        exporter = _checked_log_exporter(otlp_log_exporter(endpoint, protocol, gzip))
        exporters.append(exporter)
        provider.add_log_record_processor(
            BatchLogRecordProcessor(
                exporter,
                max_export_batch_size=64,
                schedule_delay_millis=200,
                max_queue_size=100_000,
            )
        )
        providers[(svc, inst)] = provider
    # Spans only give the records their trace context: nothing exports them.
    tracer = TracerProvider(resource=Resource.create({"service.name": "loadgen"})).get_tracer("ringleader.loadgen")
    produced: list[ProducedLog] = []

    def emit(trace_id: bytes) -> None:
        svc, inst = resources[rnd.randrange(len(resources))]
        scope = LOG_SCOPES[len(produced) % len(LOG_SCOPES)]
        n = len(produced)
        tenant = "" if n % 7 == 0 else TENANTS[rnd.randrange(len(TENANTS))]
        attributes: dict[str, Any] = {"http.route": f"/api/{n % 5}", "seq": n}
        if tenant:
            attributes["tenant"] = tenant
        body = f"record {n} from {inst}"
        providers[(svc, inst)].get_logger(scope, "1.0").emit(
            body=body, severity_number=SeverityNumber.INFO, severity_text="INFO", attributes=attributes
        )
        produced.append(ProducedLog(body, trace_id, svc, inst, scope, tenant))

    for t in range(traces):
        with tracer.start_as_current_span(f"job-{t}") as span:
            trace_id = span.get_span_context().trace_id.to_bytes(16, "big")
            for _ in range(records_per_trace):
                emit(trace_id)
    for _ in range(untraced):
        emit(b"")
    for provider in providers.values():
        provider.force_flush(60_000)
        provider.shutdown()
    failures = sum(e.failures for e in exporters)
    if failures:
        raise RuntimeError(f"{failures} log export(s) failed")
    return produced


# ------------------------------------------------------------------------ metrics -----
#
# :func:`send_metrics` runs one ``MeterProvider`` per (service, instance) resource with
# twelve instruments of every kind in two scopes, each recorded under several attribute
# sets, and exports twice (a ``force_flush`` and the final collection at shutdown) with
# the SDK's default cumulative temporality: every stream therefore appears in two
# exports. What the SDK's real OTLP exporter sent successfully is returned point by
# point, so a test can find every data point again at the backends.

METRIC_SCOPES = ("ringleader.loadgen.http", "ringleader.loadgen.db")
ROUTES = ("/cart", "/checkout")


@dataclass(frozen=True)
class ProducedPoint:
    """Identity of one data point: its stream (resource, scope, metric, attributes) and time."""

    service: str
    instance: str
    scope: str
    metric: str
    unit: str
    attributes: tuple[tuple[str, str], ...]  # sorted (key, value as text)
    time_unix_nano: int


def otlp_metric_exporter(endpoint: str, protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GRPCMetricExporter

        return GRPCMetricExporter(endpoint=endpoint, insecure=True, timeout=30)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPMetricExporter

    return HTTPMetricExporter(endpoint=f"{endpoint.rstrip('/')}/v1/metrics", timeout=30)


def _recording_exporter(inner: Any) -> Any:
    """Wrap an OTLP metric exporter to keep what it sent successfully (and fail loudly otherwise)."""
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

    class Recording(MetricExporter):
        def __init__(self) -> None:
            super().__init__(inner._preferred_temporality, inner._preferred_aggregation)
            self.sent: list[MetricsData] = []
            self.failures = 0

        def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            result = inner.export(metrics_data, timeout_millis=timeout_millis)
            if result is MetricExportResult.SUCCESS:
                self.sent.append(metrics_data)
            else:
                self.failures += 1
            return result

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(inner.force_flush(timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            inner.shutdown(timeout_millis=timeout_millis)

    return Recording()


def _attr_text(value: Any) -> str:
    return str(value)


def send_metrics(
    endpoint: str,
    protocol: str = "grpc",
    services: tuple[str, ...] = ("frontend", "checkout", "payment", "inventory", "shipping"),
    instances: int = 3,
    tenants: int = 6,
    seed: int = 1,
) -> list[ProducedPoint]:
    """Record measurements on every resource, export twice, return every data point sent."""
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    rnd = random.Random(seed)
    attribute_sets = [{"tenant": t, "http.route": r} for t in TENANTS[:tenants] for r in ROUTES]
    providers: list[tuple[Any, Any]] = []

    def observe(scale: float) -> Any:
        def callback(options: CallbackOptions) -> list[Observation]:
            return [Observation(scale * (i + 1), attrs) for i, attrs in enumerate(attribute_sets)]

        return callback

    for svc in services:
        for i in range(instances):
            exporter = _recording_exporter(otlp_metric_exporter(endpoint, protocol))
            # The periodic reader never fires on its own here: exports happen at force_flush and shutdown.
            reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
            resource = Resource.create({"service.name": svc, "service.instance.id": f"{svc}-{i}"})
            provider = MeterProvider(resource=resource, metric_readers=[reader])
            providers.append((provider, exporter))
            http = provider.get_meter(METRIC_SCOPES[0], "1.0")
            db = provider.get_meter(METRIC_SCOPES[1], "1.0")
            sync = [
                http.create_counter("http.server.requests", unit="{request}"),
                http.create_histogram("http.server.duration", unit="ms"),
                http.create_up_down_counter("http.server.active_requests", unit="{request}"),
                http.create_counter("http.server.request.size", unit="By"),
                http.create_histogram("http.client.duration", unit="ms"),
                db.create_counter("db.client.calls", unit="{call}"),
                db.create_histogram("db.client.duration", unit="ms"),
                db.create_up_down_counter("db.client.connections.usage", unit="{connection}"),
                db.create_counter("db.client.rows", unit="{row}"),
                db.create_histogram("db.client.rows.per_query", unit="{row}"),
            ]
            http.create_observable_gauge("http.server.queue.depth", callbacks=[observe(1.0)], unit="{request}")
            db.create_observable_gauge("db.client.connections.max", callbacks=[observe(10.0)], unit="{connection}")
            for instrument in sync:
                for attrs in attribute_sets:
                    _record(instrument, rnd.randint(1, 100), attrs)
    for provider, _ in providers:
        provider.force_flush(60_000)
    for provider, _ in providers:
        provider.shutdown(60_000)
    produced: list[ProducedPoint] = []
    for _, exporter in providers:
        if exporter.failures:
            raise RuntimeError(f"{exporter.failures} metric export(s) failed")
        for data in exporter.sent:
            produced.extend(_points_of_sdk_data(data))
    return produced


def _record(instrument: Any, value: int, attrs: dict[str, str]) -> None:
    if hasattr(instrument, "record"):
        instrument.record(value, attrs)
    else:
        instrument.add(value, attrs)


def _points_of_sdk_data(data: Any) -> list[ProducedPoint]:
    out = []
    for rm in data.resource_metrics:
        svc = str(rm.resource.attributes.get("service.name", ""))
        inst = str(rm.resource.attributes.get("service.instance.id", ""))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    attrs = tuple(sorted((k, _attr_text(v)) for k, v in (point.attributes or {}).items()))
                    out.append(
                        ProducedPoint(
                            svc, inst, sm.scope.name, metric.name, metric.unit or "", attrs, point.time_unix_nano
                        )
                    )
    return out


# ------------------------------------------------------------------ paced traces -----
#
# :class:`PacedTraces` keeps SDK clients producing traces at a steady pace in a
# background thread while a test disturbs a backend, and tags each trace with the
# test's current *phase*, so the test can ask where the spans of each phase went.
# A wrapper around each OTLP exporter records the spans of every batch the SDK gave
# up on (the client was told they were not accepted), so a test can tell data the
# data plane refused from data it lost.

import threading  # noqa: E402 - appended section


class PacedTraces:
    """SDK clients (one TracerProvider and OTLP exporter per service) at ``traces_per_second``."""

    def __init__(
        self,
        endpoint: str,
        traces_per_second: float = 50.0,
        spans_per_trace: int = 4,
        services: tuple[str, ...] = ("frontend", "checkout", "payment", "inventory"),
        protocol: str = "grpc",
    ) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.phase = "start"
        self._interval = 1.0 / traces_per_second
        self._spans_per_trace = spans_per_trace
        self._services = services
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-traces", daemon=True)
        self.phases: dict[bytes, str] = {}  # span ID -> phase its trace was produced in
        self.refused_spans: set[bytes] = set()  # span IDs in batches the SDK gave up on
        self.exports = 0
        lock = threading.Lock()
        self._lock = lock
        refused = self.refused_spans
        paced = self

        class Recording(SpanExporter):
            def __init__(self, inner: SpanExporter) -> None:
                self._inner = inner

            def export(self, spans: Any) -> Any:
                result = self._inner.export(spans)
                with lock:
                    paced.exports += 1
                    if result is not SpanExportResult.SUCCESS:
                        refused.update(s.get_span_context().span_id.to_bytes(8, "big") for s in spans)
                return result

            def shutdown(self) -> None:
                self._inner.shutdown()

            def force_flush(self, timeout_millis: int = 30_000) -> bool:
                return bool(self._inner.force_flush(timeout_millis))

        self._providers: dict[str, TracerProvider] = {}
        for svc in services:
            provider = TracerProvider(resource=Resource.create({"service.name": svc}))
            provider.add_span_processor(
                BatchSpanProcessor(
                    Recording(otlp_span_exporter(endpoint, protocol)),
                    max_export_batch_size=64,
                    schedule_delay_millis=100,
                    max_queue_size=200_000,
                )
            )
            self._providers[svc] = provider

    def start(self) -> PacedTraces:
        self._thread.start()
        return self

    def _run(self) -> None:
        tracers = {svc: p.get_tracer("ringleader.paced", "1.0") for svc, p in self._providers.items()}
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            phase = self.phase
            root_svc = self._services[n % len(self._services)]
            ids = []
            with tracers[root_svc].start_as_current_span(f"GET /paced/{n % 5}") as root:
                root.set_attribute("test.phase", phase)
                ids.append(root.get_span_context().span_id)
                ctx = trace.set_span_in_context(root)
                for i in range(self._spans_per_trace - 1):
                    svc = self._services[(n + i + 1) % len(self._services)]
                    with tracers[svc].start_as_current_span(f"op-{i}", context=ctx) as child:
                        ids.append(child.get_span_context().span_id)
            with self._lock:
                for sid in ids:
                    self.phases[sid.to_bytes(8, "big")] = phase
            n += 1
            next_at += self._interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind (a loaded machine): do not burst to catch up

    def stop(self, flush_timeout: float = 120.0) -> None:
        """Stop producing and flush every SDK client (retries included)."""
        self._stop.set()
        self._thread.join(30)
        for provider in self._providers.values():
            provider.force_flush(int(flush_timeout * 1000))
            provider.shutdown()
