"""Hypothesis strategies for OTLP export requests, and the tools to reason about splits.

The routing property tests (tests/test_routing_properties.py) and the fuzz tests
(tests/test_wire_fuzz.py) share what is here:

- :func:`requests` draws a realistic export request of one signal as a protobuf
  message: several resources (with and without ``service.name``, attribute values
  of every type), several scopes, schema URLs, spans with 16-byte trace IDs drawn
  from a small pool (so traces repeat across resources) and some empty ones, log
  records with and without trace IDs, metrics of every type with several data
  points. Sizes stay small so that hundreds of examples run in seconds.
- :func:`atoms` flattens a request into the units that routing must neither lose
  nor duplicate: one per span / log record / metric data point, each carrying its
  resource, scope and schema URLs, so that "the multiset of atoms is unchanged"
  also proves that every item is still under an equal resource and scope.
- :func:`raw_fields` and the ``enc_*`` helpers read and write the protobuf wire
  format independently of ``dataplane.wire``, to build inputs the generators never
  produce (unknown fields, non-canonical varints, repeated singular fields) and to
  inspect what the wire path wrote.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mmh3
from google.protobuf.message import Message
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

SIGNALS = ("traces", "logs", "metrics")

# Every key upstream offers per signal, plus ``resource`` for traces, which the wire path also serves.
ALL_KEYS: dict[str, tuple[str, ...]] = {
    "traces": ("traceID", "service", "resource", "attributes"),
    "logs": ("traceID", "service", "resource", "attributes"),
    "metrics": ("metric", "service", "resource", "streamID", "attributes"),
}
# The (signal, key) pairs WireSplitter serves.
WIRE_KEYS: tuple[tuple[str, str], ...] = tuple(
    (signal, key)
    for signal in SIGNALS
    for key in ALL_KEYS[signal]
    if key in ("traceID", "metric", "service", "resource")
)
# A mix of resource, scope, item and pseudo attributes, some present on every item, some on few.
ROUTING_ATTRIBUTES = ("service.name", "http.method", "span.kind", "log.severity", "tenant")

REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
FIELDS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}
METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def hash_lookup(backends: int) -> Callable[[bytes], int]:
    """The lookup the tests route with: a seeded murmur3 hash, modulo the backend count."""
    return lambda key: mmh3.hash(key, 7, False) % backends


# --------------------------------------------------------------------------------------
# Values and attributes
# --------------------------------------------------------------------------------------

_text = st.text(alphabet="abcdefgh-./é", max_size=8)
# NaN never equals itself, which would make equal messages compare unequal; infinities are fine.
_doubles = st.floats(allow_nan=False, width=64)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _scalar_values() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        _text.map(lambda v: AnyValue(string_value=v)),
        _int64.map(lambda v: AnyValue(int_value=v)),
        _doubles.map(lambda v: AnyValue(double_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.binary(max_size=6).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )


any_values: st.SearchStrategy[AnyValue] = st.recursive(
    _scalar_values(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(_text, inner), max_size=3).map(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
        ),
    ),
    max_leaves=4,
)

_attribute_names = st.sampled_from(("http.method", "tenant", "host.name", "k8s.pod.name", "region", "x"))


def attributes(max_size: int = 3) -> st.SearchStrategy[list[KeyValue]]:
    return st.lists(st.builds(KeyValue, key=_attribute_names, value=any_values), max_size=max_size)


_service_names = st.sampled_from(("frontend", "checkout", "cart", "", "ad-service-7"))
# service.name as a string (the usual), absent, or of another type (rendered like upstream renders it).
_service_attr: st.SearchStrategy[list[KeyValue]] = st.one_of(
    _service_names.map(lambda v: [KeyValue(key="service.name", value=AnyValue(string_value=v))]),
    st.just([]),
    st.just([]),
    _scalar_values().map(lambda v: [KeyValue(key="service.name", value=v)]),
)


@st.composite
def resources(draw: st.DrawFn) -> Resource:
    attrs = draw(_service_attr) + draw(attributes())
    draw(st.randoms(use_true_random=False)).shuffle(attrs)
    return Resource(attributes=attrs, dropped_attributes_count=draw(st.sampled_from((0, 0, 3))))


scopes = st.builds(
    InstrumentationScope,
    name=st.sampled_from(("", "io.opentelemetry.http", "bench")),
    version=st.sampled_from(("", "1.2.3")),
    attributes=attributes(2),
)
schema_urls = st.sampled_from(("", "", "https://opentelemetry.io/schemas/1.21.0", "https://example.com/s"))

# A small pool, so that spans and log records of one trace meet across resources and scopes.
_TRACE_IDS = [random.Random(i).randbytes(16) for i in range(6)] + [bytes(16)]
trace_ids = st.one_of(st.sampled_from(_TRACE_IDS), st.binary(min_size=16, max_size=16), st.just(b""))

# --------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------

spans = st.builds(
    Span,
    trace_id=trace_ids,
    span_id=st.binary(min_size=8, max_size=8),
    parent_span_id=st.sampled_from((b"", b"\x01" * 8)),
    name=st.sampled_from(("GET /", "POST /cart", "db.query", "")),
    kind=st.integers(0, 5),
    start_time_unix_nano=st.integers(0, 2**64 - 1),
    end_time_unix_nano=st.integers(0, 2**64 - 1),
    attributes=attributes(),
    events=st.lists(st.builds(Span.Event, name=_text, attributes=attributes(1)), max_size=1),
    status=st.builds(Status, code=st.integers(0, 2), message=_text),
)

log_records = st.builds(
    LogRecord,
    time_unix_nano=st.integers(0, 2**64 - 1),
    severity_number=st.integers(0, 24),
    severity_text=st.sampled_from(("", "INFO", "ERROR")),
    body=any_values,
    attributes=attributes(),
    trace_id=st.one_of(trace_ids, st.just(b"")),
    span_id=st.sampled_from((b"", b"\x02" * 8)),
    flags=st.integers(0, 2**32 - 1),
)

_point_attrs = attributes(2)
_times = {"start_time_unix_nano": st.integers(0, 2**40), "time_unix_nano": st.integers(0, 2**40)}
_number_points = st.one_of(
    st.builds(NumberDataPoint, attributes=_point_attrs, as_int=_int64, **_times),
    st.builds(NumberDataPoint, attributes=_point_attrs, as_double=_doubles, **_times),
)
_histogram_points = st.builds(
    HistogramDataPoint,
    attributes=_point_attrs,
    count=st.integers(0, 100),
    sum=_doubles,
    bucket_counts=st.lists(st.integers(0, 10), max_size=3),
    explicit_bounds=st.lists(_doubles, max_size=2),
    **_times,
)
_exp_points = st.builds(
    ExponentialHistogramDataPoint,
    attributes=_point_attrs,
    count=st.integers(0, 100),
    scale=st.integers(-10, 20),
    zero_count=st.integers(0, 5),
    positive=st.builds(
        ExponentialHistogramDataPoint.Buckets,
        offset=st.integers(-5, 5),
        bucket_counts=st.lists(st.integers(0, 10), max_size=3),
    ),
    **_times,
)
_summary_points = st.builds(
    SummaryDataPoint,
    attributes=_point_attrs,
    count=st.integers(0, 100),
    sum=_doubles,
    quantile_values=st.lists(
        st.builds(SummaryDataPoint.ValueAtQuantile, quantile=st.floats(0, 1), value=_doubles), max_size=2
    ),
    **_times,
)
_temporality = st.integers(0, 2)


def _points(s: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    # Mostly one or more points; a metric with none is legal OTLP and carries no items.
    return st.one_of(st.lists(s, min_size=1, max_size=4), st.lists(s, max_size=0))


_metric_data: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.builds(Gauge, data_points=_points(_number_points)).map(lambda d: {"gauge": d}),
    st.builds(
        Sum, data_points=_points(_number_points), aggregation_temporality=_temporality, is_monotonic=st.booleans()
    ).map(lambda d: {"sum": d}),
    st.builds(Histogram, data_points=_points(_histogram_points), aggregation_temporality=_temporality).map(
        lambda d: {"histogram": d}
    ),
    st.builds(ExponentialHistogram, data_points=_points(_exp_points), aggregation_temporality=_temporality).map(
        lambda d: {"exponential_histogram": d}
    ),
    st.builds(Summary, data_points=_points(_summary_points)).map(lambda d: {"summary": d}),
    st.just({}),  # no data at all
)


@st.composite
def metrics(draw: st.DrawFn) -> Metric:
    return Metric(
        name=draw(st.sampled_from(("http.server.duration", "requests", "queue.size", "", "cpu"))),
        description=draw(st.sampled_from(("", "how long"))),
        unit=draw(st.sampled_from(("", "ms", "1"))),
        **draw(_metric_data),
    )


# --------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------

_ITEMS: dict[str, st.SearchStrategy[Any]] = {"traces": spans, "logs": log_records, "metrics": metrics()}
_GROUPS: dict[str, tuple[type[Message], type[Message]]] = {
    "traces": (ResourceSpans, ScopeSpans),
    "logs": (ResourceLogs, ScopeLogs),
    "metrics": (ResourceMetrics, ScopeMetrics),
}


_present = st.sampled_from((True, True, True, True, False))


@st.composite
def requests(draw: st.DrawFn, signal: str, max_resources: int = 3, max_scopes: int = 3, max_items: int = 6) -> Any:
    """One export request of ``signal`` as a protobuf message (see module docs)."""
    group_type, scope_type = _GROUPS[signal]
    groups_field, scopes_field, items_field = FIELDS[signal]
    groups = []
    for _ in range(draw(st.integers(0, max_resources))):
        scope_groups = []
        for _ in range(draw(st.integers(0, max_scopes))):
            items = draw(st.lists(_ITEMS[signal], max_size=max_items))
            scope_group: Any = scope_type(schema_url=draw(schema_urls), **{items_field: items})  # type: ignore[call-arg]
            if draw(_present):  # an absent scope must stay absent, not become an empty one
                scope_group.scope.CopyFrom(draw(scopes))
            scope_groups.append(scope_group)
        group: Any = group_type(schema_url=draw(schema_urls), **{scopes_field: scope_groups})  # type: ignore[call-arg]
        if draw(_present):
            group.resource.CopyFrom(draw(resources()))
        groups.append(group)
    return REQUEST_TYPES[signal](**{groups_field: groups})  # type: ignore[call-arg]


def parse(signal: str, data: bytes) -> Any:
    request = REQUEST_TYPES[signal]()
    request.ParseFromString(data)
    return request


# --------------------------------------------------------------------------------------
# Atoms: what routing must neither lose nor duplicate
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Atom:
    """One span / log record / metric data point with everything that encloses it."""

    resource: bytes
    resource_schema: str
    scope: bytes
    scope_schema: str
    item: bytes  # the span or log record; for metrics the metric with its data points removed
    point: bytes = b""  # the data point, for metrics


def _det(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


def atoms(signal: str, request: Any) -> list[Atom]:
    """The request flattened to atoms, in request order."""
    groups_field, scopes_field, items_field = FIELDS[signal]
    out: list[Atom] = []
    for group in getattr(request, groups_field):
        resource = _det(group.resource)
        for scope_group in getattr(group, scopes_field):
            scope = _det(scope_group.scope)
            for item in getattr(scope_group, items_field):
                if signal != "metrics":
                    out.append(Atom(resource, group.schema_url, scope, scope_group.schema_url, _det(item)))
                    continue
                kind = item.WhichOneof("data")
                if kind is None:
                    continue
                shell = Metric()
                shell.CopyFrom(item)
                getattr(shell, kind).ClearField("data_points")
                for point in getattr(item, kind).data_points:
                    out.append(
                        Atom(resource, group.schema_url, scope, scope_group.schema_url, _det(shell), _det(point))
                    )
    return out


def is_subsequence(needle: list[Atom], haystack: list[Atom]) -> bool:
    """Whether ``needle`` appears in ``haystack`` in order (greedy matching is exact for this)."""
    it = iter(haystack)
    return all(any(a == b for b in it) for a in needle)


# --------------------------------------------------------------------------------------
# An independent wire-format reader and writer (deliberately not dataplane.wire)
# --------------------------------------------------------------------------------------


def enc_varint(value: int, min_len: int = 1) -> bytes:
    """A varint, padded with continuation bytes to at least ``min_len`` bytes (non-canonical if > needed)."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value or len(out) + 1 < min_len:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def enc_len(field: int, payload: bytes, tag_len: int = 1, len_len: int = 1) -> bytes:
    """A LEN field; ``tag_len`` / ``len_len`` > minimal give non-canonical (still valid) encodings."""
    return enc_varint(field << 3 | 2, tag_len) + enc_varint(len(payload), len_len) + payload


def enc_varint_field(field: int, value: int) -> bytes:
    return enc_varint(field << 3) + enc_varint(value)


@dataclass(frozen=True, slots=True)
class RawField:
    number: int
    wire_type: int
    value: bytes  # the payload of a LEN field, the encoded value otherwise
    raw: bytes  # the whole field as it appears in the message


def raw_fields(data: bytes) -> list[RawField]:
    """The fields of one message, in order. Raises ValueError on malformed framing."""

    def varint(pos: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("bad varint")
            b = data[pos]
            value |= (b & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if b < 0x80:
                return value, pos

    out: list[RawField] = []
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = varint(pos)
        wire_type = tag & 7
        if wire_type == 0:
            _, end = varint(pos)
            value_start = pos
        elif wire_type == 2:
            length, value_start = varint(pos)
            end = value_start + length
        elif wire_type in (1, 5):
            value_start, end = pos, pos + (8 if wire_type == 1 else 4)
        else:
            raise ValueError(f"wire type {wire_type}")
        if end > len(data):
            raise ValueError("overrun")
        out.append(RawField(tag >> 3, wire_type, data[value_start:end], data[start:end]))
        pos = end
    return out


def spans_with_repeated_trace_id(data: bytes) -> bool:
    """Whether a span starts with a 16-byte trace_id and carries trace_id again later (see docs/routing.md).

    Tolerates malformed framing anywhere (answers False there): it is used on fuzzed inputs.
    """
    try:
        for group in raw_fields(data):
            if (group.number, group.wire_type) != (1, 2):
                continue
            for scope in raw_fields(group.value):
                if (scope.number, scope.wire_type) != (2, 2):
                    continue
                for span in raw_fields(scope.value):
                    if (span.number, span.wire_type) != (2, 2):
                        continue
                    if not span.value.startswith(b"\x0a\x10") or len(span.value) < 18:
                        continue  # not the fast path's shape: the wire path scans the span, last wins
                    try:
                        ids = [f for f in raw_fields(span.value) if (f.number, f.wire_type) == (1, 2)]
                    except ValueError:
                        continue
                    if len(ids) > 1:
                        return True
    except ValueError:
        return False
    return False
