"""``sending_queue`` and ``retry_on_failure`` blocks (exporter level and per backend)."""

from __future__ import annotations

from typing import Any, cast

from ..config_model import (
    QueueConfig,
    RetryConfig,
)
from ._errors import ConfigError, join
from ._values import Val


def parse_queue(value: Val | None, *, enabled_by_default: bool) -> QueueConfig:
    """A ``sending_queue`` block merged onto the defaults.

    As in the collector, writing the block at all turns the queue on (the
    exporter-level queue is off only while absent); ``enabled: false`` turns it off.
    """
    if value is None:
        return QueueConfig(enabled=enabled_by_default)
    block = value.mapping()
    defaults = QueueConfig()
    enabled = block.get("enabled")
    consumers = block.get("num_consumers")
    size = block.get("queue_size")
    sizer = block.get("sizer")
    block_on_overflow = block.get("block_on_overflow")
    blocking = block.get("blocking")  # deprecated upstream alias of block_on_overflow
    wait = block.get("wait_for_result")
    if wait is not None and wait.boolean():
        wait.fail("not supported by Ringleader (data is acknowledged once queued); remove it or set false")
    block.done(
        {
            "storage": "persistent queues are not supported (Ringleader's queues are in memory); remove it",
            "batch": "batching in the queue is not supported by Ringleader; remove it",
        }
    )
    overflow = defaults.block_on_overflow
    if blocking is not None:
        overflow = blocking.boolean()
    if block_on_overflow is not None:
        overflow = block_on_overflow.boolean()
    return QueueConfig(
        enabled=enabled.boolean() if enabled else True,
        num_consumers=consumers.integer(minimum=1) if consumers else defaults.num_consumers,
        queue_size=size.integer(minimum=1) if size else defaults.queue_size,
        sizer=cast(Any, sizer.choice(("requests", "items", "bytes"))) if sizer else defaults.sizer,
        block_on_overflow=overflow,
    )


def parse_retry(value: Val | None, *, enabled_by_default: bool) -> RetryConfig:
    defaults = RetryConfig()
    if value is None:
        return RetryConfig(enabled=enabled_by_default)
    block = value.mapping()
    enabled = block.get("enabled")
    initial = block.get("initial_interval")
    factor = block.get("randomization_factor")
    multiplier = block.get("multiplier")
    max_interval = block.get("max_interval")
    max_elapsed = block.get("max_elapsed_time")
    block.done()
    result = RetryConfig(
        enabled=enabled.boolean() if enabled else enabled_by_default,
        initial_interval=initial.duration(positive=True) if initial else defaults.initial_interval,
        randomization_factor=factor.number(minimum=0, maximum=1) if factor else defaults.randomization_factor,
        multiplier=multiplier.number(minimum=1) if multiplier else defaults.multiplier,
        max_interval=max_interval.duration(positive=True) if max_interval else defaults.max_interval,
        max_elapsed_time=max_elapsed.duration() if max_elapsed else defaults.max_elapsed_time,
    )
    if result.max_interval < result.initial_interval:
        raise ConfigError(
            join(block.path, "max_interval"),
            f"must not be below initial_interval ({result.max_interval:g}s < {result.initial_interval:g}s)",
        )
    return result
