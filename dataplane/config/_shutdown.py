"""The top-level ``shutdown`` block: how long a stopping process drains its queues."""

from __future__ import annotations

from ..config_model import ShutdownConfig
from ._values import Val


def parse_shutdown(value: Val | None) -> ShutdownConfig:
    shutdown = ShutdownConfig()
    if value is None:
        return shutdown
    block = value.mapping()
    drain = block.get("drain_timeout")
    block.done()
    return ShutdownConfig(drain_timeout=drain.duration() if drain else shutdown.drain_timeout)
