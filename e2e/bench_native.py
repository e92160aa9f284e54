"""``make bench-native``: CPU per 1000-span request, native wire splitter vs the Python splitters.

Same process, same inputs, same ring: the 16 pre-built 1000-span trace requests of
``make bench`` (``e2e.bench.build_request``: 10 attributes per span, 10 spans per trace,
421 KiB each), split to 4 backends of a ``ringleader`` ring. Each splitter runs
``--rounds`` passes over the 16 requests after one warm-up pass; the figure is CPU time
(``time.process_time``: user + system of this process, so it does not depend on how
busy the shared machine is) per request. The native splitter's time includes building
the Python ``Split`` (one ``bytes`` per part); it releases the interpreter lock while
splitting, but this benchmark runs one thread.

Rows: traces by ``traceID`` (the hot path) and by ``service`` (resource-level key: the
Resource is decoded), for the native splitter, the Python wire path and the decode path.

Usage: ``python -m e2e.bench_native [--rounds N]``
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

from dataplane.ring import build_ring
from dataplane.routing import DecodeSplitter, WireSplitter
from dataplane.routing._native_split import NativeSplitter, ring_table
from e2e.bench import build_request

BACKENDS = 4


def cpu_ms_per_request(splitter: Any, requests: list[bytes], route: Any, rounds: int) -> float:
    for data in requests:  # warm-up: buffers grown, caches filled
        splitter.split(data, route)
    start = time.process_time()
    for _ in range(rounds):
        for data in requests:
            splitter.split(data, route)
    return (time.process_time() - start) * 1000 / (rounds * len(requests))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=50, help="passes over the 16 requests per splitter")
    args = parser.parse_args()
    requests = [build_request(seed) for seed in range(16)]
    ring = build_ring("ringleader", [f"10.0.0.{i}:4317" for i in range(BACKENDS)])
    table = ring_table(ring)
    print(
        f"python {platform.python_version()}, {platform.machine()}, {len(requests)} requests of 1000 spans, "
        f"{sum(map(len, requests)) // len(requests) // 1024} KiB each, {BACKENDS} backends, {args.rounds} rounds\n"
    )
    print("| key | splitter | CPU ms per 1000-span request | vs native |\n|---|---|---:|---:|")
    for key in ("traceID", "service"):
        native = cpu_ms_per_request(NativeSplitter("traces", key, seed=1), requests, table, args.rounds)
        rows = [
            ("native (Rust)", native),
            ("wire (Python)", cpu_ms_per_request(WireSplitter("traces", key), requests, ring.lookup, args.rounds)),
            (
                "decode (Python)",
                cpu_ms_per_request(DecodeSplitter("traces", key), requests, ring.lookup, max(1, args.rounds // 5)),
            ),
        ]
        for name, ms in rows:
            print(f"| {key} | {name} | {ms:.3f} | {ms / native:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
