"""Loading and validating the data plane's YAML configuration.

The file is shaped like an OpenTelemetry Collector configuration, so a tier-1
collector's config works as it is (its ``batch`` and ``memory_limiter``
processors, ``health_check``/``pprof``/``zpages`` extensions and
``service.telemetry`` included, see ``_collector``)::

    receivers:
      otlp:
        protocols:
          grpc:                 # present (even empty) = enabled
          http:
            endpoint: 0.0.0.0:4318
    exporters:
      loadbalancing:            # upstream's block, as it is
        routing_key: traceID
        protocol:
          otlp:
            tls: {insecure: true}
        resolver:
          dns: {hostname: tier2-headless.observability.svc.cluster.local, port: 4317}
    service:                    # optional; decides which signals are accepted
      pipelines:
        traces: {receivers: [otlp], exporters: [loadbalancing]}
    telemetry: {endpoint: "0.0.0.0:8888", log_level: info}   # Ringleader's own
    shutdown: {drain_timeout: 30s}                           # Ringleader's own

Use :func:`load_config` for a file and :func:`parse_config` for data already
loaded (tests, the operator). Both return a :class:`dataplane.config_model.Config`
or raise :class:`ConfigError`, whose ``str()`` is one line naming the key::

    config error at exporters.loadbalancing.resolver: exactly one resolver must be set, found 2 (dns, static)

Semantics follow the collector: values are strictly typed (durations are Go
duration strings such as ``"5s"``, booleans are YAML ``true``/``false``), unknown
keys are errors, a partial block (``retry_on_failure: {max_interval: 10s}``) is
merged onto the defaults, and ``${env:NAME}`` / ``${NAME}`` in string values are
replaced by environment variables (``$$`` is a literal ``$``). docs/configuration.md
is the full reference.

A tier-1 collector's config works as it is: ``_collector`` says what each of its
other components (processors, extensions, service.telemetry) becomes: honoured,
ignored with one warning, or refused with its key path.

A Grafana Alloy file (``*.alloy``) is read as the collector config it describes
(``_alloy``).

Layout: one private module per part of the file (``_receivers``, ``_exporters``,
``_resolvers``, ``_otlp``, ``_sending``, ``_coalesce``, ``_ejection``, ``_service``,
``_collector``, ``_telemetry``, ``_shutdown``, ``_memory``, ``_data_path``, ``_alloy``) over the shared
layers that read it (``_yaml``, ``_env``, ``_units``, ``_values``, ``_components``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

from ..config_model import Config
from ._alloy import alloy_to_collector
from ._collector import check_connectors, parse_extensions, parse_processors
from ._data_path import parse_data_path
from ._env import expand
from ._errors import ConfigError
from ._exporters import parse_exporters
from ._memory import parse_memory
from ._receivers import parse_receivers
from ._service import enabled_signals, read_service
from ._shutdown import parse_shutdown
from ._telemetry import parse_telemetry
from ._units import parse_duration, parse_size
from ._values import Map, type_name
from ._yaml import load_yaml

__all__ = ["ConfigError", "load_config", "parse_config", "parse_duration", "parse_size"]

_TOP_LEVEL = (
    "receivers",
    "exporters",
    "service",
    "processors",
    "extensions",
    "connectors",
    "telemetry",
    "shutdown",
    "memory",
    "data_path",
)


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-loaded YAML data (env references not yet expanded)."""
    if data is None:
        raise ConfigError("", f"{source}: the configuration is empty")
    if not isinstance(data, dict):
        raise ConfigError("", f"{source}: expected a mapping at the top level, got {type_name(data)}")
    root = Map("", cast("dict[object, object]", expand(data, "")))
    for key in root.names():
        if key not in _TOP_LEVEL:
            raise ConfigError(key, f"unknown top-level key (valid keys: {', '.join(_TOP_LEVEL)})")
    service = read_service(root.get("service"))
    receiver_id, receivers = parse_receivers(root, service)
    exporter_id, lb = parse_exporters(root, service)
    signals = enabled_signals(service, exporter_id, lb)
    memory_limit = parse_processors(root, service)
    check_connectors(root)
    telemetry = parse_telemetry(root.get("telemetry"), service.telemetry)
    health_check = parse_extensions(root, service, telemetry.endpoint)
    shutdown = parse_shutdown(root.get("shutdown"))
    memory = parse_memory(root.get("memory"), memory_limit)
    data_path = parse_data_path(root.get("data_path"))
    root.done()
    return Config(
        receivers=receivers,
        exporter=lb,
        telemetry=telemetry,
        shutdown=shutdown,
        memory=memory,
        data_path=data_path,
        signals=signals,
        health_check=health_check,
        receiver_id=receiver_id,
        exporter_id=exporter_id,
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, expand and validate a YAML config file (or a Grafana Alloy file, ``*.alloy``)."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{source}: not UTF-8 text") from None
    data = alloy_to_collector(text, source) if source.endswith(".alloy") else load_yaml(text, source)
    if data is None:
        raise ConfigError("", f"{source}: the configuration file is empty")
    return parse_config(data, source)
