"""The native wire splitter (dataplane._native) splits exactly like the Python paths.

The Rust splitter is a port of the Python wire path, so the strongest claim is also the
simplest: for every input, generated or mutated, and every (signal, key) it serves, it
returns the *same bytes*, counts and missing-key counts as the Python wire path, or
raises the same error class (same reason for an invalid request). Through the Python
wire path's own property tests that makes it agree with the decode path too; the
generated-request test checks that agreement directly as well (parsed messages equal),
so the reference is the decode splitter, not another port.

Both ring algorithms are used, through the real ring table handed over as bytes, so the
native murmur3/crc32 lookups are checked against ``Ring.lookup`` on every key. Log records
without a trace ID draw from the same splitmix64 sequence on both sides (see
:class:`SplitMix64`).

The fuzz tests run hypothesis-driven mutation (tests/test_wire_fuzz.py's strategies);
what must hold there: only ``MalformedError``/``InvalidRequestError`` come out (a Rust
panic would surface as pyo3's ``PanicException``, a ``BaseException`` this file does not
catch, so it fails the test; an abort would kill the run) and the outcome is the Python
wire path's. ``FUZZ_EXAMPLES=N`` runs more examples.
"""

from __future__ import annotations

import functools
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from dataplane import _native
from dataplane.ring import Ring, build_ring
from dataplane.routing import DecodeSplitter, InvalidRequestError, Split, WireSplitter
from dataplane.routing._native_split import NativeSplitter, ring_table
from dataplane.wire import MalformedError
from tests.otlpgen import ROUTING_ATTRIBUTES, SIGNALS, WIRE_KEYS, enc_len, requests
from tests.test_routing_properties import (
    PROPERTY_SETTINGS,
    _envelope,
    _item,
    _resource,
    _with_unknown_fields,
    assert_same_split,
)
from tests.test_wire_fuzz import FUZZ_SETTINGS, fuzz_inputs

RING_SIZES = (1, 3, 5)
# Both upstream cell counts: 131071 (upstream = v0.161, #49585) and 36000 (the releases before it).
ALGORITHMS = ("ringleader", "upstream", "upstream-v0.152")

Outcome = Split | MalformedError | InvalidRequestError


class SplitMix64(random.Random):
    """A ``random.Random`` whose 64-bit draws are splitmix64's, as the native splitter draws."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.state = seed

    def getrandbits(self, k: int, /) -> int:
        assert k == 64, "the splitters draw 64-bit keys only"
        self.state = (self.state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return z ^ (z >> 31)


@functools.cache
def _ring(algorithm: str, backends: int) -> tuple[Ring, _native.RingTable]:
    ring = build_ring(algorithm, [f"10.1.0.{i}:4317" for i in range(backends)])
    return ring, ring_table(ring)


def _run(splitter: Any, data: bytes, route: Any) -> Outcome:
    try:
        return splitter.split(data, route)  # type: ignore[no-any-return]
    except (MalformedError, InvalidRequestError) as exc:  # the only exceptions allowed
        return exc


def _assert_identical(native: Outcome, python: Outcome) -> None:
    """Same bytes per backend, same counts; or the same error class (and reason)."""
    if isinstance(python, Split):
        assert isinstance(native, Split), f"native refused what the Python wire path splits: {native!r}"
        assert native.parts == python.parts
        assert (native.items, native.missing_keys) == (python.items, python.missing_keys)
    else:
        assert type(native) is type(python), f"native: {native!r}, python: {python!r}"
        if isinstance(python, InvalidRequestError):
            assert isinstance(native, InvalidRequestError) and native.reason == python.reason


def _both(signal: str, key: str, data: bytes, algorithm: str, backends: int, seed: int) -> tuple[Outcome, Outcome]:
    ring, table = _ring(algorithm, backends)
    native = _run(NativeSplitter(signal, key, seed), data, table)
    python = _run(WireSplitter(signal, key, rng=SplitMix64(seed)), data, ring.lookup)
    return native, python


# --------------------------------------------------------------------------------------
# The ring table handed over as bytes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@PROPERTY_SETTINGS
@given(keys=st.lists(st.binary(max_size=40), min_size=1, max_size=50))
def test_native_ring_table_owns_every_key_like_the_python_ring(algorithm: str, keys: list[bytes]) -> None:
    for backends in RING_SIZES:
        ring, table = _ring(algorithm, backends)
        assert [table.lookup(k) for k in keys] == [ring.lookup(k) for k in keys]


def test_a_ring_table_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="cells"):
        _native.RingTable("upstream", bytes(10), 2)
    with pytest.raises(ValueError, match="algorithm"):
        _native.RingTable("maglev", bytes(72000), 2)
    with pytest.raises(ValueError, match="cannot route"):
        NativeSplitter("metrics", "streamID")


# --------------------------------------------------------------------------------------
# Generated requests: identical to the Python wire path, equal to the decode path
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_native_splits_generated_requests_like_the_wire_and_decode_paths(
    signal: str, key: str, data: st.DataObject
) -> None:
    payload = data.draw(requests(signal)).SerializeToString()
    seed = data.draw(st.integers(0, 2**64 - 1))
    for algorithm in ALGORITHMS:
        for backends in RING_SIZES:
            native, python = _both(signal, key, payload, algorithm, backends, seed)
            _assert_identical(native, python)
            ring, _ = _ring(algorithm, backends)
            reference = DecodeSplitter(signal, key, ROUTING_ATTRIBUTES, rng=SplitMix64(seed)).split(
                payload, ring.lookup
            )
            assert isinstance(native, Split)
            assert_same_split(signal, native, reference)


@pytest.mark.parametrize("signal", ["traces", "logs"])
def test_native_refuses_a_trace_id_of_the_wrong_length_with_every_key(signal: str) -> None:
    item = enc_len(1, b"\x07" * 7) if signal == "traces" else enc_len(9, b"\x07" * 7)
    payload = enc_len(1, enc_len(1, b"") + enc_len(2, enc_len(2, item)))
    for key in ("traceID", "service", "resource"):
        native, python = _both(signal, key, payload, "ringleader", 3, 0)
        assert isinstance(native, InvalidRequestError) and native.reason == "invalid_trace_id"
        _assert_identical(native, python)


def _hand_built(signal: str) -> dict[str, bytes]:
    """Inputs the runtime accepts but serializers do not write (tests/test_routing_properties.py's)."""
    group = enc_len(1, _resource("svc")) + enc_len(2, enc_len(2, _item(signal, 1)))
    big = KeyValue(key="big", value=AnyValue(string_value="x" * (3 << 20)))
    huge = _item(signal, 1, attributes=[big]) if signal != "metrics" else _item(signal, 1, metadata=[big])
    many = b"".join(enc_len(2, _item(signal, i)) for i in range(3000))
    return {
        "unknown fields at every level": _with_unknown_fields(signal),
        **{
            f"padded tags ({t}) and lengths ({n})": _envelope(signal, t, n) for t, n in ((1, 2), (1, 5), (2, 1), (5, 3))
        },
        "a 3 MiB item between 3000 small ones": enc_len(1, enc_len(2, many + enc_len(2, huge) + many)),
        "two resources and two schema URLs": enc_len(
            1, enc_len(1, _resource("a")) + group + enc_len(3, b"u1") + enc_len(3, b"u2")
        ),
        "field number 0 in a scope group": enc_len(1, enc_len(2, b"\x02\x00" + enc_len(2, _item(signal, 1)))),
        "a group at request level": b"\x2b\x08\x01\x2c" + enc_len(1, group),
    }


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
def test_native_splits_hand_built_inputs_like_the_wire_path(signal: str, key: str) -> None:
    for name, payload in _hand_built(signal).items():
        for backends in RING_SIZES:
            native, python = _both(signal, key, payload, "ringleader", backends, 7)
            try:
                _assert_identical(native, python)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from None


# --------------------------------------------------------------------------------------
# Bad input: mutated, random, truncated, deeply nested
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_native_survives_mutated_requests_and_answers_like_the_wire_path(signal: str, data: st.DataObject) -> None:
    payload = data.draw(fuzz_inputs(signal))
    backends = data.draw(st.sampled_from(RING_SIZES))
    algorithm = data.draw(st.sampled_from(ALGORITHMS))
    seed = data.draw(st.integers(0, 2**64 - 1))
    for s, key in WIRE_KEYS:
        if s == signal:
            _assert_identical(*_both(signal, key, payload, algorithm, backends, seed))


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
@FUZZ_SETTINGS
@given(payload=st.binary(max_size=512))
def test_native_survives_random_bytes(signal: str, key: str, payload: bytes) -> None:
    _assert_identical(*_both(signal, key, payload, "upstream", 3, 0))


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
def test_native_survives_every_truncation_of_a_request(signal: str, key: str) -> None:
    payload = _envelope(signal)
    for cut in range(len(payload) + 1):
        _assert_identical(*_both(signal, key, payload[:cut], "ringleader", 3, 0))


def test_native_splitters_on_threads_share_one_table_and_split_alike() -> None:
    """The split runs without the interpreter lock: splitters on two threads, one shared table."""
    payloads = [_envelope("traces")] * 8 + [_with_unknown_fields("traces")] * 8
    _, table = _ring("ringleader", 5)
    expected = [NativeSplitter("traces", "traceID", 1).split(p, table).parts for p in payloads]

    def work(_: int) -> list[dict[int, tuple[bytes, int]]]:
        splitter = NativeSplitter("traces", "traceID", 1)
        return [splitter.split(p, table).parts for _ in range(50) for p in payloads][-len(payloads) :]

    with ThreadPoolExecutor(max_workers=2) as pool:
        for result in pool.map(work, range(4)):
            assert result == expected


def test_a_rust_panic_surfaces_as_a_python_exception_not_an_abort() -> None:
    with pytest.raises(BaseException, match="panic probe") as raised:
        _native._panic_probe()
    assert type(raised.value).__name__ == "PanicException"


def _nested(levels: int) -> bytes:
    """A Resource whose service.name is an AnyValue nested ``levels`` arrays deep (built by hand:
    the runtime refuses to serialize what it would refuse to parse)."""
    value = enc_len(1, b"leaf")
    for _ in range(levels):
        value = enc_len(5, enc_len(1, value))  # AnyValue { array_value { values { ... } } }
    return enc_len(1, enc_len(1, b"service.name") + enc_len(2, value))


@pytest.mark.parametrize(("signal", "key"), [(s, k) for s, k in WIRE_KEYS if k in ("service", "resource")])
def test_native_nesting_limit_is_the_runtimes(signal: str, key: str) -> None:
    """Resource attributes nested up to the runtime's recursion limit split; one level more is refused."""
    limit = None
    for levels in range(10, 100):
        try:
            Resource().MergeFromString(_nested(levels))
        except DecodeError:
            limit = levels - 1
            break
    assert limit is not None, "the runtime has a recursion limit"
    item = enc_len(1, b"\x01" * 16) if signal == "traces" else b"\x08\x01"
    if signal == "metrics":
        item = enc_len(1, b"m") + enc_len(5, enc_len(1, b""))  # a gauge with one data point
    for levels in (limit - 1, limit, limit + 1, 5000):
        payload = enc_len(1, enc_len(1, _nested(levels)) + enc_len(2, enc_len(2, item)))
        native, python = _both(signal, key, payload, "ringleader", 3, 0)
        _assert_identical(native, python)
        assert isinstance(native, Split) == (levels <= limit), levels


def test_without_a_ring_the_native_splitter_only_validates() -> None:
    """Before the resolver found a backend, a request is still checked (and split to part 0)."""
    splitter = NativeSplitter("traces", "traceID")
    split = splitter.split_ring(_envelope("traces"), None)
    assert list(split.parts) == [0] and split.items > 0
    with pytest.raises(MalformedError):
        splitter.split_ring(b"\xff\xff", None)
