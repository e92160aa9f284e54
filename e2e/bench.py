"""``make bench``: data-plane throughput per CPU-second, peak memory, and the ring table.

Setup (all on loopback): four backends (``e2e.sink --count-only``), the data plane
routing traces by trace ID with a static resolver (default queue/retry settings),
and a gRPC load generator in this process sending pre-built requests of 1000
spans (about 10 attributes per span, 10 spans per trace) with ``CONCURRENCY``
requests in flight.

The figure of merit is spans per CPU-second *of the data-plane process*: user +
system time read from ``/proc/<pid>/stat`` (so it does not depend on how busy
the shared machine is), over a measured window that starts after a warm-up and
ends when every span of the window has been exported. Peak RSS is ``VmHWM``.
Two runs: compression none (client and exporter), and gzip on both sides.

Usage: ``python -m e2e.bench [--requests N] [--concurrency C] [--no-ring-table]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.harness import DataPlaneProcess, SinkProcess, static_config, wait_until

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def build_request(seed: int, spans: int = 1000, spans_per_trace: int = 10, attributes: int = 10) -> bytes:
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    for svc in ("frontend", "checkout"):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=svc))
        rs.resource.attributes.add(key="k8s.pod.name", value=AnyValue(string_value=f"{svc}-7d9f8b-x2x9q"))
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        trace_id = b""
        for i in range(spans // 2):
            if i % spans_per_trace == 0:
                trace_id = rnd.randbytes(16)
            span = ss.spans.add(
                trace_id=trace_id,
                span_id=rnd.randbytes(8),
                name=f"GET /api/v1/items/{i % 50}",
                kind=2,
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_100_000_000 + i,
            )
            if i % spans_per_trace:
                span.parent_span_id = rnd.randbytes(8)
            for a in range(attributes):
                span.attributes.add(
                    key=f"app.attribute.{a}", value=AnyValue(string_value=f"value-{rnd.randrange(10**6)}")
                )
    return req.SerializeToString()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def send(endpoint: str, requests: list[bytes], count: int, concurrency: int, gzip: bool) -> float:
    compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
    async with grpc.aio.insecure_channel(
        endpoint, compression=compression, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        call = channel.unary_unary(TRACE_EXPORT, request_serializer=None, response_deserializer=None)
        next_index = 0
        started = time.monotonic()

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                for _attempt in range(100):
                    try:
                        await call(requests[i % len(requests)], timeout=30)
                        break
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        await asyncio.sleep(0.01)  # queue full: back off like an SDK would

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started


def run_case(work: Path, name: str, requests: list[bytes], count: int, concurrency: int, gzip: bool) -> dict[str, Any]:
    sinks = [SinkProcess(work, f"{name}-backend-{i}", "--count-only").start() for i in range(4)]
    otlp = {"compression": "gzip" if gzip else "none"}
    cfg = static_config([s.endpoint for s in sinks], otlp=otlp, routing_key="traceID")
    cfg["telemetry"] = {"log_level": "info"}
    dp = DataPlaneProcess(work, cfg, name=f"{name}-dataplane").start()
    assert dp.proc is not None
    pid = dp.proc.pid
    spans_per_request = 1000
    try:
        warmup = max(20, count // 10)
        asyncio.run(send(dp.grpc_endpoint, requests, warmup, concurrency, gzip))
        wait_until(
            lambda: dp.metric("ringleader_items_exported_total") >= warmup * spans_per_request,
            120,
            what="warm-up exported",
        )
        cpu0 = cpu_seconds(pid)
        wall = asyncio.run(send(dp.grpc_endpoint, requests, count, concurrency, gzip))
        target = (warmup + count) * spans_per_request
        wait_until(lambda: dp.metric("ringleader_items_exported_total") >= target, 300, what="all exported")
        cpu = cpu_seconds(pid) - cpu0
        spans = count * spans_per_request
        refused = dp.metric("ringleader_items_refused_total")
        return {
            "case": name,
            "requests": count,
            "spans": spans,
            "cpu_s": cpu,
            "wall_s": wall,
            "spans_per_cpu_s": spans / cpu if cpu else float("inf"),
            "spans_per_wall_s": spans / wall,
            "peak_rss_mib": peak_rss_mib(pid),
            "refused_spans": refused,
            "failed": dp.metric("ringleader_items_failed_total"),
        }
    finally:
        dp.stop()
        for s in sinks:
            s.stop()


def split_cost(requests: list[bytes], rounds: int = 200) -> list[tuple[str, float]]:
    """CPU ms per request to split traces by trace ID to 4 backends: wire path vs decode path."""
    from dataplane.ring import build_ring
    from dataplane.routing import DecodeSplitter, WireSplitter

    lookup = build_ring("ringleader", [f"10.0.0.{i}:4317" for i in range(4)]).lookup
    results = []
    for name, splitter in (
        ("wire (Ringleader)", WireSplitter("traces", "traceID")),
        ("decode + re-encode", DecodeSplitter("traces", "traceID")),
    ):
        start = time.process_time()
        for i in range(rounds):
            splitter.split(requests[i % len(requests)], lookup)
        results.append((name, (time.process_time() - start) / rounds * 1000))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="measured requests per case (1000 spans each)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-ring-table", action="store_true")
    args = parser.parse_args()
    requests = [build_request(seed) for seed in range(16)]
    size = sum(map(len, requests)) / len(requests)
    print(
        f"# Ringleader data-plane benchmark\n\nmachine: {platform.node()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; command: python -m e2e.bench "
        f"--requests {args.requests} --concurrency {args.concurrency}\n"
    )
    print(
        f"request: 1000 spans, 10 attributes/span, 10 spans/trace, {size / 1024:.0f} KiB uncompressed; "
        "routing traceID to 4 backends\n"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="ringleader-bench-") as tmp:
        for name, gzip in (("none", False), ("gzip", True)):
            results.append(run_case(Path(tmp), name, requests, args.requests, args.concurrency, gzip))
    print(
        "| compression | spans | data-plane CPU s | spans / CPU-second | spans / wall-second | peak RSS MiB "
        "| refused (retried) | lost |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['case']} | {r['spans']} | {r['cpu_s']:.2f} | {r['spans_per_cpu_s']:,.0f} | "
            f"{r['spans_per_wall_s']:,.0f} | {r['peak_rss_mib']:.0f} | {r['refused_spans']:.0f} | {r['failed']:.0f} |"
        )
    print("\n| splitter | CPU ms per 1000-span request |\n|---|---:|")
    for name, ms in split_cost(requests):
        print(f"| {name} | {ms:.2f} |")
    if not args.no_ring_table:
        print()
        sys.stdout.flush()
        from .ring_table import main as ring_table

        ring_table([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
