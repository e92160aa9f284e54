"""The load generator pod of the lab: the OpenTelemetry Python SDK, several services, paced traces.

It runs inside the cluster (image ``localhost/loadgen:lab``) and plays the applications of a small
system, like :mod:`e2e.loadgen`: each service has its own ``TracerProvider`` and OTLP exporter, and every
trace crosses services, so one trace's spans reach tier 1 in different requests from different clients.

What it writes is the evidence the lab's checks count against: one JSON line per span to ``--out``,
``{"trace": hex, "span": hex, "service": name, "accepted": bool}``, where ``accepted`` is what the
exporter was told for the request that carried the span (a span the client was told was accepted must
reach tier 2). The last line of stdout is a JSON summary.

    python -m e2e.lab_loadgen --endpoint ringleader-demo:4317 --traces 300 --rate 50 --out /data/loadgen.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from e2e.loadgen import otlp_span_exporter


class RecordingExporter(SpanExporter):
    """Wraps an OTLP exporter and records, per span, whether its request was accepted."""

    def __init__(self, inner: SpanExporter, service: str, sink: list[dict[str, object]], lock: threading.Lock):
        self._inner = inner
        self._service = service
        self._sink = sink
        self._lock = lock

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        ok = result == SpanExportResult.SUCCESS
        with self._lock:
            for span in spans:
                ctx = span.get_span_context()
                assert ctx is not None
                self._sink.append(
                    {"trace": f"{ctx.trace_id:032x}", "span": f"{ctx.span_id:016x}", "service": self._service,
                     "accepted": ok}
                )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab_loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="host:port of tier 1 (gRPC) or http://host:port (HTTP)")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--services", default="frontend,checkout,payment,inventory,shipping")
    p.add_argument("--traces", type=int, default=300)
    p.add_argument("--spans-per-trace", type=int, default=6)
    p.add_argument("--rate", type=float, default=0.0, help="traces per second (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    services = tuple(s for s in args.services.split(",") if s)
    rnd = random.Random(args.seed)
    records: list[dict[str, object]] = []
    lock = threading.Lock()
    providers: dict[str, TracerProvider] = {}
    for svc in services:
        provider = TracerProvider(resource=Resource.create({"service.name": svc, "service.instance.id": f"{svc}-1"}))
        exporter = RecordingExporter(otlp_span_exporter(args.endpoint, args.protocol), svc, records, lock)
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_export_batch_size=128, schedule_delay_millis=200, max_queue_size=100_000)
        )
        providers[svc] = provider
    tracers = {svc: pr.get_tracer("ringleader.lab_loadgen", "1.0") for svc, pr in providers.items()}
    started = time.monotonic()
    for t in range(args.traces):
        root_svc = services[t % len(services)]
        with tracers[root_svc].start_as_current_span(f"GET /api/{t % 7}", kind=trace.SpanKind.SERVER) as root:
            ctx = trace.set_span_in_context(root)
            for i in range(args.spans_per_trace - 1):
                svc = services[rnd.randrange(len(services))]
                with tracers[svc].start_as_current_span(f"op-{i}", context=ctx) as child:
                    child.set_attribute("iteration", i)
        if args.rate > 0:
            delay = started + (t + 1) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    for provider in providers.values():
        provider.force_flush(120_000)
        provider.shutdown()
    with open(args.out + ".tmp", "w") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")

    os.replace(args.out + ".tmp", args.out)
    accepted = sum(1 for r in records if r["accepted"])
    summary = {"spans": len(records), "accepted": accepted, "refused": len(records) - accepted,
               "traces": len({r["trace"] for r in records}), "seconds": round(time.monotonic() - started, 2)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
