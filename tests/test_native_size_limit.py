"""The native size limit (``_native.fit_parts``) cuts parts exactly as ``SizeLimit.fit`` does.

The Rust cut (dataplane/native/src/size_limit.rs) is a port of dataplane/size_limit.py,
so the claim is the simplest one: for every input and every limit it returns the *same
chunks, byte for byte, with the same item counts* (``dataplane.routing.count_items``), or
refuses with the same class: ``ItemTooLarge`` with the very text of ``ItemTooLargeError``,
or ``MalformedInput`` where Python raises ``MalformedError``. tests/test_size_limit.py
proves the Python cut right (chunks under the limit, every atom once, in order); equal
bytes carry that over.

Inputs: generated requests of every signal (tests/otlpgen.py) under limits from a few
bytes (every item too large) to above their size (returned whole); hand-built requests
with padded tags and lengths, unknown fields at every level and a metric carrying two
kinds of data, at *every* limit; a 16 MiB trace request (40 000 spans) at 4 MiB; and mutated, random and
truncated bytes (tests/test_wire_fuzz.py's strategies), where only the two refusals may
come out: a Rust panic would surface as pyo3's ``PanicException``, a ``BaseException``
this file does not catch, so the test fails.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, Sum

from dataplane import _native
from dataplane.queue import Batch
from dataplane.routing import count_items
from dataplane.size_limit import ItemTooLargeError, SizeLimit
from dataplane.wire import MalformedError
from e2e.bench import build_request
from tests.otlpgen import SIGNALS, enc_len, requests
from tests.test_routing_properties import _envelope, _with_unknown_fields
from tests.test_wire_fuzz import FUZZ_SETTINGS, fuzz_inputs

# ("fit", [(chunk, items), ...]) | ("too large", message) | ("malformed", None)
Outcome = tuple[str, object]

CUT_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def python_fit(signal: str, payload: bytes, limit: int) -> Outcome:
    try:
        chunks = SizeLimit(limit).fit(Batch(signal, payload, count_items(signal, payload)))
    except ItemTooLargeError as exc:
        return ("too large", str(exc))
    except MalformedError:
        return ("malformed", None)
    return ("fit", [(bytes(c.payload), c.items) for c in chunks])


def native_fit(signal: str, payload: bytes, limit: int) -> Outcome:
    try:
        return ("fit", _native.fit_parts(signal, payload, limit))
    except _native.ItemTooLarge as exc:
        return ("too large", str(exc))
    except _native.MalformedInput:
        return ("malformed", None)


def assert_same_cut(signal: str, payload: bytes, limit: int) -> str:
    """Both cut ``payload`` alike; returns the outcome's kind."""
    expected = python_fit(signal, payload, limit)
    assert native_fit(signal, payload, limit) == expected, f"{signal}, limit {limit}, {len(payload)} bytes"
    cut = expected[0] == "fit" and len(payload) > limit
    if cut:
        assert all(len(chunk) <= limit for chunk, _ in expected[1])  # type: ignore[attr-defined]
    if currently_in_test_context():  # --hypothesis-show-statistics tells how often each case came up
        event("cut" if cut else "whole" if expected[0] == "fit" else expected[0])
    return expected[0]


def limits_for(payload: bytes) -> st.SearchStrategy[int]:
    """From a few bytes (no item fits) through the item sizes to above the whole request."""
    size = len(payload)
    return st.one_of(st.integers(0, 64), st.integers(size // 4, size), st.integers(64, max(64, size + 16)))


# --------------------------------------------------------------------------------------
# Valid requests
# --------------------------------------------------------------------------------------


@CUT_SETTINGS
@given(data=st.data(), signal=st.sampled_from(SIGNALS))
def test_native_cuts_generated_requests_into_pythons_chunks_and_counts(data: st.DataObject, signal: str) -> None:
    payload = data.draw(requests(signal, max_resources=4, max_scopes=3, max_items=8)).SerializeToString()
    for _ in range(4):
        assert_same_cut(signal, payload, data.draw(limits_for(payload)))


def _two_kinds_of_data(points: int) -> bytes:
    """A metric whose gauge is replaced by a later sum (a oneof): the cut keeps the first, the count the last."""
    gauge = Metric(name="g", gauge=Gauge(data_points=[NumberDataPoint(as_int=i) for i in range(points)]))
    summed = Metric(sum=Sum(data_points=[NumberDataPoint(as_double=i) for i in range(points + 1)]))
    metric = gauge.SerializeToString() + summed.SerializeToString()
    return enc_len(1, enc_len(2, enc_len(2, metric) * 3))


HAND_BUILT = {
    "canonical": lambda signal: _envelope(signal),
    "padded tags": lambda signal: _envelope(signal, tag_len=2),
    "padded lengths": lambda signal: _envelope(signal, len_len=3),
    "padded both": lambda signal: _envelope(signal, tag_len=5, len_len=5),
    "unknown fields": _with_unknown_fields,
    "two kinds of data": lambda _signal: _two_kinds_of_data(6),
}


@pytest.mark.parametrize(
    ("signal", "shape"),
    [(s, shape) for s in SIGNALS for shape in HAND_BUILT if s == "metrics" or shape != "two kinds of data"],
)
def test_native_cuts_hand_built_requests_like_python_at_every_limit(signal: str, shape: str) -> None:
    payload = HAND_BUILT[shape](signal)
    kinds = [assert_same_cut(signal, payload, limit) for limit in range(len(payload) + 2)]
    chunks = [len(native_fit(signal, payload, limit)[1]) for limit, k in enumerate(kinds) if k == "fit"]  # type: ignore[arg-type]
    # The sweep crosses every regime: single items too large, real cuts, the part whole.
    assert "too large" in kinds and max(chunks) > 2 and chunks[-1] == 1


def test_a_16_mib_trace_request_is_cut_at_4_mib_like_python() -> None:
    payload = build_request(seed=1, spans=40_000)
    limit = 4 * 1024 * 1024
    parts = _native.fit_parts("traces", payload, limit)
    assert len(parts) >= 3 and sum(items for _, items in parts) == 40_000
    assert native_fit("traces", payload, limit) == python_fit("traces", payload, limit)


def test_a_single_item_over_the_limit_is_refused_in_pythons_words() -> None:
    payload = build_request(seed=2, spans=2, attributes=200)
    with pytest.raises(_native.ItemTooLarge) as native:
        _native.fit_parts("traces", payload, 1024)
    with pytest.raises(ItemTooLargeError) as python:
        SizeLimit(1024).check("traces", payload)
    assert str(native.value) == str(python.value) and "exceeds the export size limit" in str(native.value)
    assert issubclass(_native.ItemTooLarge, ValueError)


def test_a_part_that_fits_comes_back_as_the_same_object_with_its_count() -> None:
    payload = build_request(seed=3, spans=100)
    [(chunk, items)] = _native.fit_parts("traces", payload, len(payload))
    assert chunk is payload and items == 100


def test_an_unknown_signal_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        _native.fit_parts("profiles", b"", 10)


def test_cuts_on_threads_run_at_once_and_agree() -> None:
    """fit_parts runs without the interpreter lock: four threads cut the same request alike."""
    payload = build_request(seed=4, spans=4000)
    expected = python_fit("traces", payload, 100_000)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: native_fit("traces", payload, 100_000), range(8)))
    assert all(r == expected for r in results)


# --------------------------------------------------------------------------------------
# Bad input: mutated, random, truncated
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_native_survives_mutated_requests_and_answers_like_python(signal: str, data: st.DataObject) -> None:
    payload = data.draw(fuzz_inputs(signal))
    for _ in range(3):
        assert_same_cut(signal, payload, data.draw(limits_for(payload)))


@pytest.mark.parametrize("signal", SIGNALS)
@FUZZ_SETTINGS
@given(data=st.data(), payload=st.binary(max_size=512))
def test_native_survives_random_bytes(signal: str, data: st.DataObject, payload: bytes) -> None:
    assert_same_cut(signal, payload, data.draw(limits_for(payload)))


@pytest.mark.parametrize("signal", SIGNALS)
def test_native_survives_every_truncation_of_a_request(signal: str) -> None:
    payload = _with_unknown_fields(signal)
    for cut in range(len(payload) + 1):
        for limit in (0, 40, 150, 400):
            assert_same_cut(signal, payload[:cut], limit)
