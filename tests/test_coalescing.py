"""Coalescing: parts queued for one backend leave as one export, within the size limit.

Twenty small requests sent together to a data plane with one backend arrive as far
fewer exports, every span exactly once; with a small ``max_size`` no export is larger
than it (a single part larger than the limit excepted, which is sent as it is).
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, spans_of, static_config, trace_request, wait_until


def _send_together(endpoint: str, requests: list[bytes]) -> None:
    with ThreadPoolExecutor(len(requests)) as pool:
        codes = list(pool.map(lambda r: grpc_export(endpoint, "traces", r)[0], requests))
    assert codes == [grpc.StatusCode.OK] * len(requests), codes


def _run(tmp_path: Path, coalesce: dict[str, object]) -> tuple[list[bytes], int]:
    sink = SinkProcess(tmp_path, "backend").start()
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint], coalesce=coalesce)).start()
    try:
        spans = [[(os.urandom(16), os.urandom(8)) for _ in range(5)] for _ in range(20)]
        _send_together(dp.grpc_endpoint, [trace_request(s) for s in spans])
        wanted = {sid for request in spans for _, sid in request}
        wait_until(lambda: len(spans_of(sink.records())) >= len(wanted), 30, what="100 spans at the backend")
        counts = collections.Counter(sid for _, sid, _, _ in spans_of(sink.records()))
        assert set(counts) == wanted and max(counts.values()) == 1, "lost or duplicated spans"
        assert dp.metric("ringleader_items_exported_total") == 100
        return [payload for _, payload in sink.records()], int(dp.metric("otelcol_loadbalancer_backend_outcome"))
    finally:
        dp.stop()
        sink.stop()


def test_parts_sent_together_leave_as_fewer_exports_and_every_span_arrives_once(tmp_path: Path) -> None:
    exports, calls = _run(tmp_path, {"max_size": "1MiB", "max_delay": "300ms"})
    assert len(exports) < 20 // 2, f"{len(exports)} exports for 20 requests"
    assert calls == len(exports)


def test_with_coalescing_off_each_part_is_its_own_export(tmp_path: Path) -> None:
    exports, _ = _run(tmp_path, {"max_size": 0})
    assert len(exports) == 20


def test_no_coalesced_export_is_larger_than_max_size(tmp_path: Path) -> None:
    one = len(trace_request([(os.urandom(16), os.urandom(8)) for _ in range(5)]))
    limit = 3 * one  # room for three parts, not four
    exports, _ = _run(tmp_path, {"max_size": limit, "max_delay": "300ms"})
    assert all(len(p) <= limit for p in exports), [len(p) for p in exports]
    assert len(exports) < 20  # still coalesced, in threes
