"""``exporters.loadbalancing.coalesce`` (Ringleader): one export for many queued parts."""

from __future__ import annotations

from ..config_model import CoalesceConfig
from ._values import Val


def parse_coalesce(value: Val | None) -> CoalesceConfig:
    defaults = CoalesceConfig()
    if value is None:
        return defaults
    block = value.mapping()
    size = block.get("max_size")
    delay = block.get("max_delay")
    block.done()
    return CoalesceConfig(
        max_size=size.size() if size is not None else defaults.max_size,
        max_delay=delay.duration() if delay is not None else defaults.max_delay,
    )
