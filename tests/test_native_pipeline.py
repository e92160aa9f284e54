"""The native pipeline: which configurations it serves, and what Python still sees of it.

The delivery contract itself is proven by the black-box tests (delivery contract,
coalescing, block_on_overflow, ejection, shutdown, memory budget, ...), which run
on the native pipeline with their configurations; this module covers the seams:
the choice between the native pipeline and the Python orchestration, the counts
that cross from native to Python (never behind an answer, histograms complete),
and OTLP/JSON submitted back to the pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from dataplane.config_model import LoadBalancingConfig, QueueConfig, RetryConfig, StaticResolverConfig
from dataplane.pipeline import native_unsupported
from tests.harness import (
    DataPlaneProcess,
    SinkProcess,
    grpc_export,
    http_post,
    running_sinks,
    spans_of,
    static_config,
    trace_request,
    wait_until,
)

_BASE = LoadBalancingConfig(resolver=StaticResolverConfig(("a:4317",)))


def test_the_default_config_is_served_natively() -> None:
    assert native_unsupported(_BASE, ("traces", "logs", "metrics")) is None


@pytest.mark.parametrize(
    ("change", "because"),
    [
        ({"protocol": dataclasses.replace(_BASE.protocol, sending_queue=QueueConfig(enabled=False))}, "sending_queue"),
        ({"sending_queue": QueueConfig(enabled=True)}, "exporter-level sending_queue"),
        ({"retry_on_failure": RetryConfig(enabled=True)}, "exporter-level retry_on_failure"),
        ({"routing_key": "attributes", "routing_attributes": ("http.method",)}, "decode splitter"),
    ],
)
def test_configs_the_native_pipeline_does_not_serve_say_why(change: dict[str, object], because: str) -> None:
    why = native_unsupported(dataclasses.replace(_BASE, **change), ("traces",))  # type: ignore[arg-type]
    assert why is not None and because in why


def test_a_data_plane_logs_which_data_path_it_runs(tmp_path: Path) -> None:
    with running_sinks(tmp_path, 1) as sinks:
        native = DataPlaneProcess(tmp_path, static_config([sinks[0].endpoint]), "native").start()
        python = DataPlaneProcess(
            tmp_path,
            static_config([sinks[0].endpoint], otlp={"sending_queue": {"enabled": False}}),
            "python",
        ).start()
        try:
            assert "data path: native pipeline" in native.log.read_text()
            assert "data path: Python orchestration" in python.log.read_text()
            assert "sending_queue is disabled" in python.log.read_text()
        finally:
            native.stop()
            python.stop()


def test_a_refusal_is_counted_before_its_client_has_the_answer(tmp_path: Path) -> None:
    # Refusals are reported to Python as events; a scrape takes the pending ones first, so a
    # client that got its answer and then scrapes always sees its refusal counted.
    with running_sinks(tmp_path, 1) as sinks:
        dp = DataPlaneProcess(tmp_path, static_config([sinks[0].endpoint])).start()
        try:
            for n in range(1, 31):
                code, _ = grpc_export(dp.grpc_endpoint, "traces", b"\x0a\x05garbage")
                assert code.name == "INVALID_ARGUMENT"
                assert dp.metric("ringleader_requests_refused_total", signal="traces", reason="malformed") == n
        finally:
            dp.stop()


def test_the_latency_histogram_counts_every_export_call(tmp_path: Path) -> None:
    with running_sinks(tmp_path, 2) as sinks:
        dp = DataPlaneProcess(tmp_path, static_config([s.endpoint for s in sinks])).start()
        try:
            for _ in range(20):
                data = trace_request([(os.urandom(16), os.urandom(8)) for _ in range(50)])
                assert grpc_export(dp.grpc_endpoint, "traces", data)[0].name == "OK"
            wait_until(lambda: dp.metric("ringleader_items_exported_total") == 1000, 30, what="1000 spans exported")
            for sink in sinks:
                ep = sink.endpoint
                calls = dp.metric("otelcol_loadbalancer_backend_outcome", endpoint=ep)
                assert calls >= 1
                assert dp.metric("otelcol_loadbalancer_backend_latency_count", endpoint=ep) == calls
                assert dp.metric("otelcol_loadbalancer_backend_latency_bucket", endpoint=ep, le="+Inf") == calls
                assert dp.metric("otelcol_loadbalancer_backend_latency_sum", endpoint=ep) > 0
                buckets = [
                    dp.metric("otelcol_loadbalancer_backend_latency_bucket", endpoint=ep, le=le)
                    for le in ("1.0", "5.0", "25.0", "100.0", "1000.0", "+Inf")
                ]
                assert buckets == sorted(buckets), buckets  # cumulative
            assert dp.metric("ringleader_items_received_total", signal="traces", transport="grpc") == 1000
        finally:
            dp.stop()


def test_otlp_json_is_converted_then_routed_natively(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "sink").start()
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint])).start()
    try:
        trace_ids = [os.urandom(16).hex() for _ in range(10)]
        body = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json"}}]},
                    "scopeSpans": [
                        {"spans": [{"traceId": t, "spanId": os.urandom(8).hex(), "name": "s"} for t in trace_ids]}
                    ],
                }
            ]
        }
        status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", json.dumps(body).encode(), "application/json")
        assert status == 200
        wait_until(lambda: len(spans_of(sink.records())) == 10, 30, what="10 spans at the sink")
        assert sorted(s[0].hex() for s in spans_of(sink.records())) == sorted(trace_ids)
        assert dp.metric("ringleader_items_received_total", signal="traces", transport="http") == 10
        bad, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", b'{"resourceSpans": [', "application/json")
        assert bad == 400
        assert dp.metric("ringleader_requests_refused_total", reason="malformed") == 1
    finally:
        dp.stop()
        sink.stop()
