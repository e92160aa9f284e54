"""dataplane.backoff: the one schedule of retry delays, finite for exports and endless for reconnect loops."""

from __future__ import annotations

import itertools

from dataplane.backoff import Backoff


def test_reconnect_backoff_grows_to_its_cap_with_jitter_never_ends_and_starts_over_after_reset() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, multiplier=2.0, jitter=0.2)
    delays = [backoff.next() for _ in range(200)]
    for step, delay in enumerate(delays[:5]):
        nominal = 2.0**step
        assert nominal * 0.8 <= delay <= nominal * 1.2, (step, delay)
    assert all(30.0 * 0.8 <= d <= 30.0 * 1.2 for d in delays[10:])  # capped, still jittered, never exhausted
    assert len({round(d, 6) for d in delays[10:]}) > 1
    backoff.reset()
    assert 0.8 <= backoff.next() <= 1.2
    assert 1.6 <= backoff.next() <= 2.4


def test_two_reconnect_loops_do_not_retry_in_step() -> None:
    first, second = Backoff(), Backoff()
    pairs = list(itertools.islice(zip(iter(first.next, None), iter(second.next, None), strict=False), 20))
    assert any(abs(a - b) > 1e-9 for a, b in pairs)
