"""The native ring builder writes exactly the cells of the Python reference, for every algorithm."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.ring import ALGORITHMS, NoBackendsError, build_ring, build_ring_reference

ENDPOINT = st.one_of(
    st.builds(lambda a, b, p: f"10.{a}.{b}.7:{p}", st.integers(0, 255), st.integers(0, 255), st.integers(1, 65535)),
    st.text(min_size=1, max_size=30),  # any string: unicode, ":", spaces
)


def _same(algorithm: str, endpoints: list[str]) -> None:
    native, reference = build_ring(algorithm, endpoints), build_ring_reference(algorithm, endpoints)
    assert native.endpoints == reference.endpoints
    assert native._cells.typecode == reference._cells.typecode
    assert native._cells == reference._cells
    assert native.shares() == reference.shares()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 40])
def test_the_native_ring_equals_the_reference(algorithm: str, size: int) -> None:
    _same(algorithm, [f"sampler-{i}.tier2.svc:4317" for i in range(size)])


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "ringleader"])
@settings(max_examples=25, deadline=None)
@given(endpoints=st.lists(ENDPOINT, min_size=1, max_size=12))
def test_upstream_rings_agree_on_any_endpoints_duplicates_included(algorithm: str, endpoints: list[str]) -> None:
    _same(algorithm, endpoints)


@settings(max_examples=6, deadline=None)
@given(endpoints=st.lists(ENDPOINT, min_size=1, max_size=12, unique=True))
def test_ringleader_rings_agree_on_any_endpoints(endpoints: list[str]) -> None:
    _same("ringleader", endpoints)


def test_a_ring_with_more_than_65535_backends_uses_four_byte_cells() -> None:
    endpoints = [f"e{i}" for i in range(70_000)]
    ring = build_ring("upstream", endpoints)
    assert ring._cells.typecode == "I" and max(ring._cells) >= 0xFFFF
    assert ring._cells == build_ring_reference("upstream", endpoints)._cells


def test_bad_input_is_refused_like_the_reference() -> None:
    with pytest.raises(NoBackendsError):
        build_ring("ringleader", [])
    with pytest.raises(TypeError):
        build_ring("ringleader", "10.0.0.1:4317")
    with pytest.raises(ValueError, match="unknown ring algorithm"):
        build_ring("maglev", ["a"])
