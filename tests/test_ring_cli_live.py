"""``ringleader-dataplane ring --config`` names the backend the running data plane actually chose.

A data plane routes traces, logs and metrics to four real sinks; afterwards the ``ring``
subcommand, given the very config file the data plane runs with, must name the sink that
received each key: every service for ``service`` routing (traces hash ``service.name=<v>|``, logs
and metrics the bare name), every trace ID for ``traceID`` routing of traces (raw bytes) and logs
(hex text), every metric name for ``metric`` routing.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from dataplane.ring_cli import run as ring_cli
from tests.harness import (
    DataPlaneProcess,
    SinkProcess,
    decode_requests,
    grpc_export,
    resource_service,
    static_config,
    wait_until,
)

KEYS = 400
GROUPS = {"traces": "resource_spans", "logs": "resource_logs", "metrics": "resource_metrics"}


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[list[SinkProcess]]:
    started = [SinkProcess(tmp_path, f"sink{i}").start() for i in range(4)]
    try:
        yield started
    finally:
        for sink in started:
            sink.stop()


def owners_by_cli(config: Path, signal: str, keys: list[str]) -> dict[str, str]:
    out = io.StringIO()
    assert ring_cli(["--config", str(config), "--signal", signal, "--json", "--", *keys], out) == 0
    return {o["key"]: o["owner"] for o in json.loads(out.getvalue())["owners"]}


def keys_seen(sinks: list[SinkProcess], signal: str, key_of_group: str) -> dict[str, str]:
    """Routing-key value -> endpoint of the sink that received it (each key must reach one sink)."""
    seen: dict[str, str] = {}
    for sink in sinks:
        for req in decode_requests(sink.records(), signal):
            groups = getattr(req, GROUPS[signal])
            for group in groups:
                for value in _values(signal, key_of_group, group):
                    assert seen.setdefault(value, sink.endpoint) == sink.endpoint, f"{value} reached two sinks"
    return seen


def _values(signal: str, key: str, group: object) -> list[str]:
    if key == "service":
        return [resource_service(group.resource)]  # type: ignore[attr-defined]
    if signal == "traces":
        return [s.trace_id.hex() for ss in group.scope_spans for s in ss.spans]  # type: ignore[attr-defined]
    if signal == "logs":
        return [r.trace_id.hex() for sl in group.scope_logs for r in sl.log_records]  # type: ignore[attr-defined]
    return [m.name for sm in group.scope_metrics for m in sm.metrics]  # type: ignore[attr-defined]


def send(dataplane: DataPlaneProcess, signal: str, values: list[str], key: str) -> None:
    """KEYS items, 100 per request; each carries its routing-key value (service, trace ID or metric name)."""
    for start in range(0, len(values), 100):
        chunk = values[start : start + 100]
        if signal == "traces":
            req = ExportTraceServiceRequest()
            for value in chunk:
                rs = req.resource_spans.add()
                _service(rs.resource, value if key == "service" else "svc")
                span = rs.scope_spans.add().spans.add()
                span.trace_id = bytes.fromhex(value) if key == "traceID" else os.urandom(16)
                span.span_id = os.urandom(8)
                span.name = "op"
            payload = req.SerializeToString()
        elif signal == "logs":
            logs = ExportLogsServiceRequest()
            for value in chunk:
                rl = logs.resource_logs.add()
                _service(rl.resource, value if key == "service" else "svc")
                rec = rl.scope_logs.add().log_records.add()
                rec.trace_id = bytes.fromhex(value) if key == "traceID" else os.urandom(16)
                rec.body.string_value = "hello"
            payload = logs.SerializeToString()
        else:
            metrics = ExportMetricsServiceRequest()
            for value in chunk:
                rm = metrics.resource_metrics.add()
                _service(rm.resource, value if key == "service" else "svc")
                metric = rm.scope_metrics.add().metrics.add()
                metric.name = value if key == "metric" else "requests"
                metric.gauge.data_points.add().as_int = 1
            payload = metrics.SerializeToString()
        status, details = grpc_export(dataplane.grpc_endpoint, signal, payload)
        assert status.name == "OK", details


def _service(resource: object, name: str) -> None:
    kv = resource.attributes.add()  # type: ignore[attr-defined]
    kv.key = "service.name"
    kv.value.string_value = name


@pytest.mark.parametrize(
    ("algorithm", "routing_key", "signals"),
    [
        ("ringleader", "service", ("traces", "logs", "metrics")),
        ("upstream", "service", ("traces", "logs", "metrics")),
        ("upstream", "traceID", ("traces", "logs")),
        ("ringleader", "metric", ("metrics",)),
    ],
)
def test_ring_subcommand_names_the_sink_the_data_plane_routed_each_key_to(
    tmp_path: Path, sinks: list[SinkProcess], algorithm: str, routing_key: str, signals: tuple[str, ...]
) -> None:
    config = static_config([s.endpoint for s in sinks], routing_key=routing_key, ring_algorithm=algorithm)
    dataplane = DataPlaneProcess(tmp_path, config).start()
    try:
        for signal in signals:
            if routing_key == "traceID":
                values = [os.urandom(16).hex() for _ in range(KEYS)]
            else:
                values = [f"{signal}-{routing_key}-{i}" for i in range(KEYS)]
            send(dataplane, signal, values, routing_key)
            wait_until(
                lambda s=signal: len(keys_seen(sinks, s, routing_key)) >= KEYS,  # type: ignore[misc]
                60,
                what=f"{KEYS} {signal} keys at the sinks",
            )
            seen = keys_seen(sinks, signal, routing_key)
            assert set(seen) == set(values)
            assert len(set(seen.values())) == len(sinks), "every sink should own some keys"
            predicted = owners_by_cli(dataplane.config_path, signal, values)
            wrong = {k: (seen[k], predicted[k]) for k in values if predicted[k] != seen[k]}
            example = list(wrong.items())[:3]
            assert not wrong, f"{len(wrong)} of {KEYS} {signal} keys: (routed to, ring says) e.g. {example}"
    finally:
        dataplane.stop()
