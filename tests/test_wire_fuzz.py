"""Fuzzing the splitters: mutated requests never crash them, and the paths agree where both accept.

Inputs are generated requests (tests/otlpgen.py) run through a few random mutations
(bit flips, byte overwrites, truncation, insertion, deletion, duplicated ranges,
splices of other valid requests, concatenation) or plain random bytes. Every input
goes to the decode path for every key of its signal and to the wire path for every
key it serves. What must hold:

- the only exceptions are ``MalformedError`` and ``InvalidRequestError`` (the
  receiver turns both into INVALID_ARGUMENT / HTTP 400); no IndexError, no
  RecursionError, no hang (pytest-timeout would end one);
- whenever the protobuf runtime parses the input and both paths split it, they
  agree: same backends, equal messages (unknown fields aside: the decode path
  rebuilds the envelope without them), equal counts; except for the documented
  difference of a span that starts with a trace ID and repeats it;
- when the runtime parses the input, the wire path refuses it only for a group
  (wire types 3/4, deprecated, never used by OTLP), and never finds a trace ID the
  decode path did not;
- when the wire path accepts what the runtime refuses (it does not validate the
  inside of items), every part it writes is still well framed down to the items.

docs/routing.md explains each of these rules. The example count is bounded (500 per
signal) so the file runs in under a minute; set ``FUZZ_EXAMPLES`` for a longer run.
With atheris installed, ``python -m tests.test_wire_fuzz -max_total_time=600`` runs
the same checks coverage-guided (optional, never part of the suite).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from dataplane.routing import InvalidRequestError, Split
from dataplane.wire import MalformedError
from tests.otlpgen import (
    ALL_KEYS,
    SIGNALS,
    WIRE_KEYS,
    enc_len,
    hash_lookup,
    parse,
    raw_fields,
    requests,
    spans_with_repeated_trace_id,
)
from tests.test_routing_properties import _envelope, assert_same_split, decode, wire

FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
_INTERESTING = (0x00, 0x01, 0x02, 0x07, 0x08, 0x0A, 0x0B, 0x12, 0x1A, 0x7F, 0x80, 0xFF)


@st.composite
def mutated(draw: st.DrawFn, data: bytes, donors: list[bytes]) -> bytes:
    """``data`` after one to four random edits."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "poke", "truncate", "insert", "delete", "duplicate", "splice")))
        at = draw(st.integers(0, len(buf)))
        if op == "flip" and buf:
            i = min(at, len(buf) - 1)
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "poke" and buf:
            buf[min(at, len(buf) - 1)] = draw(st.sampled_from(_INTERESTING))
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from(_INTERESTING).map(bytes)))
        elif op == "delete":
            del buf[at : at + draw(st.integers(1, 16))]
        elif op == "duplicate" and buf:
            start = draw(st.integers(0, len(buf) - 1))
            buf[at:at] = buf[start : start + draw(st.integers(1, 64))]
        elif op == "splice":
            donor = draw(st.sampled_from(donors))
            start = draw(st.integers(0, len(donor)))
            buf[at : at + draw(st.integers(0, 32))] = donor[start : start + draw(st.integers(0, 128))]
    return bytes(buf)


@st.composite
def fuzz_inputs(draw: st.DrawFn, signal: str) -> bytes:
    base: bytes = draw(requests(signal)).SerializeToString()
    other_signal = draw(st.sampled_from(SIGNALS))
    donor: bytes = draw(requests(other_signal, max_resources=2)).SerializeToString()
    kind = draw(st.sampled_from(("mutated", "mutated", "mutated", "concatenated", "random")))
    if kind == "random":
        return bytes(draw(st.binary(max_size=256)))
    if kind == "concatenated":  # a valid request too: repeated fields concatenate
        return base + donor
    return bytes(draw(mutated(base, [base, donor])))


Outcome = Split | MalformedError | InvalidRequestError


def _run(splitter: object, data: bytes, lookup: object) -> Outcome:
    try:
        return splitter.split(data, lookup)  # type: ignore[attr-defined, no-any-return]
    except (MalformedError, InvalidRequestError) as exc:  # the only exceptions allowed
        return exc


def _assert_well_framed(part: bytes) -> None:
    """Request, resource groups and scope groups frame correctly; items are copied bytes."""
    for group in raw_fields(part):
        if (group.number, group.wire_type) == (1, 2):
            for scope_group in raw_fields(group.value):
                if (scope_group.number, scope_group.wire_type) == (2, 2):
                    raw_fields(scope_group.value)


def _check(signal: str, data: bytes, backends: int, seed: int, note: Callable[[str], None] = print) -> None:
    lookup = hash_lookup(backends)
    try:
        parse(signal, data)
        runtime_ok = True
    except DecodeError:
        runtime_ok = False
    for key in ALL_KEYS[signal]:
        d = _run(decode(signal, key, seed), data, lookup)
        assert isinstance(d, InvalidRequestError | Split) == runtime_ok, "decode fails exactly when the runtime does"
        if (signal, key) not in WIRE_KEYS:
            continue
        w = _run(wire(signal, key, seed), data, lookup)
        documented = signal == "traces" and key == "traceID" and spans_with_repeated_trace_id(data)
        if isinstance(w, Split):
            for part, _ in w.parts.values():
                _assert_well_framed(part)
            assert sum(count for _, count in w.parts.values()) == w.items
        if not runtime_ok:
            note(f"runtime refuses; wire path {'accepts' if isinstance(w, Split) else 'refuses'}")
            continue
        if isinstance(w, MalformedError):
            assert str(w) in ("unsupported wire type 3", "unsupported wire type 4"), f"wire path refused: {w}"
            note("wire path refuses a group the runtime accepts")
            continue
        if documented:
            note("span repeats its leading trace ID (documented)")
            continue
        if isinstance(d, InvalidRequestError) or isinstance(w, InvalidRequestError):
            assert type(w) is type(d), f"wire: {w!r}, decode: {d!r}"
            continue
        assert isinstance(w, Split) and isinstance(d, Split)
        assert_same_split(signal, w, d, discard_unknown=True)
        note("both paths split it and agree")


@pytest.mark.parametrize("signal", SIGNALS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_splitters_survive_mutated_requests_and_agree_where_both_accept(signal: str, data: st.DataObject) -> None:
    payload = data.draw(fuzz_inputs(signal))
    _check(signal, payload, data.draw(st.integers(1, 5)), data.draw(st.integers(0, 2**32 - 1)), event)


@pytest.mark.parametrize("signal", SIGNALS)
def test_splitters_survive_deeply_nested_values(signal: str) -> None:
    """Nesting far beyond the runtime's recursion limit is refused, never a RecursionError."""
    shallow = AnyValue(string_value="leaf")
    for _ in range(40):  # 80 levels of messages, within the runtime limit of 100: accepted
        shallow = AnyValue(array_value=ArrayValue(values=[shallow]))
    deep = b"\x0a\x04leaf"
    for _ in range(5000):
        deep = enc_len(5, enc_len(1, deep))  # AnyValue { array_value { values { ... } } }
    item = Span(trace_id=b"\x01" * 16).SerializeToString() if signal == "traces" else b""
    for value, accepted in ((shallow.SerializeToString(), True), (deep, False)):
        attribute = enc_len(1, enc_len(1, b"service.name") + enc_len(2, value))  # Resource.attributes
        payload = enc_len(1, enc_len(1, attribute) + enc_len(2, enc_len(2, item)))
        _check(signal, payload, 3, 0)
        for key in ALL_KEYS[signal]:
            assert isinstance(_run(decode(signal, key), payload, hash_lookup(3)), Split) == accepted


@pytest.mark.parametrize(("signal", "key"), WIRE_KEYS)
def test_wire_path_refuses_a_group_that_the_runtime_skips(signal: str, key: str) -> None:
    """Documented difference: groups (wire types 3/4) are deprecated and never OTLP; the wire path refuses them."""
    group = b"\x2b\x08\x01\x2c"  # field 5: start group, a varint field, end group
    payload = enc_len(1, group + enc_len(2, enc_len(2, b"")))
    parse(signal, payload)  # the runtime keeps it as an unknown field
    outcome = _run(wire(signal, key), payload, hash_lookup(2))
    assert isinstance(outcome, MalformedError) and str(outcome) == "unsupported wire type 3"


@pytest.mark.parametrize("signal", SIGNALS)
def test_splitters_survive_every_truncation_of_a_request(signal: str) -> None:
    """Exhaustive over cut points, where random mutation only samples them."""
    payload = _envelope(signal)
    for cut in range(len(payload)):
        _check(signal, payload[:cut], 3, 0)


# --------------------------------------------------------------------------------------
# Optional coverage-guided harness (not part of the test suite)
# --------------------------------------------------------------------------------------


def _atheris_main(argv: list[str]) -> None:
    """Run the same checks under atheris/libFuzzer: ``python -m tests.test_wire_fuzz -max_total_time=600``.

    The first input byte picks the signal and the backend count; the rest is the request.
    A seed corpus of valid requests (written to a temporary directory) is used unless
    corpus directories are given.
    """
    import tempfile
    from pathlib import Path

    import atheris  # type: ignore[import-not-found]

    from tests.test_routing_properties import _with_unknown_fields

    args = argv[1:]
    if not any(not a.startswith("-") for a in args):
        corpus = Path(tempfile.mkdtemp(prefix="wire-fuzz-corpus-"))
        for i, signal in enumerate(SIGNALS):
            for j, seed in enumerate((_envelope(signal), _with_unknown_fields(signal), _envelope(signal, 2, 3))):
                (corpus / f"{signal}-{j}").write_bytes(bytes([i + 3 * j]) + seed)
        args.append(str(corpus))

    def one_input(data: bytes) -> None:
        if data:
            _check(SIGNALS[data[0] % 3], data[1:], data[0] // 3 % 5 + 1, 0, lambda _: None)

    # Coverage of the splitters is what guides the fuzzer: instrument their code in place
    # (instrumenting everything loaded, protobuf and hypothesis included, takes minutes).
    import importlib
    import inspect
    import pkgutil

    import dataplane.routing
    import dataplane.wire

    modules = [dataplane.wire, dataplane.routing]
    modules += [
        importlib.import_module(f"dataplane.routing.{info.name}")
        for info in pkgutil.iter_modules(dataplane.routing.__path__)
    ]
    for module in modules:
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                atheris.instrument_func(obj)
            elif inspect.isclass(obj):
                for member in vars(obj).values():
                    if inspect.isfunction(member):
                        atheris.instrument_func(member)
    atheris.Setup([argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    import sys

    _atheris_main(sys.argv)
