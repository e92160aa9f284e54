"""Backoff: the delays between retries of a failed export.

Both retry levels of the exporter use the same policy, the collector's
``retry_on_failure`` block: exponential growth from ``initial_interval`` by
``multiplier`` up to ``max_interval``, each delay randomized by +/-
``randomization_factor`` (jitter), and no further retry once
``max_elapsed_time`` would pass (0 = retry for ever)::

    delays = backoff_for(cfg.retry_on_failure)
    delay = next(delays, None)   # None: give up

This is the one place the data plane computes retry delays.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .config_model import RetryConfig


def retry_delays(cfg: RetryConfig, rng: random.Random | None = None) -> Iterator[float]:
    """Backoff delays for successive retries; stops when max_elapsed_time would pass."""
    rand = rng or random.Random()
    interval = cfg.initial_interval
    elapsed = 0.0
    while True:
        delta = cfg.randomization_factor * interval
        delay = interval - delta + rand.random() * (2 * delta)
        if cfg.max_elapsed_time and elapsed + delay > cfg.max_elapsed_time:
            return
        elapsed += delay
        yield delay
        interval = min(interval * cfg.multiplier, cfg.max_interval)


def backoff_for(cfg: RetryConfig) -> Iterator[float]:
    """The delays ``cfg`` allows: none at all when retrying is disabled."""
    return retry_delays(cfg) if cfg.enabled else iter(())
