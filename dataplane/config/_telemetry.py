"""The top-level ``telemetry`` block: Ringleader's own metrics endpoint and log level."""

from __future__ import annotations

from ..config_model import TelemetryConfig
from ._values import Val


def parse_telemetry(value: Val | None) -> TelemetryConfig:
    telemetry = TelemetryConfig()
    if value is None:
        return telemetry
    block = value.mapping()
    endpoint = block.get("endpoint")
    level = block.get("log_level")
    block.done()
    return TelemetryConfig(
        endpoint=endpoint.hostport(allow_empty=True) if endpoint else telemetry.endpoint,
        log_level=level.choice(("debug", "info", "warn", "warning", "error")) if level else telemetry.log_level,
    )
