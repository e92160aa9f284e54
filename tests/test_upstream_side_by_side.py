"""``ring_algorithm: upstream`` routes every key exactly like the real upstream collector v0.161.

The upstream OpenTelemetry Collector (built from Go modules, e2e/build_otelcol.sh) runs its
``load_balancing`` exporter with a static resolver in front of N real gRPC sinks. Traffic goes
through it: telemetrygen (the upstream Go SDK) for trace-ID routing, raw OTLP requests with one
resource per service for service routing. Each sink records what it got, so for every trace and
every service we know which backend upstream chose; ``ringleader-dataplane ring --algorithm
upstream`` must name that backend for every key, and the older upstream ring must not (that shows
the comparison can fail).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.ring_cli import run as ring_cli
from e2e.otelcol import Collector, free_port, run_telemetrygen
from tests.harness import SinkProcess, grpc_export, spans_of, wait_until

MAX_SINKS = 8


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SinkProcess]]:
    workdir = tmp_path_factory.mktemp("sinks")
    started = [SinkProcess(workdir, f"sink{i}").start() for i in range(MAX_SINKS)]
    try:
        yield started
    finally:
        for sink in started:
            sink.stop()


def load_balancing_collector(
    workdir: Path, bin_dir: Path, endpoints: list[str], routing_key: str
) -> tuple[Collector, str]:
    """The upstream collector as tier 1: OTLP/gRPC in, load_balancing (static resolver) out."""
    grpc_port = free_port()
    config: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
        "exporters": {
            "load_balancing": {
                "routing_key": routing_key,
                "protocol": {"otlp": {"tls": {"insecure": True}, "timeout": "10s"}},
                "resolver": {"static": {"hostnames": endpoints}},
            }
        },
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["load_balancing"]}}},
    }
    return Collector(config, workdir, bin_dir=bin_dir).start(), f"127.0.0.1:{grpc_port}"


def received(sinks: list[SinkProcess], services: set[str] | None = None, prefix: str = "") -> dict[str, list[Any]]:
    """Spans each sink received, by endpoint, keeping those of ``services`` or service ``prefix``."""
    out: dict[str, list[Any]] = {}
    for sink in sinks:
        spans = [
            s for s in spans_of(sink.records()) if (services is not None and s[2] in services) or
            (prefix and s[2].startswith(prefix))
        ]
        out[sink.endpoint] = spans
    return out


def owners_by_cli(endpoints: list[str], algorithm: str, keys: list[str], *extra: str) -> dict[str, str]:
    """Ask ``ringleader-dataplane ring`` (in process) for the owner of every key."""
    out = io.StringIO()
    argv = ["--endpoints", ",".join(endpoints), "--algorithm", algorithm, "--json", *extra, "--", *keys]
    assert ring_cli(argv, out) == 0
    return {o["key"]: o["owner"] for o in json.loads(out.getvalue())["owners"]}


def agreement(chosen: dict[str, str], predicted: dict[str, str]) -> int:
    return sum(predicted[k] == v for k, v in chosen.items())


@pytest.mark.parametrize("backends", [3, 5, 8])
def test_upstream_ring_names_the_backend_the_real_collector_chose_for_every_trace(
    tmp_path: Path, otelcol_bin_dir: Path, sinks: list[SinkProcess], backends: int
) -> None:
    chosen_sinks = sinks[:backends]
    endpoints = [s.endpoint for s in chosen_sinks]
    service = f"lb-traceid-{backends}-{os.getpid()}"
    traces = 1500
    collector, target = load_balancing_collector(tmp_path, otelcol_bin_dir, endpoints, "traceID")
    try:
        # Paced: with --rate 0 telemetrygen drops spans in its own SDK. One parent + one child span per trace.
        run_telemetrygen(
            ["traces", "--otlp-endpoint", target, "--otlp-insecure", "--traces", str(traces), "--rate", "1000",
             "--service", service, "--child-spans", "1"],
            bin_dir=otelcol_bin_dir,
        )
        wait_until(
            lambda: sum(len(v) for v in received(chosen_sinks, {service}).values()) >= 2 * traces,
            120,
            what=f"{2 * traces} spans at the sinks",
        )
    finally:
        collector.stop()

    got = received(chosen_sinks, {service})
    assert sum(len(v) for v in got.values()) == 2 * traces, "a span was lost or duplicated on the way"
    chosen: dict[str, str] = {}
    for endpoint, spans in got.items():
        for trace_id, *_ in spans:
            assert chosen.setdefault(trace_id.hex(), endpoint) == endpoint, "upstream split a trace"
    assert len(chosen) == traces
    assert all(got.values()), "some backend got nothing: the comparison would be weak"

    predicted = owners_by_cli(endpoints, "upstream", sorted(chosen))
    assert agreement(chosen, predicted) == traces
    older = owners_by_cli(endpoints, "upstream-v0.152", sorted(chosen))
    print(f"\n{backends} backends, {traces} traces: upstream {agreement(chosen, predicted)}, "
          f"upstream-v0.152 {agreement(chosen, older)}")
    assert agreement(chosen, older) < 0.6 * traces, "the older upstream ring cannot tell the releases apart"


@pytest.mark.parametrize("backends", [2, 4, 7])
def test_upstream_ring_names_the_backend_the_real_collector_chose_for_every_service(
    tmp_path: Path, otelcol_bin_dir: Path, sinks: list[SinkProcess], backends: int
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    chosen_sinks = sinks[:backends]
    endpoints = [s.endpoint for s in chosen_sinks]
    prefix = f"svc-{backends}-{os.getpid()}-"
    services = [f"{prefix}{i}" for i in range(1200)]
    collector, target = load_balancing_collector(tmp_path, otelcol_bin_dir, endpoints, "service")
    try:
        for start in range(0, len(services), 100):
            req = ExportTraceServiceRequest()
            for n, name in enumerate(services[start : start + 100], start):
                rs = req.resource_spans.add()
                kv = rs.resource.attributes.add()
                kv.key, kv.value.string_value = "service.name", name
                span = rs.scope_spans.add().spans.add()
                span.trace_id = n.to_bytes(8, "big") + os.urandom(8)
                span.span_id = os.urandom(8)
                span.name = "op"
            status, details = grpc_export(target, "traces", req.SerializeToString())
            assert status.name == "OK", details
        wait_until(
            lambda: sum(len(v) for v in received(chosen_sinks, prefix=prefix).values()) >= len(services),
            120,
            what=f"{len(services)} spans at the sinks",
        )
    finally:
        collector.stop()

    got = received(chosen_sinks, prefix=prefix)
    chosen = {svc: endpoint for endpoint, spans in got.items() for _, _, svc, _ in spans}
    assert len(chosen) == len(services) == sum(len(v) for v in got.values())
    assert all(got.values()), "some backend got nothing: the comparison would be weak"

    predicted = owners_by_cli(endpoints, "upstream", services, "--routing-key", "service")
    assert agreement(chosen, predicted) == len(services)
    # The bug this guards against: hashing the bare name instead of 'service.name=<name>|'.
    bare = owners_by_cli(endpoints, "upstream", services, "--text")
    print(f"\n{backends} backends, {len(services)} services: service.name=<v>| {agreement(chosen, predicted)}, "
          f"bare name {agreement(chosen, bare)}")
    assert agreement(chosen, bare) < 0.75 * len(services)
