"""The exact bytes routing hashes for a routing-key value, for tools that name a key's owner.

``key_bytes("traces", "service", "checkout")`` returns ``b"service.name=checkout|"``: the
``ring`` subcommand asks the ring about these bytes, so it names the backend routing would pick.

The bytes are not re-derived here: a one-item request carrying the value is built and run through
the same splitter the data plane uses, and the key it hands to the ring is captured. A tool and the
data path therefore cannot disagree about how a key is built, whatever the signal or routing key.
"""

from __future__ import annotations

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ..config_model import ROUTING_KEYS_BY_SIGNAL

# What a value means for each routing key (also the ``ring --help`` text).
VALUE_FORMS = {
    "traceID": "a trace ID as 32 hex characters",
    "service": "a service.name",
    "metric": "a metric name",
    "resource": "resource attributes as name=value pairs separated by commas",
    "attributes": "attribute values as name=value pairs separated by commas",
}


class UnroutableValueError(ValueError):
    """The value cannot be turned into a routing key (bad trace ID, streamID, ...)."""


def key_bytes(signal: str, routing_key: str, value: str, routing_attributes: tuple[str, ...] = ()) -> bytes:
    """The bytes the data plane hashes for ``value`` under ``signal``'s ``routing_key``."""
    valid = ROUTING_KEYS_BY_SIGNAL.get(signal, ())
    if routing_key not in valid:
        raise UnroutableValueError(
            f"{signal} cannot be routed by {routing_key!r} (valid for {signal}: {', '.join(valid)})"
        )
    if routing_key not in VALUE_FORMS:
        raise UnroutableValueError(
            f"routing key {routing_key!r} depends on a whole data point; pass the hashed key with --hex instead"
        )
    request = _request(signal, routing_key, value, routing_attributes)
    seen: list[bytes] = []

    def capture(key: bytes) -> int:
        seen.append(bytes(key))
        return 0

    from . import make_splitter  # the package imports this module

    splitter = make_splitter(signal, routing_key, routing_attributes)
    splitter.split(request.SerializeToString(), capture)
    if len(seen) != 1:  # pragma: no cover - one item always yields one key
        raise UnroutableValueError(f"routing {signal} by {routing_key} looked up {len(seen)} keys, expected 1")
    return seen[0]


def _request(signal: str, routing_key: str, value: str, routing_attributes: tuple[str, ...]) -> Message:
    resource = Resource()
    trace_id = b""
    if routing_key == "traceID":
        try:
            trace_id = bytes.fromhex(value)
        except ValueError:
            trace_id = b""
        if len(trace_id) != 16:
            raise UnroutableValueError(f"{value!r} is not a trace ID (32 hex characters)")
    elif routing_key == "service":
        _add(resource, "service.name", value)
    elif routing_key in ("resource", "attributes"):
        # For ``attributes``, names left out are absent, which is part of the key too (``name=|``).
        for k, v in _pairs(value):
            _add(resource, k, v)
    if signal == "traces":
        traces = ExportTraceServiceRequest()
        rs = traces.resource_spans.add()
        rs.resource.CopyFrom(resource)
        span = rs.scope_spans.add().spans.add()
        span.trace_id = trace_id or bytes(range(1, 17))
        span.span_id = bytes(range(1, 9))
        span.name = "ringleader-probe"
        return traces
    if signal == "logs":
        logs = ExportLogsServiceRequest()
        rl = logs.resource_logs.add()
        rl.resource.CopyFrom(resource)
        record = rl.scope_logs.add().log_records.add()
        record.trace_id = trace_id or bytes(range(1, 17))
        return logs
    if signal == "metrics":
        metrics = ExportMetricsServiceRequest()
        rm = metrics.resource_metrics.add()
        rm.resource.CopyFrom(resource)
        metric = rm.scope_metrics.add().metrics.add()
        metric.name = value if routing_key == "metric" else "ringleader.probe"
        metric.gauge.data_points.add().as_int = 1
        return metrics
    raise UnroutableValueError(f"unknown signal {signal!r}")


def _pairs(value: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise UnroutableValueError(f"{item!r} is not name=value")
        pairs.append((name, val))
    return pairs


def _add(resource: Resource, name: str, value: str) -> None:
    kv: KeyValue = resource.attributes.add()
    kv.key = name
    kv.value.string_value = value
