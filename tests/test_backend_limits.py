"""Backends that are picky about size and load: nothing accepted is refused later for size,
and ``RESOURCE_EXHAUSTED`` is retried only when the backend says when (OTLP spec).

- A 10 MiB request over HTTP (the receiver allows 20 MiB) for a backend with a
  collector's default 4 MiB gRPC limit: accepted, cut into requests under 4 MiB
  before queueing, every span delivered exactly once, nothing failed.
- A request with one span larger than ``max_request_size``: refused to the
  client (413 / RESOURCE_EXHAUSTED, ``item_too_large``), nothing queued.
- ``RESOURCE_EXHAUSTED`` without ``RetryInfo``: a permanent failure, counted
  once, not retried for minutes. With ``RetryInfo``: retried after at least the
  delay the backend asked for, and delivered.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import grpc

from e2e.bench import build_request
from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, http_post, spans_of, static_config, wait_until

FOUR_MIB = 4 * 1024 * 1024


def test_a_request_larger_than_the_backend_limit_is_cut_before_queueing_and_delivered(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "tier2", "--max-recv-msg-size", str(FOUR_MIB)).start()
    cfg = static_config([sink.endpoint], otlp={"retry_on_failure": {"initial_interval": "100ms"}})
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        payload = build_request(seed=21, spans=40_000)
        assert 2 * FOUR_MIB < len(payload) < 20 * 1024 * 1024
        status, _, body = http_post(f"{dp.http_endpoint}/v1/traces", payload)
        assert status == 200, body
        wait_until(lambda: dp.metric("ringleader_items_exported_total") == 40_000, 60, what="every span exported")
        requests = sink.records()
        assert len(requests) >= 3
        assert all(len(p) <= FOUR_MIB for _, p in requests)
        spans = Counter(sid for _, sid, _, _ in spans_of(requests))
        assert len(spans) == 40_000 and max(spans.values()) == 1
        assert dp.metric("ringleader_items_failed_total") == 0
        assert dp.metric("otelcol_loadbalancer_backend_outcome", success="false") == 0
    finally:
        dp.stop()
        sink.stop()


def test_a_single_item_over_the_export_limit_is_refused_whole(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "tier2").start()
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint], otlp={"max_request_size": "4KiB"})).start()
    try:
        payload = build_request(seed=22, spans=4, attributes=300)  # each span is about 10 KiB on its own
        status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", payload)
        assert status == 413
        code, _ = grpc_export(dp.grpc_endpoint, "traces", payload)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dp.metric("ringleader_items_refused_total", reason="item_too_large") == 8
        # Small requests still pass.
        assert grpc_export(dp.grpc_endpoint, "traces", build_request(seed=23, spans=4, attributes=1))[0].name == "OK"
        wait_until(lambda: len(spans_of(sink.records())) == 4, 20, what="the small request delivered")
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()
        sink.stop()


def test_resource_exhausted_without_retry_info_is_not_retried(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "tier2", "--reject-all", "RESOURCE_EXHAUSTED").start()
    otlp = {"retry_on_failure": {"initial_interval": "50ms", "max_interval": "50ms", "max_elapsed_time": "60s"}}
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint], otlp=otlp)).start()
    try:
        assert grpc_export(dp.grpc_endpoint, "traces", build_request(seed=24, spans=10))[0] == grpc.StatusCode.OK
        wait_until(
            lambda: dp.metric("ringleader_items_failed_total", reason="RESOURCE_EXHAUSTED") == 10,
            20,
            what="the permanent failure to be counted",
        )
        assert dp.metric("otelcol_loadbalancer_backend_outcome", success="false") == 1
        assert dp.metric("ringleader_queue_items") == 0
    finally:
        dp.stop()
        sink.stop()


def test_resource_exhausted_with_retry_info_is_retried_after_the_delay_asked_for(tmp_path: Path) -> None:
    timing = tmp_path / "tier2.timing"
    sink = SinkProcess(
        tmp_path,
        "tier2",
        *("--fail-first", "2", "--fail-code", "RESOURCE_EXHAUSTED", "--retry-info", "0.5", "--timing", str(timing)),
    ).start()
    otlp = {"retry_on_failure": {"initial_interval": "10ms", "max_interval": "10ms"}}
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint], otlp=otlp)).start()
    try:
        assert grpc_export(dp.grpc_endpoint, "traces", build_request(seed=25, spans=10))[0] == grpc.StatusCode.OK
        wait_until(lambda: dp.metric("ringleader_items_exported_total") == 10, 30, what="delivery after retries")
        starts = sorted(int(line.split()[0]) for line in timing.read_text().splitlines())
        assert len(starts) == 3
        # The backoff alone would wait 10 ms; the backend asked for 500 ms.
        assert all(b - a >= 500_000_000 for a, b in itertools.pairwise(starts))
        assert len(spans_of(sink.records())) == 10
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()
        sink.stop()
