"""Ringleader's own telemetry: the top-level ``telemetry`` block, or a collector's ``service.telemetry``.

``telemetry: {endpoint, log_level}`` is Ringleader's form. A collector config's
``service.telemetry`` maps onto the same two settings:

- ``logs.level`` -> ``log_level`` (``dpanic``, ``panic`` and ``fatal`` -> ``error``);
- ``metrics.address`` or the one Prometheus pull reader
  (``metrics.readers[].pull.exporter.prometheus.{host,port}``) -> ``endpoint``;
- everything else (log encoding and sampling, metrics level and views, periodic
  push readers, traces, resource) has no Ringleader counterpart: ignored with one
  warning per block. It concerns the process's own telemetry, never the data.

When both forms set the same thing they must agree.
"""

from __future__ import annotations

import logging

from ..config_model import TelemetryConfig
from ..hostport import join_host_port
from ._errors import ConfigError
from ._values import Val

log = logging.getLogger("ringleader.config")

_LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
_COLLECTOR_LOG_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "error": "error",
                         "dpanic": "error", "panic": "error", "fatal": "error"}  # fmt: skip


def parse_telemetry(value: Val | None, service_telemetry: Val | None = None) -> TelemetryConfig:
    defaults = TelemetryConfig()
    endpoint: str | None = None
    log_level: str | None = None
    if value is not None:
        block = value.mapping()
        endpoint_val = block.get("endpoint")
        level_val = block.get("log_level")
        block.done()
        endpoint = endpoint_val.hostport(allow_empty=True) if endpoint_val else None
        log_level = level_val.choice(_LOG_LEVELS) if level_val else None
    if service_telemetry is not None:
        collector_endpoint, collector_level = _collector_telemetry(service_telemetry)
        if collector_endpoint is not None:
            if endpoint is not None and endpoint != collector_endpoint:
                raise ConfigError(
                    "telemetry.endpoint",
                    f"{endpoint!r} disagrees with service.telemetry's metrics endpoint {collector_endpoint!r}; "
                    "set one of them",
                )
            endpoint = collector_endpoint
        if collector_level is not None and log_level is None:
            log_level = collector_level
    return TelemetryConfig(
        endpoint=defaults.endpoint if endpoint is None else endpoint,
        log_level=log_level or defaults.log_level,
    )


def _collector_telemetry(value: Val) -> tuple[str | None, str | None]:
    block = value.mapping()
    logs = block.get("logs")
    metrics = block.get("metrics")
    for key in ("traces", "resource"):
        if (other := block.get(key)) is not None:
            log.warning("%s is ignored: Ringleader has no counterpart for it", other.path)
    block.done()
    level: str | None = None
    if logs is not None:
        logs_block = logs.mapping()
        level_val = logs_block.get("level")
        if level_val is not None:
            text = level_val.string().lower()
            if text not in _COLLECTOR_LOG_LEVELS:
                level_val.fail(f"invalid log level {text!r}; valid values: {', '.join(_COLLECTOR_LOG_LEVELS)}")
            level = _COLLECTOR_LOG_LEVELS[text]
        _ignore_rest(logs_block.path, [k for k in logs_block.names() if k != "level"])
    endpoint: str | None = None
    if metrics is not None:
        metrics_block = metrics.mapping()
        address = metrics_block.get("address")
        readers = metrics_block.get("readers")
        if address is not None and not address.is_null:
            endpoint = address.hostport(allow_empty=True)
        pull_endpoints: list[tuple[str, str]] = []
        pushed = 0
        for reader in readers.items() if readers is not None and not readers.is_null else []:
            entry = reader.mapping()
            pull = entry.get("pull")
            prometheus = _dig(pull, "exporter", "prometheus") if pull is not None else None
            if prometheus is None:
                pushed += 1
                continue
            prom = prometheus.mapping()
            host = prom.get("host")
            port = prom.get("port")
            if port is None:
                raise ConfigError(f"{prom.path}.port", "required (the port to serve Ringleader's metrics on)")
            pull_endpoints.append((prom.path, join_host_port(host.string() if host else "", port.port())))
        if pushed:
            log.warning(
                "%s.readers: %d push reader(s) ignored: Ringleader's metrics are scraped only", metrics.path, pushed
            )
        if len(pull_endpoints) > 1:
            raise ConfigError(pull_endpoints[1][0], "Ringleader serves its metrics on one endpoint; keep one reader")
        if pull_endpoints:
            if endpoint is not None and endpoint != pull_endpoints[0][1]:
                raise ConfigError(pull_endpoints[0][0], f"disagrees with metrics.address {endpoint!r}; set one")
            endpoint = pull_endpoints[0][1]
        _ignore_rest(metrics_block.path, [k for k in metrics_block.names() if k not in ("address", "readers")])
    return endpoint, level


def _dig(value: Val, *keys: str) -> Val | None:
    current: Val | None = value
    for key in keys:
        if current is None or not isinstance(current.raw, dict) or key not in current.raw:
            return None
        current = current.mapping().child(key)
    return current


def _ignore_rest(path: str, keys: list[str]) -> None:
    if keys:
        log.warning("%s: %s ignored: Ringleader has no counterpart", path, ", ".join(keys))
