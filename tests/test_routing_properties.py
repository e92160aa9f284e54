"""Property tests: the wire path routes exactly like the decode path, and no split loses anything.

Two kinds of evidence (see docs/routing.md):

- generated requests (tests/otlpgen.py) for every (signal, key) and 1..5 backends:
  the wire path and the decode path choose the same backends and write messages that
  parse equal, with equal item counts; every split of every key keeps the multiset of
  items, their order within a backend and their resource/scope grouping;
- hand-built inputs the protobuf runtime accepts but no serializer writes: unknown
  fields at every level, fields out of order, singular fields given twice,
  non-canonical varints, huge items.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, Sum
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from dataplane.routing import (
    DecodeSplitter,
    InvalidRequestError,
    Split,
    WireSplitter,
    resource_key_bytes,
)
from dataplane.wire import MalformedError
from tests.otlpgen import (
    ALL_KEYS,
    FIELDS,
    ROUTING_ATTRIBUTES,
    SIGNALS,
    WIRE_KEYS,
    Atom,
    atoms,
    enc_len,
    enc_varint,
    enc_varint_field,
    hash_lookup,
    is_subsequence,
    parse,
    raw_fields,
    requests,
)

BACKENDS = range(1, 6)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def wire(signal: str, key: str, seed: int = 0) -> WireSplitter:
    return WireSplitter(signal, key, rng=random.Random(seed))


def decode(signal: str, key: str, seed: int = 0) -> DecodeSplitter:
    return DecodeSplitter(signal, key, ROUTING_ATTRIBUTES, rng=random.Random(seed))


def parsed_parts(signal: str, split: Split, discard_unknown: bool = False) -> dict[int, tuple[Any, int]]:
    out = {}
    for idx, (data, count) in split.parts.items():
        message = parse(signal, data)
        if discard_unknown:
            message.DiscardUnknownFields()
        out[idx] = (message, count)
    return out


def assert_same_split(signal: str, wire_split: Split, decode_split: Split, discard_unknown: bool = False) -> None:
    """Same backends, messages that parse equal, same item counts, same totals."""
    w = parsed_parts(signal, wire_split, discard_unknown)
    d = parsed_parts(signal, decode_split, discard_unknown)
    assert sorted(w) == sorted(d)
    for idx in d:
        assert w[idx][1] == d[idx][1], f"item count of backend {idx}"
        assert w[idx][0] == d[idx][0], f"request for backend {idx}"
    assert wire_split.items == decode_split.items
    assert wire_split.missing_keys == decode_split.missing_keys


# --------------------------------------------------------------------------------------
# Generated requests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_wire_path_splits_generated_requests_like_the_decode_path(signal: str, key: str, data: st.DataObject) -> None:
    payload = data.draw(requests(signal)).SerializeToString()
    # Log records without a trace ID go to a random backend: both paths draw from equal generators.
    seed = data.draw(st.integers(0, 2**32 - 1))
    for backends in BACKENDS:
        lookup = hash_lookup(backends)
        assert_same_split(
            signal, wire(signal, key, seed).split(payload, lookup), decode(signal, key, seed).split(payload, lookup)
        )


def _expected_missing(signal: str, key: str, request: Any) -> int:
    groups_field, scopes_field, items_field = FIELDS[signal]
    missing = 0
    for group in getattr(request, groups_field):
        for scope in getattr(group, scopes_field):
            for item in getattr(scope, items_field):
                if key == "traceID":
                    missing += not item.trace_id
                elif key == "service" and not any(kv.key == "service.name" for kv in group.resource.attributes):
                    kind = item.WhichOneof("data") if signal == "metrics" else None
                    missing += len(getattr(item, kind).data_points) if kind else signal != "metrics"
    return missing


def _expected_backend(signal: str, key: str, atom: Atom, lookup: Any) -> int | None:
    """Where the module docs say an atom goes, computed from the atom alone (None: not decidable here)."""
    if key == "traceID":
        trace_id = (Span() if signal == "traces" else LogRecord()).FromString(atom.item).trace_id
        if signal == "traces":
            return int(lookup(trace_id or bytes(16)))
        return int(lookup(trace_id.hex().encode())) if trace_id else None
    if key == "metric":
        return int(lookup(Metric.FromString(atom.item).name.encode()))
    if key == "service":
        return int(lookup(resource_key_bytes(signal, key, Resource.FromString(atom.resource))[0]))
    return None


SPLITTERS = [(s, k, "wire") for s, k in WIRE_KEYS] + [(s, k, "decode") for s in SIGNALS for k in ALL_KEYS[s]]


@pytest.mark.parametrize(("signal", "key", "path"), SPLITTERS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_split_keeps_every_item_once_in_order_under_its_resource_and_scope(
    signal: str, key: str, path: str, data: st.DataObject
) -> None:
    request = data.draw(requests(signal))
    payload = request.SerializeToString()
    backends = data.draw(st.integers(1, 5))
    lookup = hash_lookup(backends)
    splitter = wire(signal, key) if path == "wire" else decode(signal, key)
    split = splitter.split(payload, lookup)

    expected = atoms(signal, request)
    seen: Counter[Atom] = Counter()
    where: dict[tuple[bytes, str, bytes, str, bytes, bytes], set[int]] = {}
    for idx, (part, count) in split.parts.items():
        assert 0 <= idx < backends  # a dict: at most one part per backend by construction
        message = parse(signal, part)
        assert len(getattr(message, FIELDS[signal][0])) > 0, "no empty parts"
        got = atoms(signal, message)
        assert count == len(got), "a part's item count is the number of items in it"
        assert is_subsequence(got, expected), "items keep their order within a backend"
        seen.update(got)
        for atom in got:
            want = _expected_backend(signal, key, atom, lookup)
            assert want is None or want == idx, "item routed by its key"
            # Items equal in everything that any key can read must meet on one backend (streamID, attributes).
            where.setdefault(
                (atom.resource, atom.resource_schema, atom.scope, atom.scope_schema, atom.item, atom.point), set()
            ).add(idx)
    assert seen == Counter(expected), "nothing lost, nothing duplicated, grouping kept"
    assert split.items == sum(count for _, count in split.parts.values()) == len(expected)
    if not (signal == "logs" and key == "traceID"):  # those without a trace ID are routed at random
        assert all(len(backends_of) == 1 for backends_of in where.values())
    if key in ("traceID", "service"):
        assert split.missing_keys == _expected_missing(signal, key, request)


# --------------------------------------------------------------------------------------
# Hand-built inputs: what the runtime accepts but serializers do not write
# --------------------------------------------------------------------------------------

_TID = [bytes([i]) * 16 for i in range(1, 9)]


def _item(signal: str, i: int, **extra: Any) -> bytes:
    """A small, valid item of ``signal``; ``i`` picks its key."""
    if signal == "traces":
        return Span(trace_id=_TID[i % 8], span_id=bytes([i % 256]) * 8, name=f"s{i}", **extra).SerializeToString()
    if signal == "logs":
        return LogRecord(trace_id=_TID[i % 8], severity_text=f"l{i}", **extra).SerializeToString()
    points = [NumberDataPoint(as_int=i), NumberDataPoint(as_int=i + 1)]
    return Metric(name=f"m{i}", gauge=Gauge(data_points=points), **extra).SerializeToString()


def _resource(service: str) -> bytes:
    return Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]).SerializeToString()


def _scope(name: str) -> bytes:
    return InstrumentationScope(name=name, version="1").SerializeToString()


def _check_agreement(signal: str, payload: bytes, discard_unknown: bool = False) -> None:
    for key in ALL_KEYS[signal]:
        if (signal, key) not in WIRE_KEYS:
            continue
        for backends in BACKENDS:
            lookup = hash_lookup(backends)
            assert_same_split(
                signal,
                wire(signal, key).split(payload, lookup),
                decode(signal, key).split(payload, lookup),
                discard_unknown,
            )


UNKNOWN_REQUEST = enc_varint_field(99, 7) + enc_len(100, b"request-level")
UNKNOWN_GROUP = enc_len(50, b"group-level") + enc_varint_field(2, 5)  # field 2 with the wrong wire type
UNKNOWN_SCOPE_GROUP = enc_len(51, b"scope-group-level") + enc_varint_field(1, 3)
UNKNOWN_IN_RESOURCE = enc_len(60, b"inside-resource")
UNKNOWN_IN_SCOPE = enc_len(61, b"inside-scope")
UNKNOWN_IN_ITEM = enc_len(70, b"inside-item")


def _with_unknown_fields(signal: str) -> bytes:
    groups = b""
    for g in range(2):
        scope_groups = b""
        for s in range(2):
            items = b"".join(enc_len(2, _item(signal, 4 * g + 2 * s + i) + UNKNOWN_IN_ITEM) for i in range(3))
            scope_groups += enc_len(
                2, enc_len(1, _scope(f"sc{s}") + UNKNOWN_IN_SCOPE) + UNKNOWN_SCOPE_GROUP + items + enc_len(3, b"u")
            )
        groups += enc_len(1, UNKNOWN_GROUP + enc_len(1, _resource(f"svc{g}") + UNKNOWN_IN_RESOURCE) + scope_groups)
    head = enc_varint_field(99, 7)
    return head + groups + UNKNOWN_REQUEST[len(head) :]


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
def test_wire_path_keeps_unknown_fields_of_every_level_in_every_part(signal: str, key: str) -> None:
    payload = _with_unknown_fields(signal)
    for backends in BACKENDS:
        split = wire(signal, key).split(payload, hash_lookup(backends))
        assert split.items == (24 if signal == "metrics" else 12)
        for part, _ in split.parts.values():
            request = raw_fields(part)
            unknown = [f.raw for f in request if f.number != 1]
            assert b"".join(unknown) == UNKNOWN_REQUEST
            for group in (f for f in request if f.number == 1):
                fields = raw_fields(group.value)
                assert [f.raw for f in fields if f.number not in (1, 2, 3) or f.wire_type != 2] == [
                    enc_len(50, b"group-level"),
                    enc_varint_field(2, 5),
                ]
                assert all(f.value.endswith(UNKNOWN_IN_RESOURCE) for f in fields if (f.number, f.wire_type) == (1, 2))
                for scope_group in (f for f in fields if (f.number, f.wire_type) == (2, 2)):
                    inner = raw_fields(scope_group.value)
                    assert [f.raw for f in inner if f.number not in (1, 2, 3) or f.wire_type != 2] == [
                        enc_len(51, b"scope-group-level"),
                        enc_varint_field(1, 3),
                    ]
                    assert all(f.value.endswith(UNKNOWN_IN_SCOPE) for f in inner if (f.number, f.wire_type) == (1, 2))
                    items = [f for f in inner if (f.number, f.wire_type) == (2, 2)]
                    assert items and all(f.value.endswith(UNKNOWN_IN_ITEM) for f in items)


@pytest.mark.parametrize("signal", SIGNALS)
def test_decode_path_keeps_unknown_fields_inside_resource_scope_and_item(signal: str) -> None:
    """The decode path rebuilds the envelope, so only unknown fields inside messages it copies survive."""
    payload = _with_unknown_fields(signal)
    for key in ALL_KEYS[signal]:
        split = decode(signal, key).split(payload, hash_lookup(3))
        for part, _ in split.parts.values():
            for marker in (UNKNOWN_IN_RESOURCE, UNKNOWN_IN_SCOPE, UNKNOWN_IN_ITEM):
                assert marker in part
    _check_agreement(signal, payload, discard_unknown=True)


def _envelope(signal: str, tag_len: int = 1, len_len: int = 1, service: str = "svc") -> bytes:
    """Two resource groups of two scope groups of three items, every tag and length padded as asked."""

    def f(field: int, payload: bytes) -> bytes:
        return enc_len(field, payload, tag_len, len_len)

    groups = b""
    for g in range(2):
        scope_groups = b""
        for s in range(2):
            items = b"".join(f(2, _item(signal, 4 * g + 2 * s + i)) for i in range(3))
            scope_groups += f(2, f(1, _scope(f"sc{s}")) + items + f(3, b"u"))
        groups += f(1, f(1, _resource(f"{service}{g}")) + scope_groups + f(3, b"https://schema"))
    return groups


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize(("tag_len", "len_len"), [(1, 2), (1, 5), (2, 1), (5, 3)])
def test_wire_path_reads_non_canonical_varints_like_the_runtime(signal: str, tag_len: int, len_len: int) -> None:
    payload = _envelope(signal, tag_len, len_len)
    assert parse(signal, payload) == parse(signal, _envelope(signal))
    _check_agreement(signal, payload)


@pytest.mark.parametrize("signal", SIGNALS)
def test_wire_path_reads_fields_out_of_order_like_the_runtime(signal: str) -> None:
    scope_group = (
        enc_len(3, b"https://scope-schema")
        + enc_len(2, _item(signal, 1))
        + enc_len(1, _scope("late"))
        + enc_len(2, _item(signal, 2))
        + enc_len(3, b"https://scope-schema-2")
        + enc_len(2, _item(signal, 3))
    )
    group = (
        enc_len(3, b"https://schema")
        + enc_len(2, scope_group)
        + enc_len(1, _resource("late"))
        + enc_len(2, scope_group)
    )
    # Items whose key field comes last (the wire path's fast path expects it first in spans).
    reordered = {
        "traces": Span(name="x", span_id=b"\x01" * 8).SerializeToString() + enc_len(1, _TID[5]),
        "logs": LogRecord(severity_text="x").SerializeToString() + enc_len(9, _TID[6]),
        "metrics": Metric(gauge=Gauge(data_points=[NumberDataPoint(as_int=1)])).SerializeToString()
        + enc_len(1, b"late-name"),
    }[signal]
    group += enc_len(2, enc_len(2, reordered))
    _check_agreement(signal, enc_len(1, group) + _envelope(signal))


@pytest.mark.parametrize("signal", SIGNALS)
def test_wire_path_merges_singular_fields_given_twice_like_the_runtime(signal: str) -> None:
    # Two resources (attributes concatenate; service.name only in the second), two scopes, two schema URLs.
    scope_group = enc_len(1, _scope("first")) + enc_len(1, _scope("second")) + enc_len(3, b"a") + enc_len(3, b"b")
    items = [_item(signal, 1), _item(signal, 2)]
    if signal == "logs":  # two trace IDs: the last one wins
        items.append(LogRecord(trace_id=_TID[1]).SerializeToString() + enc_len(9, _TID[2]))
    if signal == "metrics":  # two names (last wins) and two data fields of the oneof (last kind wins, same kind merges)
        gauge = Gauge(data_points=[NumberDataPoint(as_int=1), NumberDataPoint(as_int=2)]).SerializeToString()
        sum_ = Sum(data_points=[NumberDataPoint(as_int=3)]).SerializeToString()
        items += [
            Metric(name="a").SerializeToString() + enc_len(1, b"b") + enc_len(5, gauge),
            enc_len(5, gauge) + enc_len(7, sum_),
            enc_len(5, gauge) + enc_len(7, sum_) + enc_len(5, gauge),
            enc_len(5, gauge) + enc_len(5, gauge),
            enc_len(7, sum_) + enc_len(5, b"") + enc_len(5, gauge),
        ]
    scope_group += b"".join(enc_len(2, item) for item in items)
    resource_a = Resource(attributes=[KeyValue(key="a", value=AnyValue(int_value=1))]).SerializeToString()
    group = (
        enc_len(1, resource_a)
        + enc_len(2, scope_group)
        + enc_len(1, _resource("second"))
        + enc_len(3, b"s1")
        + enc_len(3, b"s2")
        + enc_len(2, scope_group)
    )
    _check_agreement(signal, enc_len(1, group) + enc_len(1, group))


def test_span_starting_with_a_trace_id_is_routed_by_that_first_trace_id() -> None:
    """Documented difference: the wire path's fast path reads a span's leading trace_id and stops there.

    The runtime keeps the last of two trace_id fields; no serializer writes two. The span's
    bytes go to the chosen backend unchanged, so that backend sees the last trace_id.
    """
    span = Span(trace_id=_TID[0], name="x").SerializeToString() + enc_len(1, _TID[1])
    payload = enc_len(1, enc_len(2, enc_len(2, span)))
    lookup = {_TID[0]: 0, _TID[1]: 1}.__getitem__
    assert list(wire("traces", "traceID").split(payload, lookup).parts) == [0]
    assert list(decode("traces", "traceID").split(payload, lookup).parts) == [1]
    # Anywhere but first, the wire path scans the whole span and agrees with the runtime.
    span = Span(name="x").SerializeToString() + enc_len(1, _TID[0]) + enc_len(1, _TID[1])
    payload = enc_len(1, enc_len(2, enc_len(2, span)))
    assert list(wire("traces", "traceID").split(payload, lookup).parts) == [1]


@pytest.mark.parametrize("signal", SIGNALS)
def test_wire_path_splits_huge_items_and_many_items_like_the_runtime(signal: str) -> None:
    big = KeyValue(key="blob", value=AnyValue(string_value="x" * (3 << 20)))  # a 4-byte length varint
    huge = _item(signal, 1, attributes=[big]) if signal != "metrics" else _item(signal, 1, metadata=[big])
    many = b"".join(enc_len(2, _item(signal, i)) for i in range(3000))
    group = enc_len(1, _resource("svc")) + enc_len(2, enc_len(2, huge) + many + enc_len(2, huge))
    _check_agreement(signal, enc_len(1, group) + enc_len(1, group))


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
def test_wire_path_refuses_what_the_runtime_refuses_in_the_envelope(signal: str, key: str) -> None:
    group = enc_len(1, _resource("svc")) + enc_len(2, enc_len(2, _item(signal, 1)))
    bad_inputs = {
        "tag of more than 32 bits": enc_varint(1 << 35 | 2) + b"\x00" + enc_len(1, group),
        "field number 0": b"\x02\x00" + enc_len(1, group),
        "field number 0 in a group": enc_len(1, b"\x02\x00" + group),
        "field number 0 in a scope group": enc_len(1, enc_len(2, b"\x02\x00" + enc_len(2, _item(signal, 1)))),
        "truncated": enc_len(1, group)[:-1],
        "wire type 7": b"\x0f" + enc_len(1, group),
    }
    for name, payload in bad_inputs.items():
        with pytest.raises(DecodeError):
            parse(signal, payload)
            pytest.fail(f"the runtime accepted {name}")
        with pytest.raises(MalformedError):
            wire(signal, key).split(payload, hash_lookup(3))
            pytest.fail(f"the wire path accepted {name}")


@pytest.mark.parametrize(("signal", "key"), [("traces", "traceID"), ("logs", "traceID")])
def test_trace_id_of_the_wrong_length_makes_the_request_invalid_on_both_paths(signal: str, key: str) -> None:
    for bad in (b"\x01" * 15, b"\x01" * 17, b"\x01"):
        item = (Span if signal == "traces" else LogRecord)(trace_id=bad).SerializeToString()
        payload = enc_len(1, enc_len(2, enc_len(2, _item(signal, 1)) + enc_len(2, item)))
        for splitter in (wire(signal, key), decode(signal, key)):
            with pytest.raises(InvalidRequestError):
                splitter.split(payload, hash_lookup(2))
