"""Routing: split one OTLP export request into one request per backend.

Each signal routes by a *routing key* (upstream's semantics):

============  ==========================================================  =====
signal        keys (default first)                                        level
============  ==========================================================  =====
traces        ``traceID`` (16 raw bytes), ``service``, ``attributes``
logs          ``service``, ``traceID`` (32 lowercase hex), ``resource``,
              ``attributes``
metrics       ``service``, ``resource``, ``metric`` (name), ``streamID``,
              ``attributes``
============  ==========================================================  =====

``service`` and ``resource`` are properties of a whole resource group, so the
group is forwarded as it is. ``traceID`` and ``metric`` are read from each item.
``streamID`` and ``attributes`` are decided per data point / per item.

Two implementations exist and are property-tested to agree:

- :class:`WireSplitter` works on the protobuf wire bytes: it reads only the key
  field of each item and copies item bytes verbatim, rebuilding the resource and
  scope frames around them. It serves ``traceID``, ``metric``, ``service`` and
  ``resource``: the hot path.
- :class:`DecodeSplitter` decodes the request with the protobuf runtime and builds
  new messages. It is the reference implementation and serves the keys that need
  the whole data model (``streamID``, ``attributes``).

docs/routing.md lists what the wire path validates and the two documented
differences between the paths (unknown fields of the envelope, a span that repeats
its leading trace ID); tests/test_routing_properties.py and tests/test_wire_fuzz.py
are the evidence.

Rules for missing keys (all counted in ``ringleader_items_missing_key_total``):

- a span without a trace ID is routed as the all-zero trace ID (as upstream does);
  a trace ID that is not 16 bytes makes the request invalid (INVALID_ARGUMENT), as
  the collector's own OTLP receiver would refuse it;
- a log record without a trace ID is routed to a random backend (as upstream);
  one with a trace ID that is not 16 bytes likewise makes the request invalid;
- a resource without ``service.name`` is routed by the empty service name, so
  such data is kept together instead of being dropped as upstream does.

Within a backend's request, resource and scope grouping and item order are those
of the incoming request; an item is never duplicated or lost.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from .wire import (
    LEN,
    MalformedError,
    find_len_field,
    frame,
    iter_len_fields,
    read_tag,
    read_varint,
    skip_field,
)

Lookup = Callable[[bytes], int]

REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}

ZERO_TRACE_ID = bytes(16)

# Metric data fields (gauge, sum, histogram, exponential_histogram, summary): each holds
# `repeated DataPoint data_points = 1`.
_METRIC_DATA_TAGS = frozenset({(5 << 3) | LEN, (7 << 3) | LEN, (9 << 3) | LEN, (10 << 3) | LEN, (11 << 3) | LEN})
_METRIC_DATA_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
_LOG_TRACE_ID_TAG = (9 << 3) | LEN
_SPAN_TRACE_ID_TAG = (1 << 3) | LEN
_METRIC_NAME_TAG = (1 << 3) | LEN

_SPAN_KIND_NAMES = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}


class InvalidRequestError(ValueError):
    """The request is well-formed protobuf but violates OTLP (e.g. a 7-byte trace ID)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Split:
    """One request, split: backend index -> (serialized request, item count)."""

    parts: dict[int, tuple[bytes, int]]
    items: int
    missing_keys: int = 0


class Splitter(Protocol):
    signal: str
    key: str

    def split(self, data: bytes, lookup: Lookup) -> Split: ...


# --------------------------------------------------------------------------------------
# Keys shared by both paths
# --------------------------------------------------------------------------------------


def any_value_to_string(value: AnyValue) -> str:
    """Render an attribute value the way upstream builds attribute routing keys."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _go_float(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "kvlist_value":
        items = sorted((kv.key, any_value_to_string(kv.value)) for kv in value.kvlist_value.values)
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if kind == "array_value":
        return "[" + ",".join(any_value_to_string(v) for v in value.array_value.values) + "]"
    return ""


def _go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64): shortest digits; exponent form when exp < -4 or >= 6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    # repr() gives the shortest digits that round-trip, like Go's shortest mode.
    mantissa, _, exp_text = f"{abs(x)!r}".partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    leading_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    dp = len(int_part) - leading_zeros + (int(exp_text) if exp_text else 0)
    digits = digits.rstrip("0") or "0"
    exp = dp - 1
    if exp < -4 or exp >= _GO_SHORTEST_EPREC:
        head, tail = digits[0], digits[1:]
        return f"{sign}{head}{'.' + tail if tail else ''}e{exp:+03d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


# strconv uses precision 6 to choose between %e and %f in shortest mode (fmt.Println(1e6) = 1e+06).
_GO_SHORTEST_EPREC = 6


def attributes_key(attributes: Iterable[KeyValue]) -> str:
    """A canonical string for a set of attributes: sorted, so order does not matter."""
    return "|".join(sorted(f"{kv.key}={any_value_to_string(kv.value)}" for kv in attributes))


def service_name(resource: Resource) -> str | None:
    found: str | None = None
    for kv in resource.attributes:
        if kv.key == "service.name":
            found = kv.value.string_value if kv.value.HasField("string_value") else any_value_to_string(kv.value)
    return found


def resource_key_bytes(signal: str, key: str, resource: Resource) -> tuple[bytes, bool]:
    """Routing key of a whole resource group for ``service``/``resource``; (key, missing).

    Traces use upstream's attribute-key form (``service.name=<value>|``, ``service.name=|``
    when absent) so that the ``upstream`` ring algorithm routes exactly like upstream
    collectors in a mixed fleet; logs and metrics hash the bare service name as upstream.
    """
    if key == "service":
        name = service_name(resource)
        if signal == "traces":
            return f"service.name={name or ''}|".encode(), name is None
        return (name or "").encode(), name is None
    return ("resource/" + attributes_key(resource.attributes)).encode(), False


def _log_key(trace_id: bytes, rng: random.Random) -> tuple[bytes, bool]:
    if not trace_id:
        return rng.getrandbits(64).to_bytes(8, "little"), True
    if len(trace_id) != 16:
        raise InvalidRequestError("invalid_trace_id", f"log record trace_id has {len(trace_id)} bytes, expected 16")
    return trace_id.hex().encode(), False


def _span_key(trace_id: bytes) -> tuple[bytes, bool]:
    if not trace_id:
        return ZERO_TRACE_ID, True
    if len(trace_id) != 16:
        raise InvalidRequestError("invalid_trace_id", f"span trace_id has {len(trace_id)} bytes, expected 16")
    return trace_id, False


# --------------------------------------------------------------------------------------
# Wire path
# --------------------------------------------------------------------------------------


class WireSplitter:
    """Split requests on the wire format, copying item bytes (see module docs)."""

    ITEM_KEYS = {("traces", "traceID"), ("logs", "traceID"), ("metrics", "metric")}
    RESOURCE_KEYS = {"service", "resource"}

    def __init__(self, signal: str, key: str, rng: random.Random | None = None) -> None:
        if (signal, key) not in self.ITEM_KEYS and key not in self.RESOURCE_KEYS:
            raise ValueError(f"the wire path cannot route {signal} by {key}")
        self.signal = signal
        self.key = key
        self._rng = rng or random.Random()
        self._count_items: Callable[[bytes, int, int], int] = _ITEM_COUNTERS[signal]

    def split(self, data: bytes, lookup: Lookup) -> Split:
        out: dict[int, list[bytes]] = {}
        counts: dict[int, int] = {}
        missing = 0
        by_resource = self.key in self.RESOURCE_KEYS
        unknown: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            field_start = pos
            tag = data[pos]
            if tag == 0x0A:
                length, start = read_varint(data, pos + 1, end)
            else:
                if tag < 0x80:
                    pos += 1
                    if tag >> 3 == 0:
                        raise MalformedError("field number 0")
                else:
                    # A padded tag can still be a resource group: the runtime reads it as one.
                    tag, pos = read_tag(data, pos, end)
                if tag != 0x0A:
                    # An unknown request field: kept for every part, like unknown fields at every level.
                    pos = skip_field(data, tag & 7, pos, end)
                    unknown.append(data[field_start:pos])
                    continue
                length, start = read_varint(data, pos, end)
            stop = start + length
            if stop > end:
                raise MalformedError("resource group overruns the request")
            if by_resource:
                missing += self._route_resource_group(data, start, stop, field_start, lookup, out, counts)
            else:
                missing += self._split_resource_group(data, start, stop, lookup, out, counts)
            pos = stop
        if unknown:
            tail = b"".join(unknown)
            for chunks in out.values():
                chunks.append(tail)
        parts = {idx: (b"".join(chunks), counts[idx]) for idx, chunks in out.items()}
        return Split(parts, sum(counts.values()), missing)

    # -- resource-level keys: the whole group goes to one backend ----------------------------
    def _route_resource_group(
        self,
        data: bytes,
        start: int,
        stop: int,
        field_start: int,
        lookup: Lookup,
        out: dict[int, list[bytes]],
        counts: dict[int, int],
    ) -> int:
        resource = Resource()
        items = 0
        count_items = self._count_items
        for tag, _fs, ps, pe in iter_len_fields(data, start, stop):
            if tag == 0x0A:
                try:
                    resource.MergeFromString(data[ps:pe])
                except DecodeError as exc:
                    raise MalformedError(f"bad resource: {exc}") from None
            elif tag == 0x12:
                for t, _s, ips, ipe in iter_len_fields(data, ps, pe):
                    if t == 0x12:
                        items += count_items(data, ips, ipe)
        if items == 0:
            return 0
        key, missing = resource_key_bytes(self.signal, self.key, resource)
        idx = lookup(key)
        out.setdefault(idx, []).append(data[field_start:stop])
        counts[idx] = counts.get(idx, 0) + items
        return items if missing else 0

    # -- item-level keys ---------------------------------------------------------------------
    def _split_resource_group(
        self,
        data: bytes,
        start: int,
        stop: int,
        lookup: Lookup,
        out: dict[int, list[bytes]],
        counts: dict[int, int],
    ) -> int:
        head: list[bytes] = []
        tail: list[bytes] = []
        scopes: dict[int, list[bytes]] = {}
        missing = 0
        for tag, fs, ps, pe in iter_len_fields(data, start, stop):
            if tag == 0x12:
                missing += self._split_scope_group(data, ps, pe, lookup, scopes, counts)
            elif tag == 0x0A:
                head.append(data[fs:pe])
            else:
                tail.append(data[fs:pe])
        if scopes:
            head_bytes = b"".join(head)
            tail_bytes = b"".join(tail)
            for idx, frames in scopes.items():
                body_len = len(head_bytes) + len(tail_bytes) + sum(map(len, frames))
                chunk = out.setdefault(idx, [])
                chunk.append(frame(0x0A, body_len))
                chunk.append(head_bytes)
                chunk.extend(frames)
                chunk.append(tail_bytes)
        return missing

    def _split_scope_group(
        self,
        data: bytes,
        pos: int,
        end: int,
        lookup: Lookup,
        scopes: dict[int, list[bytes]],
        counts: dict[int, int],
    ) -> int:
        """Route every item of one scope group; append a scope frame per backend to ``scopes``."""
        head: list[bytes] = []
        tail: list[bytes] = []
        runs: dict[int, list[bytes]] = {}
        missing = 0
        signal = self.signal
        traces = signal == "traces"
        logs = signal == "logs"
        rng = self._rng
        # Consecutive items with the same owner are copied as one slice: spans of a trace
        # usually arrive together, so this cuts the copies by the spans-per-trace factor.
        run_idx = -1
        run_start = pos
        run_items = 0
        last_key = b""
        last_idx = -1
        while pos < end:
            field_start = pos
            tag = data[pos]
            if tag == 0x12:
                b = data[pos + 1] if pos + 1 < end else 0x80
                if b < 0x80:
                    q = pos + 2
                    length = b
                else:
                    length, q = read_varint(data, pos + 1, end)
            else:
                if tag < 0x80:
                    q = pos + 1
                    if tag >> 3 == 0:
                        raise MalformedError("field number 0")
                else:
                    # A padded tag can still be an item: the runtime reads it as one.
                    tag, q = read_tag(data, pos, end)
                if tag != 0x12:
                    # Scope (field 1), schema_url (field 3) or an unknown field: flush the run so
                    # item bytes stay contiguous, then keep the raw field for every output.
                    if run_idx >= 0 and field_start > run_start:
                        runs.setdefault(run_idx, []).append(data[run_start:field_start])
                        counts[run_idx] = counts.get(run_idx, 0) + run_items
                    run_idx = -1
                    run_items = 0
                    pos = skip_field(data, tag & 7, q, end)
                    (head if tag == 0x0A else tail).append(data[field_start:pos])
                    run_start = pos
                    continue
                length, q = read_varint(data, q, end)
            item_end = q + length
            if item_end > end:
                raise MalformedError("item overruns its scope group")
            # --- the routing key of this item -------------------------------------------
            if traces:
                # Fast path: the span starts with its 16-byte trace_id (every serializer writes it first).
                if length >= 18 and data[q] == 0x0A and data[q + 1] == 0x10:
                    if last_idx >= 0 and data.startswith(last_key, q + 2):
                        idx = last_idx
                    else:
                        last_key = data[q + 2 : q + 18]
                        idx = last_idx = lookup(last_key)
                else:
                    found = find_len_field(data, q, item_end, _SPAN_TRACE_ID_TAG)
                    tid = data[found[0] : found[1]] if found else b""
                    key, was_missing = _span_key(tid)
                    missing += was_missing
                    idx = lookup(key)
                n = 1
            elif logs:
                found = find_len_field(data, q, item_end, _LOG_TRACE_ID_TAG)
                key, was_missing = _log_key(data[found[0] : found[1]] if found else b"", rng)
                missing += was_missing
                idx = lookup(key)
                n = 1
            else:
                found = find_len_field(data, q, item_end, _METRIC_NAME_TAG)
                name = data[found[0] : found[1]] if found else b""
                idx = lookup(name)
                n = _count_metric_points(data, q, item_end)
            # --- extend or flush the current run ----------------------------------------
            if idx != run_idx:
                if run_idx >= 0 and field_start > run_start:
                    runs.setdefault(run_idx, []).append(data[run_start:field_start])
                    counts[run_idx] = counts.get(run_idx, 0) + run_items
                run_idx = idx
                run_start = field_start
                run_items = 0
            run_items += n
            pos = item_end
        if run_idx >= 0 and end > run_start:
            runs.setdefault(run_idx, []).append(data[run_start:end])
            counts[run_idx] = counts.get(run_idx, 0) + run_items
        if runs:
            head_bytes = b"".join(head)
            tail_bytes = b"".join(tail)
            for idx, chunks in runs.items():
                body = len(head_bytes) + len(tail_bytes) + sum(map(len, chunks))
                frames = scopes.setdefault(idx, [])
                frames.append(frame(0x12, body))
                frames.append(head_bytes)
                frames.extend(chunks)
                frames.append(tail_bytes)
        return missing


def _count_span(data: bytes, pos: int, end: int) -> int:
    """One span; its trace ID must be empty or 16 bytes whatever the routing key."""
    if end - pos >= 18 and data[pos] == 0x0A and data[pos + 1] == 0x10:
        return 1  # the common layout: a 16-byte trace_id first
    found = find_len_field(data, pos, end, _SPAN_TRACE_ID_TAG)
    if found is not None:
        _span_key(data[found[0] : found[1]])  # raises on a bad length
    return 1


def _count_log(data: bytes, pos: int, end: int) -> int:
    """One log record; its trace ID must be empty or 16 bytes whatever the routing key."""
    found = find_len_field(data, pos, end, _LOG_TRACE_ID_TAG)
    if found is not None and found[1] - found[0] not in (0, 16):
        raise InvalidRequestError(
            "invalid_trace_id", f"log record trace_id has {found[1] - found[0]} bytes, expected 16"
        )
    return 1


def _count_metric_points(data: bytes, pos: int, end: int) -> int:
    """Number of data points in one Metric message (its items for counting).

    The data fields form a oneof: like the runtime, a field of another kind than the one
    before it replaces it, one of the same kind merges into it (its points add up).
    """
    points = 0
    kind = -1
    for tag, _fs, ps, pe in iter_len_fields(data, pos, end):
        if tag in _METRIC_DATA_TAGS:
            if tag != kind:
                kind = tag
                points = 0
            for t, _s, _p, _e in iter_len_fields(data, ps, pe):
                if t == 0x0A:
                    points += 1
    return points


# --------------------------------------------------------------------------------------
# Decode path (reference implementation)
# --------------------------------------------------------------------------------------


class DecodeSplitter:
    """Split requests by decoding them into protobuf messages (see module docs)."""

    def __init__(
        self,
        signal: str,
        key: str,
        routing_attributes: tuple[str, ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.signal = signal
        self.key = key
        self.attrs = routing_attributes
        self._rng = rng or random.Random()
        self._type = REQUEST_TYPES[signal]

    def split(self, data: bytes, lookup: Lookup) -> Split:
        request = self._type()
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise MalformedError(str(exc) or "cannot decode request") from None
        outs: dict[int, Any] = {}
        counts: dict[int, int] = {}
        missing = 0
        groups_field, scopes_field, items_field = _FIELDS[self.signal]
        for group in getattr(request, groups_field):
            if self.signal != "metrics" and self.key != "traceID":
                _check_trace_ids(self.signal, group)
            if self.key in ("service", "resource"):
                items = _count_group(self.signal, group)
                if items == 0:
                    continue
                key, key_missing = resource_key_bytes(self.signal, self.key, group.resource)
                missing += items if key_missing else 0
                idx = lookup(key)
                out = outs.setdefault(idx, self._type())
                getattr(out, groups_field).add().CopyFrom(group)
                counts[idx] = counts.get(idx, 0) + items
                continue
            group_outs: dict[int, Any] = {}
            for scope in getattr(group, scopes_field):
                scope_outs: dict[int, Any] = {}
                for item in getattr(scope, items_field):
                    for idx, piece, n, was_missing in self._route_item(group, scope, item, lookup):
                        missing += was_missing
                        target = scope_outs.get(idx)
                        if target is None:
                            g = group_outs.get(idx)
                            if g is None:
                                out = outs.setdefault(idx, self._type())
                                g = getattr(out, groups_field).add()
                                # Copy presence too: an absent resource or scope stays absent.
                                if group.HasField("resource"):
                                    g.resource.CopyFrom(group.resource)
                                g.schema_url = group.schema_url
                                group_outs[idx] = g
                            target = getattr(g, scopes_field).add()
                            if scope.HasField("scope"):
                                target.scope.CopyFrom(scope.scope)
                            target.schema_url = scope.schema_url
                            scope_outs[idx] = target
                        getattr(target, items_field).add().CopyFrom(piece)
                        counts[idx] = counts.get(idx, 0) + n
        parts = {idx: (msg.SerializeToString(), counts[idx]) for idx, msg in outs.items()}
        return Split(parts, sum(counts.values()), missing)

    def _route_item(self, group: Any, scope: Any, item: Any, lookup: Lookup) -> list[tuple[int, Any, int, int]]:
        """Where one item goes: a list of (backend, item or item fragment, items, missing)."""
        signal, key = self.signal, self.key
        if signal == "traces" and key == "traceID":
            k, miss = _span_key(item.trace_id)
            return [(lookup(k), item, 1, int(miss))]
        if signal == "logs" and key == "traceID":
            k, miss = _log_key(item.trace_id, self._rng)
            return [(lookup(k), item, 1, int(miss))]
        if signal == "metrics" and key == "metric":
            return [(lookup(item.name.encode()), item, _count_points(item), 0)]
        if signal == "metrics":  # streamID or attributes: per data point
            return self._route_points(group, scope, item, lookup)
        # attributes for spans and log records
        k = self._attributes_key(group, scope, item)
        return [(lookup(k), item, 1, 0)]

    def _attributes_key(self, group: Any, scope: Any, item: Any, point_attrs: Any = None) -> bytes:
        parts: list[str] = []
        for name in self.attrs:
            value = _find_attr(group.resource.attributes, name)
            if value is None:
                value = _find_attr(scope.scope.attributes, name)
            if value is None and point_attrs is None:
                value = self._pseudo_attr(item, name)
                if value is None:
                    value = _find_attr(item.attributes, name)
            elif value is None:
                value = _find_attr(point_attrs, name)
            parts.append(f"{name}={value if value is not None else ''}|")
        return "".join(parts).encode()

    def _pseudo_attr(self, item: Any, name: str) -> str | None:
        if self.signal == "traces":
            if name == "span.kind":
                return _SPAN_KIND_NAMES.get(item.kind, str(item.kind))
            if name == "span.name":
                return str(item.name)
        elif self.signal == "logs":
            if name == "log.severity":
                return str(item.severity_text)
            if name == "log.body":
                return any_value_to_string(item.body)
        return None

    def _route_points(self, group: Any, scope: Any, metric: Any, lookup: Lookup) -> list[tuple[int, Any, int, int]]:
        kind = metric.WhichOneof("data")
        if kind is None:
            return [(lookup(metric.name.encode()), metric, 0, 0)]
        container = getattr(metric, kind)
        by_idx: dict[int, Any] = {}
        order: list[int] = []
        counts: dict[int, int] = {}
        for point in container.data_points:
            if self.key == "streamID":
                k = _stream_id(group, scope, metric, kind, point)
            else:
                k = self._attributes_key(group, scope, metric, point_attrs=point.attributes)
            idx = lookup(k)
            piece = by_idx.get(idx)
            if piece is None:
                piece = type(metric)()
                piece.CopyFrom(metric)
                getattr(piece, kind).ClearField("data_points")
                by_idx[idx] = piece
                order.append(idx)
            getattr(piece, kind).data_points.add().CopyFrom(point)
            counts[idx] = counts.get(idx, 0) + 1
        return [(idx, by_idx[idx], counts[idx], 0) for idx in order]


_ITEM_COUNTERS: dict[str, Callable[[bytes, int, int], int]] = {
    "traces": _count_span,
    "logs": _count_log,
    "metrics": _count_metric_points,
}

_COUNT_ONLY: dict[str, Callable[[bytes, int, int], int]] = {
    "traces": lambda data, pos, end: 1,
    "logs": lambda data, pos, end: 1,
    "metrics": _count_metric_points,
}

_FIELDS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}


def _check_trace_ids(signal: str, group: Any) -> None:
    """Refuse a trace ID that is neither empty nor 16 bytes, as the collector's receiver would."""
    _, scopes_field, items_field = _FIELDS[signal]
    for scope in getattr(group, scopes_field):
        for item in getattr(scope, items_field):
            if len(item.trace_id) not in (0, 16):
                what = "span" if signal == "traces" else "log record"
                raise InvalidRequestError(
                    "invalid_trace_id", f"{what} trace_id has {len(item.trace_id)} bytes, expected 16"
                )


def count_items(signal: str, data: bytes) -> int:
    """Items in a request, best effort (0 when it is malformed): for counting refusals."""
    counter = _COUNT_ONLY[signal]
    total = 0
    try:
        for tag, _fs, ps, pe in iter_len_fields(data, 0, len(data)):
            if tag != 0x0A:
                continue
            for t, _s, sps, spe in iter_len_fields(data, ps, pe):
                if t != 0x12:
                    continue
                for it, _i, ips, ipe in iter_len_fields(data, sps, spe):
                    if it == 0x12:
                        total += counter(data, ips, ipe)
    except MalformedError:
        return 0
    return total


def _find_attr(attributes: Any, name: str) -> str | None:
    found: str | None = None
    for kv in attributes:
        if kv.key == name:
            found = any_value_to_string(kv.value)
    return found


def _count_points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def _count_group(signal: str, group: Any) -> int:
    _, scopes_field, items_field = _FIELDS[signal]
    if signal == "metrics":
        return sum(_count_points(m) for s in getattr(group, scopes_field) for m in s.metrics)
    return sum(len(getattr(s, items_field)) for s in getattr(group, scopes_field))


def _stream_id(group: Any, scope: Any, metric: Any, kind: str, point: Any) -> bytes:
    """Identity of a metric stream: resource, scope, metric identity and point attributes."""
    ident = {
        "r": attributes_key(group.resource.attributes),
        "s": [scope.scope.name, scope.scope.version, attributes_key(scope.scope.attributes)],
        "m": [metric.name, metric.unit, kind],
        "p": attributes_key(point.attributes),
    }
    container = getattr(metric, kind)
    if kind in ("sum", "histogram", "exponential_histogram"):
        ident["t"] = container.aggregation_temporality
    if kind == "sum":
        ident["mono"] = container.is_monotonic
    return json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------


def make_splitter(
    signal: str, key: str, routing_attributes: tuple[str, ...] = (), rng: random.Random | None = None
) -> Splitter:
    """The splitter for a signal and key: the wire path where it can serve, else decode."""
    if (signal, key) in WireSplitter.ITEM_KEYS or key in WireSplitter.RESOURCE_KEYS:
        return WireSplitter(signal, key, rng)
    return DecodeSplitter(signal, key, routing_attributes, rng)
