"""The ``exporters`` section: exactly one ``loadbalancing`` exporter."""

from __future__ import annotations

from ..config_model import (
    LoadBalancingConfig,
    OTLPExporterConfig,
)
from ..ring import ALGORITHMS
from ._collector import IGNORED_EXPORTERS, pick_component
from ._errors import ConfigError, join
from ._otlp import parse_otlp
from ._resolvers import RESOLVERS, parse_resolver
from ._sending import parse_queue, parse_retry
from ._service import Service
from ._values import Map

_EXPORTER_TYPES = ("loadbalancing", "load_balancing")


def parse_exporters(root: Map, service: Service) -> tuple[str, LoadBalancingConfig]:
    exporter_id, block = pick_component(
        root, "exporters", _EXPORTER_TYPES, "loadbalancing exporter", service, IGNORED_EXPORTERS
    )
    return exporter_id, _parse_loadbalancing(block)


def _parse_loadbalancing(lb: Map) -> LoadBalancingConfig:
    routing_key: str | None = None
    if (value := lb.get("routing_key")) is not None:
        routing_key = value.choice(("traceID", "service", "resource", "metric", "streamID", "attributes"))
    attrs: tuple[str, ...] = ()
    attrs_val = lb.get("routing_attributes")
    if attrs_val is not None:
        attrs = tuple(item.string(non_empty=True) for item in attrs_val.items())
    if routing_key == "attributes" and not attrs:
        raise ConfigError(join(lb.path, "routing_attributes"), 'required when routing_key is "attributes"')
    if routing_key != "attributes" and attrs_val is not None:
        raise ConfigError(
            attrs_val.path,
            f'only valid when routing_key is "attributes" (routing_key is {routing_key or "unset"}); '
            "remove it or set routing_key: attributes",
        )
    resolver = parse_resolver(lb.require("resolver", f" (one of {', '.join(RESOLVERS)})").mapping())
    timeout = value.duration() if (value := lb.get("timeout")) is not None else 0.0
    queue = parse_queue(lb.get("sending_queue"), enabled_by_default=False)
    retry = parse_retry(lb.get("retry_on_failure"), enabled_by_default=False)
    protocol = OTLPExporterConfig()
    if (value := lb.get("protocol")) is not None:
        protocol_block = value.mapping()
        if (otlp := protocol_block.get("otlp")) is not None:
            protocol = parse_otlp(otlp.mapping())
        for key in protocol_block.names():
            if key != "otlp":
                raise ConfigError(protocol_block.child(key).path, "unsupported protocol (only otlp is supported)")
    ring = lb.get("ring_algorithm")
    lb.done(
        {
            "queue": "unknown key; the queue setting is called sending_queue",
            "retry": "unknown key; the retry setting is called retry_on_failure",
        }
    )
    return LoadBalancingConfig(
        resolver=resolver,
        routing_key=routing_key,
        routing_attributes=attrs,
        timeout=timeout,
        sending_queue=queue,
        retry_on_failure=retry,
        protocol=protocol,
        ring_algorithm=ring.choice(ALGORITHMS) if ring else "ringleader",
    )
