"""The ``service`` section: which signals are enabled, checked against the routing key."""

from __future__ import annotations

import logging

from ..config_model import (
    ROUTING_KEYS_BY_SIGNAL,
    SIGNALS,
    LoadBalancingConfig,
)
from ._components import component_type
from ._errors import ConfigError
from ._values import Map, Val

log = logging.getLogger("ringleader.config")


def parse_service(value: Val | None, receiver_id: str, exporter_id: str, lb: LoadBalancingConfig) -> tuple[str, ...]:
    routing_key_path = f"exporters.{exporter_id}.routing_key"
    if value is None:
        key = lb.routing_key
        signals = tuple(s for s in SIGNALS if key is None or key in ROUTING_KEYS_BY_SIGNAL[s])
        if not signals:
            raise ConfigError(routing_key_path, f"routing_key {key} is not valid for any signal")
        return signals
    service = value.mapping()
    if (telemetry := service.get("telemetry")) is not None:
        log.warning("%s is ignored: Ringleader's telemetry is set by the top-level telemetry block", telemetry.path)
    if (extensions := service.get("extensions")) is not None and not extensions.is_null and extensions.items():
        extensions.fail("must be empty (Ringleader has no extensions)")
    pipelines_val = service.get("pipelines")
    service.done()
    pipelines = pipelines_val.mapping() if pipelines_val is not None else Map("service.pipelines", {})
    found: list[str] = []
    for pipeline_id in pipelines.names():
        item = pipelines.child(pipeline_id)
        signal = component_type(item, pipeline_id)
        if signal not in SIGNALS:
            item.fail(f"unsupported pipeline type {signal!r} (valid: {', '.join(SIGNALS)})")
        pipeline = item.mapping()
        _pipeline_refs(pipeline, "receivers", receiver_id)
        _pipeline_refs(pipeline, "exporters", exporter_id)
        processors = pipeline.get("processors")
        if processors is not None and not processors.is_null and (names := processors.items()):
            names[0].fail(f"processor {names[0].raw!r} is not defined (Ringleader has no processors; remove it)")
        pipeline.done()
        key = lb.routing_key_for(signal)
        if key not in ROUTING_KEYS_BY_SIGNAL[signal]:
            raise ConfigError(
                routing_key_path,
                f"routing_key {key} is not valid for the {signal} pipeline "
                f"(valid for {signal}: {', '.join(ROUTING_KEYS_BY_SIGNAL[signal])})",
            )
        found.append(signal)
    if not found:
        raise ConfigError(pipelines.path, "at least one pipeline (traces, logs or metrics) is required")
    return tuple(s for s in SIGNALS if s in found)


def _pipeline_refs(pipeline: Map, kind: str, defined: str) -> None:
    refs = pipeline.require(kind, f" (a list naming {defined})")
    items = refs.items()
    if not items:
        refs.fail(f"must name at least one of the defined {kind} ({defined})")
    for item in items:
        name = item.string()
        if name != defined:
            item.fail(f"{kind[:-1]} {name!r} is not defined (defined: {defined})")
