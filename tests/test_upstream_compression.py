"""The real upstream collector exports to Ringleader with every compression it offers, over gRPC and HTTP.

grpcio's server refused ``zstd`` and ``snappy`` from gRPC clients (they lost all their data);
the native receivers decode every codec on both transports. The upstream collector v0.161
(``e2e/build_otelcol.sh``, cached) receives telemetrygen's spans and exports them to Ringleader
with its ``otlp_grpc`` or ``otlp_http`` exporter and ``compression: zstd | snappy | gzip``;
Ringleader routes them to two real gRPC sinks. Every span arrives exactly once (counted by span
ID), nothing is refused, and Ringleader's own counters agree.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import DataPlaneProcess, SinkProcess, running_sinks, spans_of, static_config, wait_until

TRACES = 40
SPANS = 2 * TRACES  # telemetrygen's traces have a parent and one child


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SinkProcess]]:
    with running_sinks(tmp_path_factory.mktemp("upstream-compression-sinks"), 2) as started:
        yield started


@pytest.fixture(scope="module")
def dp(tmp_path_factory: pytest.TempPathFactory, sinks: list[SinkProcess]) -> Iterator[DataPlaneProcess]:
    process = DataPlaneProcess(
        tmp_path_factory.mktemp("upstream-compression-dp"), static_config([s.endpoint for s in sinks])
    ).start()
    yield process
    process.stop()


def _spans_of_service(sinks: list[SinkProcess], service: str) -> collections.Counter[bytes]:
    return collections.Counter(
        span_id for sink in sinks for _, span_id, svc, _ in spans_of(sink.records()) if svc == service
    )


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("compression", ["zstd", "snappy", "gzip"])
def test_every_span_the_upstream_collector_compresses_arrives_exactly_once(
    tmp_path: Path, dp: DataPlaneProcess, sinks: list[SinkProcess], transport: str, compression: str
) -> None:
    from e2e.otelcol import Collector, ensure_binaries, free_port, run_telemetrygen

    bin_dir = ensure_binaries()
    in_port = free_port()
    exporter: dict[str, Any]
    if transport == "grpc":
        name = "otlp_grpc"
        exporter = {"endpoint": dp.grpc_endpoint, "tls": {"insecure": True}}
    else:
        name = "otlp_http"
        exporter = {"endpoint": dp.http_endpoint}
    exporter.update({"compression": compression, "retry_on_failure": {"enabled": False}})
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{in_port}"}}}},
        "exporters": {name: exporter},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": [name]}}},
    }
    service = f"upstream-{transport}-{compression}"
    received_before = dp.metric("ringleader_items_received_total", signal="traces", transport=transport)
    with Collector(config, tmp_path, bin_dir=bin_dir):
        run_telemetrygen(
            ["traces", "--otlp-endpoint", f"127.0.0.1:{in_port}", "--otlp-insecure", "--traces", str(TRACES),
             "--rate", "200", "--service", service],
            bin_dir=bin_dir,
        )  # fmt: skip
        wait_until(
            lambda: sum(_spans_of_service(sinks, service).values()) >= SPANS,
            60,
            what=f"{SPANS} spans sent over {transport} with {compression}",
        )
    spans = _spans_of_service(sinks, service)
    assert len(spans) == SPANS and max(spans.values()) == 1, spans.most_common(3)
    assert dp.metric("ringleader_items_received_total", signal="traces", transport=transport) - received_before == SPANS
    for reason in ("unsupported_encoding", "malformed", "too_large"):
        assert dp.metric("ringleader_requests_refused_total", reason=reason) == 0, reason
