"""The ``service`` section: pipelines (which signals are enabled), extensions and telemetry.

Read as the collector reads it: a pipeline ``traces``, ``traces/name``, ``logs`` or
``metrics`` lists its receivers, processors and exporters by component ID. What
the pipelines use decides what the other sections mean (see
:mod:`dataplane.config._collector`): a component no pipeline uses has no effect,
in the collector as here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config_model import ROUTING_KEYS_BY_SIGNAL, SIGNALS, LoadBalancingConfig
from ._components import component_type
from ._errors import ConfigError
from ._values import Map, Val


@dataclass
class Pipeline:
    path: str
    signal: str
    receivers: list[Val]
    processors: list[Val]
    exporters: list[Val]


@dataclass
class Service:
    """The ``service`` section as read; ``present`` is False when the file has none."""

    present: bool = False
    pipelines: list[Pipeline] = field(default_factory=list)
    extensions: list[Val] = field(default_factory=list)
    telemetry: Val | None = None

    def used(self, kind: str) -> dict[str, Val]:
        """Component IDs the pipelines name under ``kind`` (receivers, processors,
        exporters), each with the first reference's key path."""
        refs: dict[str, Val] = {}
        for pipeline in self.pipelines:
            for ref in getattr(pipeline, kind):
                refs.setdefault(ref.string(non_empty=True), ref)
        return refs


def read_service(value: Val | None) -> Service:
    if value is None:
        return Service()
    service = value.mapping()
    telemetry = service.get("telemetry")
    extensions_val = service.get("extensions")
    pipelines_val = service.get("pipelines")
    service.done()
    extensions = [] if extensions_val is None or extensions_val.is_null else extensions_val.items()
    pipelines = pipelines_val.mapping() if pipelines_val is not None else Map("service.pipelines", {})
    found: list[Pipeline] = []
    for pipeline_id in pipelines.names():
        item = pipelines.child(pipeline_id)
        signal = component_type(item, pipeline_id)
        if signal not in SIGNALS:
            item.fail(f"unsupported pipeline type {signal!r} (valid: {', '.join(SIGNALS)})")
        pipeline = item.mapping()
        receivers = _refs(pipeline, "receivers", required=True)
        processors = _refs(pipeline, "processors", required=False)
        exporters = _refs(pipeline, "exporters", required=True)
        pipeline.done()
        found.append(Pipeline(item.path, signal, receivers, processors, exporters))
    if not found:
        raise ConfigError(pipelines.path, "at least one pipeline (traces, logs or metrics) is required")
    return Service(True, found, extensions, telemetry)


def _refs(pipeline: Map, kind: str, *, required: bool) -> list[Val]:
    if not required:
        value = pipeline.get(kind)
        return [] if value is None or value.is_null else value.items()
    refs = pipeline.require(kind, f" (a list of {kind})")
    items = refs.items()
    if not items:
        refs.fail(f"must name at least one of the defined {kind}")
    return items


def enabled_signals(service: Service, exporter_id: str, lb: LoadBalancingConfig) -> tuple[str, ...]:
    """The signals the data plane accepts: the pipelines' when given, else every signal the
    routing key supports. Each must accept the configured routing key."""
    routing_key_path = f"exporters.{exporter_id}.routing_key"
    if not service.present:
        key = lb.routing_key
        signals = tuple(s for s in SIGNALS if key is None or key in ROUTING_KEYS_BY_SIGNAL[s])
        if not signals:
            raise ConfigError(routing_key_path, f"routing_key {key} is not valid for any signal")
        return signals
    found: set[str] = set()
    for pipeline in service.pipelines:
        if not any(ref.raw == exporter_id for ref in pipeline.exporters):
            continue  # a pipeline that only feeds ignored exporters (debug) does not enable its signal
        key = lb.routing_key_for(pipeline.signal)
        if key not in ROUTING_KEYS_BY_SIGNAL[pipeline.signal]:
            raise ConfigError(
                routing_key_path,
                f"routing_key {key} is not valid for the {pipeline.signal} pipeline "
                f"(valid for {pipeline.signal}: {', '.join(ROUTING_KEYS_BY_SIGNAL[pipeline.signal])})",
            )
        found.add(pipeline.signal)
    return tuple(s for s in SIGNALS if s in found)
