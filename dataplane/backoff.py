"""Backoff: the delays between retries of a failed export.

Both retry levels of the exporter use the same policy, the collector's
``retry_on_failure`` block: exponential growth from ``initial_interval`` by
``multiplier`` up to ``max_interval``, each delay randomized by +/-
``randomization_factor`` (jitter), and no further retry once
``max_elapsed_time`` would pass (0 = retry for ever)::

    delays = backoff_for(cfg.retry_on_failure)
    delay = next(delays, None)   # None: give up

Reconnect loops that never give up (the ``k8s`` resolver's list/watch) use
:class:`Backoff`, the same schedule without an end, that starts over after a
success::

    backoff = Backoff(initial=1.0, maximum=30.0)
    await asyncio.sleep(backoff.next())   # 1 s, 2 s, 4 s, ... 30 s, each +/-20 %
    backoff.reset()                       # it worked: next failure waits 1 s again

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


class Backoff:
    """Endless exponential backoff with jitter (+/-``jitter``) that :meth:`reset` starts over."""

    def __init__(
        self, initial: float = 1.0, maximum: float = 30.0, multiplier: float = 2.0, jitter: float = 0.2
    ) -> None:
        self._cfg = RetryConfig(
            initial_interval=initial,
            randomization_factor=jitter,
            multiplier=multiplier,
            max_interval=maximum,
            max_elapsed_time=0.0,
        )
        self._delays = retry_delays(self._cfg)

    def reset(self) -> None:
        self._delays = retry_delays(self._cfg)

    def next(self) -> float:
        return next(self._delays)
