"""``make demo``: the whole tier 1 on your laptop, in one command.

Starts three local OTLP backends (``e2e.sink``), the data plane with a static
resolver (the embedded config below), and a load generator built on the
OpenTelemetry Python SDK that plays four services producing cross-service
traces over gRPC and HTTP. Then it prints, per backend: spans, traces, traces
also seen on another backend (must be 0: that is the point of Ringleader) and
the share of traffic, and exits (non-zero if any trace was split or any span
lost or duplicated).
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from pathlib import Path

from tests.harness import DataPlaneProcess, SinkProcess, spans_of, static_config, wait_until

from .loadgen import ProducedSpan, send_traces

TRACES = 600
SPANS_PER_TRACE = 8


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ringleader-demo-") as tmp:
        work = Path(tmp)
        backends = [SinkProcess(work, f"backend-{i + 1}").start() for i in range(3)]
        config = static_config([b.endpoint for b in backends])
        dataplane = DataPlaneProcess(work, config)
        dataplane_log = dataplane.log
        try:
            dataplane.start()
            print(
                f"data plane: OTLP gRPC {dataplane.grpc_endpoint}, HTTP {dataplane.http_endpoint}, "
                f"metrics http://127.0.0.1:{dataplane.admin_port}/metrics"
            )
            print("backends:   " + ", ".join(b.endpoint for b in backends))
            started = time.monotonic()
            produced = send_traces(
                dataplane.grpc_endpoint, "grpc", traces=TRACES // 2, spans_per_trace=SPANS_PER_TRACE, seed=1
            )
            produced += send_traces(
                dataplane.http_endpoint, "http", traces=TRACES // 2, spans_per_trace=SPANS_PER_TRACE, seed=2
            )
            print(
                f"load generator: {len(produced)} spans in {len({p.trace_id for p in produced})} traces from "
                f"{len({p.service for p in produced})} services (OpenTelemetry SDK, gRPC + HTTP) "
                f"in {time.monotonic() - started:.1f}s"
            )
            wait_until(
                lambda: sum(len(spans_of(b.records())) for b in backends) >= len(produced),
                60,
                what="every span at a backend",
            )
        except Exception as exc:
            print(f"demo failed: {exc}\n--- data plane log (tail) ---\n{dataplane_log.read_text()[-2000:]}")
            return 1
        finally:
            dataplane.stop()
            for b in backends:
                b.stop()
        return report(backends, produced)


def report(backends: list[SinkProcess], produced: list[ProducedSpan]) -> int:
    received = {b.name: spans_of(b.records()) for b in backends}
    owners: dict[bytes, set[str]] = collections.defaultdict(set)
    for name, spans in received.items():
        for trace_id, *_ in spans:
            owners[trace_id].add(name)
    total = sum(len(s) for s in received.values())
    rows = []
    for name, spans in received.items():
        traces = {t for t, *_ in spans}
        split = sum(1 for t in traces if len(owners[t]) > 1)
        rows.append((name, len(spans), len(traces), split, len(spans) / total if total else 0.0))
    print()
    print(f"{'backend':<12} {'spans':>8} {'traces':>8} {'traces also elsewhere':>22} {'share':>8}")
    for name, spans_n, traces_n, split, share in rows:
        print(f"{name:<12} {spans_n:>8} {traces_n:>8} {split:>22} {share:>7.1%}")
    span_ids = collections.Counter(sid for spans in received.values() for _, sid, _, _ in spans)
    lost = len({p.span_id for p in produced} - set(span_ids))
    duplicated = sum(1 for n in span_ids.values() if n > 1)
    split_traces = sum(1 for o in owners.values() if len(o) > 1)
    print(f"{'total':<12} {total:>8} {len(owners):>8} {split_traces:>22} {'100.0%':>8}")
    print(
        f"\nspans produced {len(produced)}, received {total}, lost {lost}, duplicated {duplicated}; "
        f"traces split across backends: {split_traces}"
    )
    return 0 if (lost == 0 and duplicated == 0 and split_traces == 0 and total == len(produced)) else 1


if __name__ == "__main__":
    sys.exit(main())
