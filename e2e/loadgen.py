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
