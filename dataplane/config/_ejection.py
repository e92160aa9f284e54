"""``exporters.loadbalancing.ejection`` (Ringleader): passive ejection of failing backends."""

from __future__ import annotations

from ..config_model import EjectionConfig
from ._values import Val


def parse_ejection(value: Val | None) -> EjectionConfig:
    defaults = EjectionConfig()
    if value is None:
        return defaults
    block = value.mapping()
    enabled = block.get("enabled")
    failures = block.get("consecutive_failures")
    window = block.get("window")
    cooldown = block.get("cooldown")
    interval = block.get("probe_interval")
    timeout = block.get("probe_timeout")
    percent = block.get("max_ejected_percent")
    block.done()
    return EjectionConfig(
        enabled=enabled.boolean() if enabled else defaults.enabled,
        consecutive_failures=failures.integer(minimum=1) if failures else defaults.consecutive_failures,
        window=window.duration(positive=True) if window else defaults.window,
        cooldown=cooldown.duration() if cooldown else defaults.cooldown,
        probe_interval=interval.duration(positive=True) if interval else defaults.probe_interval,
        probe_timeout=timeout.duration(positive=True) if timeout else defaults.probe_timeout,
        max_ejected_percent=percent.integer(minimum=0, maximum=100) if percent else defaults.max_ejected_percent,
    )
