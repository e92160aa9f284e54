"""Parts over the export size limit are cut at item boundaries into valid, complete requests.

Generated requests of every signal (tests/otlpgen.py) cut under a limit well below
their size: every chunk is at most the limit, parses, states its item count
correctly, and the chunks together hold exactly the original items (atoms: each
span / log record / data point with its resource, scope and metric), in order.
A single item that cannot fit is refused as a whole.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.queue import Batch
from dataplane.routing import count_items
from dataplane.size_limit import ItemTooLargeError, SizeLimit
from e2e.bench import build_request
from tests.otlpgen import SIGNALS, atoms, parse, requests


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), signal=st.sampled_from(SIGNALS))
def test_a_cut_part_keeps_every_item_once_in_chunks_under_the_limit(data: st.DataObject, signal: str) -> None:
    request = data.draw(requests(signal, max_resources=4, max_scopes=3, max_items=8))
    payload = request.SerializeToString()
    limit = data.draw(st.integers(min_value=1024, max_value=max(1024, len(payload))))
    chunks = SizeLimit(limit).fit(Batch(signal, payload, count_items(signal, payload)))
    assert all(len(c.payload) <= limit for c in chunks)
    if len(payload) <= limit:
        assert [c.payload for c in chunks] == [payload]
    cut_atoms = [a for c in chunks for a in atoms(signal, parse(signal, c.payload))]
    assert cut_atoms == atoms(signal, request)
    assert [c.items for c in chunks] == [len(atoms(signal, parse(signal, c.payload))) for c in chunks]


def test_a_large_trace_request_is_cut_into_requests_under_4_mib() -> None:
    payload = build_request(seed=1, spans=40_000)  # about 10 MiB
    limit = 4 * 1024 * 1024
    assert len(payload) > 2 * limit
    chunks = SizeLimit(limit).fit(Batch("traces", payload, 40_000))
    assert len(chunks) >= 3
    assert all(len(c.payload) <= limit for c in chunks)
    spans = Counter(
        s.span_id
        for c in chunks
        for rs in parse("traces", c.payload).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    )
    assert len(spans) == 40_000 and max(spans.values()) == 1
    assert sum(c.items for c in chunks) == 40_000


def test_a_single_item_over_the_limit_cannot_be_cut() -> None:
    payload = build_request(seed=2, spans=2, attributes=200)
    with pytest.raises(ItemTooLargeError):
        SizeLimit(1024).check("traces", payload)
