"""``make bench``: data-plane throughput per CPU-second, peak memory, and the ring table.

Setup (all on loopback): N backends (``e2e.sink --count-only``), the data plane
routing traces by trace ID with a static resolver (default queue/retry settings),
and a gRPC load generator in this process sending pre-built requests (about 10
attributes per span, 10 spans per trace) with ``CONCURRENCY`` requests in flight.

Cases (one row each): 1000-span requests to 4 backends without and with gzip;
100-span requests to 4 and to 20 backends; and the 20-backend case again with
coalescing off (``coalesce.max_size: 0``), to show what coalescing buys.

The figure of merit is spans per CPU-second of the WHOLE data plane: user +
system time of the data-plane process and of every process it started (the ring
worker, multiprocessing's resource tracker), read from ``/proc/<pid>/stat`` (so it
does not depend on how busy the shared machine is), over a measured window that
starts after a warm-up and ends when every span of the window has been exported.
Peak memory is the sum of every such process's ``VmHWM`` (an upper bound of their
joint peak). Compression is named in every row: "none" means neither the client
nor the exporter compresses, "gzip" means both do.

Usage: ``python -m e2e.bench [--requests N] [--concurrency C] [--cases a,b] [--no-ring-table]``
(``--requests`` counts 1000-span requests; 100-span cases send ten times as many.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
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


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (the data plane's helpers: ring worker, resource tracker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime (+ those of reaped children) per process."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            f = _stat(pid)
            out[pid] = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
    return out


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
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


@dataclass(frozen=True)
class Case:
    name: str
    spans: int  # per request
    backends: int
    gzip: bool
    coalesce: bool = True

    @property
    def compression(self) -> str:
        return "gzip" if self.gzip else "none"


CASES = {
    c.name: c
    for c in (
        Case("1000x4-none", 1000, 4, False),
        Case("1000x4-gzip", 1000, 4, True),
        Case("100x4-none", 100, 4, False),
        Case("100x20-none", 100, 20, False),
        Case("100x20-none-nocoalesce", 100, 20, False, coalesce=False),
    )
}


def run_case(work: Path, case: Case, requests: list[bytes], count: int, concurrency: int) -> dict[str, Any]:
    name = case.name
    sinks = [SinkProcess(work, f"{name}-backend-{i}", "--count-only").start() for i in range(case.backends)]
    otlp = {"compression": case.compression}
    extra: dict[str, Any] = {} if case.coalesce else {"coalesce": {"max_size": 0}}
    cfg = static_config([s.endpoint for s in sinks], otlp=otlp, routing_key="traceID", **extra)
    cfg["telemetry"] = {"log_level": "info"}
    dp = DataPlaneProcess(work, cfg, name=f"{name}-dataplane").start()
    assert dp.proc is not None
    pid = dp.proc.pid
    spans_per_request = case.spans
    try:
        warmup = max(20, count // 10)
        asyncio.run(send(dp.grpc_endpoint, requests, warmup, concurrency, case.gzip))
        wait_until(
            lambda: dp.metric("ringleader_items_exported_total") >= warmup * spans_per_request,
            120,
            what="warm-up exported",
        )
        pids = process_tree(pid)
        cpu0 = cpu_seconds(pids)
        wall = asyncio.run(send(dp.grpc_endpoint, requests, count, concurrency, case.gzip))
        target = (warmup + count) * spans_per_request
        wait_until(lambda: dp.metric("ringleader_items_exported_total") >= target, 300, what="all exported")
        cpu1 = cpu_seconds(process_tree(pid))
        # A helper that started during the window counts from zero.
        cpu = sum(t - cpu0.get(p, 0.0) for p, t in cpu1.items())
        spans = count * spans_per_request
        peaks = {p: peak_rss_mib(p) for p in process_tree(pid)}
        return {
            "case": name,
            "compression": case.compression,
            "request_spans": case.spans,
            "backends": case.backends,
            "coalesce": case.coalesce,
            "requests": count,
            "spans": spans,
            "processes": len(cpu1),
            "cpu_s": cpu,
            "main_cpu_s": cpu1.get(pid, 0.0) - cpu0.get(pid, 0.0),
            "wall_s": wall,
            "spans_per_cpu_s": spans / cpu if cpu else float("inf"),
            "spans_per_wall_s": spans / wall,
            "peak_rss_mib": sum(peaks.values()),
            "main_peak_rss_mib": peaks.get(pid, 0.0),
            "exports": dp.metric("otelcol_loadbalancer_backend_outcome_total"),
            "refused_spans": dp.metric("ringleader_items_refused_total"),
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
    parser.add_argument("--requests", type=int, default=400, help="measured 1000-span requests per case")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--no-ring-table", action="store_true")
    args = parser.parse_args()
    cases = [CASES[n] for n in args.cases.split(",") if n]
    by_size = {n: [build_request(seed, spans=n) for seed in range(16)] for n in sorted({c.spans for c in cases})}
    print(
        f"# Ringleader data-plane benchmark\n\nmachine: {platform.node()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; command: python -m e2e.bench "
        f"--requests {args.requests} --concurrency {args.concurrency}"
        + (f" --cases {args.cases}" if args.cases != ",".join(CASES) else "")
        + "\n"
    )
    for n, reqs in by_size.items():
        size = sum(map(len, reqs)) / len(reqs)
        print(f"request: {n} spans, 10 attributes/span, 10 spans/trace, {size / 1024:.0f} KiB uncompressed")
    print("routing: traceID; CPU and peak memory: the data-plane process and every process it started\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="ringleader-bench-") as tmp:
        for case in cases:
            count = args.requests * (1000 // case.spans)
            results.append(run_case(Path(tmp), case, by_size[case.spans], count, args.concurrency))
    print(
        "| spans/request | backends | compression | coalescing | spans | processes | data-plane CPU s "
        "| spans / CPU-second | spans / wall-second | exports | peak RSS MiB (main) | refused (retried) | lost |"
    )
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['request_spans']} | {r['backends']} | {r['compression']} | {'on' if r['coalesce'] else 'off'} "
            f"| {r['spans']} | {r['processes']} | {r['cpu_s']:.2f} | {r['spans_per_cpu_s']:,.0f} "
            f"| {r['spans_per_wall_s']:,.0f} | {r['exports']:.0f} "
            f"| {r['peak_rss_mib']:.0f} ({r['main_peak_rss_mib']:.0f}) | {r['refused_spans']:.0f} | {r['failed']:.0f} |"
        )
    print("\n| splitter | CPU ms per 1000-span request |\n|---|---:|")
    for name, ms in split_cost(by_size.get(1000) or [build_request(seed) for seed in range(16)]):
        print(f"| {name} | {ms:.2f} |")
    if not args.no_ring_table:
        print()
        sys.stdout.flush()
        from .ring_table import main as ring_table

        ring_table([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
