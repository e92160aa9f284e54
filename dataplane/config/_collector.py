"""A tier-1 collector's config, as it is: what each component means to a load balancer.

A collector config carries more than Ringleader's two components (one ``otlp``
receiver, one ``loadbalancing`` exporter). Each other component is one of:

- **honoured**: it maps onto a Ringleader setting:

  ====================================  ====================================================
  component                             becomes
  ====================================  ====================================================
  ``processors.memory_limiter``         ``memory.limit``: ``limit_mib``, or
                                        ``limit_percentage`` of the container's memory limit
                                        (of the machine's memory outside a container)
  ``extensions.health_check``           the same endpoint and path, answering like the
                                        collector's (200 once serving, 503 before and while
                                        shutting down)
  ``service.telemetry``                 ``telemetry.endpoint`` and ``telemetry.log_level``
  ``service.pipelines``                 the signals accepted
  ====================================  ====================================================

- **ignored, with one warning each**: it has no effect on what a load balancer
  delivers: the ``batch`` processor (Ringleader forwards each request as it comes,
  without holding data), the ``pprof`` and ``zpages`` extensions (Go debugging
  endpoints), ``debug``/``logging``/``nop`` exporters (a local copy), and any
  component that no pipeline (or, for extensions, ``service.extensions``) uses,
  which the collector does not start either;
- **refused**, with the key path: anything that would change the data or where
  it goes, which Ringleader cannot do: other processors (``attributes``,
  ``filter``, ``tail_sampling``...), connectors, other receivers and exporters in
  a pipeline, other extensions in ``service.extensions`` (authenticators,
  storage...).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from ..config_model import HealthCheckConfig
from ._components import component_type
from ._errors import ConfigError, join
from ._service import Service
from ._values import Map, Val

log = logging.getLogger("ringleader.config")

IGNORED_EXPORTERS = {
    "debug": "a debug exporter only prints a local copy",
    "logging": "a logging exporter only prints a local copy",
    "nop": "a nop exporter does nothing",
}
_IGNORED_PROCESSORS = {
    "batch": "Ringleader forwards each request as it arrives and never holds data to batch it; "
    "batch in tier 2 if needed",
}
_IGNORED_EXTENSIONS = {
    "pprof": "a Go profiling endpoint with no equivalent in Ringleader",
    "zpages": "Go debugging pages with no equivalent in Ringleader; see /debug/ring on the telemetry endpoint",
}


def _ignore(path: str, why: str) -> None:
    log.warning("%s is ignored: %s", path, why)


def pick_component(
    root: Map,
    section: str,
    types: tuple[str, ...],
    what: str,
    service: Service,
    ignorable: Mapping[str, str] | None = None,
) -> tuple[str, Map]:
    """The one component of ``types`` in ``section`` that the pipelines use: its ID and block.

    Without a ``service`` section every defined component counts as used."""
    value = root.require(section, f" (an {what})" if what[0] in "aeiou" else f" (a {what})")
    block = value.mapping()
    defined = {key: component_type(block.child(key), key) for key in block.names()}
    used: dict[str, Val]
    if service.present:
        used = {}
        for ref_id, ref in service.used(section).items():
            if ref_id not in defined:
                if _is_connector(root, ref_id):
                    ref.fail(f"{ref_id!r} is a connector: Ringleader cannot run connectors (they make new data)")
                ref.fail(f"{section[:-1]} {ref_id!r} is not defined (defined: {', '.join(defined) or f'no {section}'})")
            used[ref_id] = ref
        for key in defined:
            if key not in used:
                _ignore(join(section, key), "no pipeline uses it (the collector would not start it either)")
    else:
        used = {key: block.child(key) for key in defined}
    chosen: list[str] = []
    for key in used:
        kind = defined[key]
        if kind in types:
            chosen.append(key)
        elif ignorable and kind in ignorable:
            _ignore(join(section, key), ignorable[kind])
        else:
            raise ConfigError(join(section, key), f"unsupported component (Ringleader only has the {what})")
    if len(chosen) != 1:
        found = f", found {len(chosen)} ({', '.join(chosen)})" if chosen else ""
        raise ConfigError(section, f"exactly one {what} must be set{found}")
    return chosen[0], block.child(chosen[0]).mapping()


def _is_connector(root: Map, component_id: str) -> bool:
    connectors = root.child("connectors")
    return isinstance(connectors.raw, dict) and component_id in connectors.raw


def check_connectors(root: Map) -> None:
    """Connectors used by a pipeline are refused where the pipeline names them; others are ignored."""
    value = root.get("connectors")
    if value is None:
        return
    for key in value.mapping().names():
        _ignore(join("connectors", key), "no pipeline uses it")


# ------------------------------------------------------------------------ processors
def parse_processors(root: Map, service: Service) -> int | None:
    """Check the processors; return the memory limit in bytes that ``memory_limiter`` sets, if used."""
    value = root.get("processors")
    block = value.mapping() if value is not None else Map("processors", {})
    defined = {key: component_type(block.child(key), key) for key in block.names()}
    used = service.used("processors")
    for ref_id, ref in used.items():
        if ref_id not in defined:
            ref.fail(f"processor {ref_id!r} is not defined (defined: {', '.join(defined) or 'no processors'})")
    memory_limit: int | None = None
    limiters: list[str] = []
    for key, kind in defined.items():
        path = join("processors", key)
        if key not in used:
            _ignore(path, "no pipeline uses it (the collector would not start it either)")
        elif kind in _IGNORED_PROCESSORS:
            _ignore(path, _IGNORED_PROCESSORS[kind])
        elif kind == "memory_limiter":
            limiters.append(key)
            limit = _memory_limiter(block.child(key).mapping())
            memory_limit = limit if memory_limit is None else min(memory_limit, limit)
        else:
            raise ConfigError(
                path,
                f"the {kind} processor changes data, and Ringleader forwards data unchanged; "
                "run it in tier 2 (or in an agent in front of Ringleader) and remove it here",
            )
    if len(limiters) > 1:
        log.warning("processors %s: the smallest memory limit applies to the whole process", ", ".join(limiters))
    return memory_limit


def _memory_limiter(block: Map) -> int:
    """``memory_limiter`` -> the process's memory limit in bytes (its hard limit).

    ``check_interval`` and the spike limits have no counterpart: Ringleader charges
    every buffered byte when it is admitted, so there is no sampling gap to leave
    room for."""
    limit_mib = block.get("limit_mib")
    percentage = block.get("limit_percentage")
    for key in ("check_interval", "spike_limit_mib", "spike_limit_percentage", "min_gc_interval_when_soft_limited",
                "min_gc_interval_when_hard_limited"):  # fmt: skip
        block.get(key)
    block.done()
    mib = limit_mib.integer(minimum=0) if limit_mib else 0
    pct = percentage.integer(minimum=0, maximum=100) if percentage else 0
    if mib and pct:
        raise ConfigError(join(block.path, "limit_percentage"), "set either limit_mib or limit_percentage, not both")
    if mib:
        return mib << 20
    if pct:
        return _total_memory() * pct // 100
    raise ConfigError(join(block.path, "limit_mib"), "required: set limit_mib or limit_percentage (as the collector)")


def _total_memory() -> int:
    """The container's memory limit, or the machine's memory (what the collector uses)."""
    from ..memory import container_limit

    limit = container_limit()
    if limit:
        return limit
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise ConfigError("processors", "cannot read the machine's memory size for limit_percentage; set limit_mib")


# ------------------------------------------------------------------------ extensions
def parse_extensions(root: Map, service: Service, telemetry_endpoint: str) -> HealthCheckConfig | None:
    """Check the extensions; return the health endpoint ``health_check`` asks for, if enabled."""
    value = root.get("extensions")
    block = value.mapping() if value is not None else Map("extensions", {})
    defined = {key: component_type(block.child(key), key) for key in block.names()}
    enabled: dict[str, Val] = {}
    for ref in service.extensions:
        name = ref.string(non_empty=True)
        if name not in defined:
            ref.fail(f"extension {name!r} is not defined (defined: {', '.join(defined) or 'no extensions'})")
        enabled[name] = ref
    health: HealthCheckConfig | None = None
    for key, kind in defined.items():
        path = join("extensions", key)
        if key not in enabled:
            _ignore(path, "not listed in service.extensions (the collector would not start it either)")
        elif kind in _IGNORED_EXTENSIONS:
            _ignore(path, _IGNORED_EXTENSIONS[kind])
        elif kind == "health_check":
            if health is not None:
                raise ConfigError(path, "only one health_check extension can be enabled")
            health = _health_check(block.child(key).mapping(), telemetry_endpoint)
        else:
            raise ConfigError(
                path,
                f"the {kind} extension is not supported by Ringleader (supported: health_check; "
                "pprof and zpages are ignored); remove it from service.extensions",
            )
    return health


def _health_check(block: Map, telemetry_endpoint: str) -> HealthCheckConfig:
    defaults = HealthCheckConfig()
    endpoint = block.get("endpoint")
    path = block.get("path")
    pipeline_check = block.get("check_collector_pipeline")
    block.done(
        {
            key: "not supported by Ringleader's health endpoint (supported: endpoint, path); remove it"
            for key in ("tls", "auth", "cors", "response_body", "response_headers", "include_metadata",
                        "max_request_body_size", "http", "grpc", "component_health")
        }
    )  # fmt: skip
    if pipeline_check is not None:
        _ignore(pipeline_check.path, "deprecated in the collector, where it has no effect either")
    result = HealthCheckConfig(
        endpoint=endpoint.hostport() if endpoint else defaults.endpoint,
        path=path.string(non_empty=True) if path else defaults.path,
    )
    if not result.path.startswith("/"):
        raise ConfigError(join(block.path, "path"), f'must start with "/", got {result.path!r}')
    if result.endpoint == telemetry_endpoint:
        raise ConfigError(
            join(block.path, "endpoint"),
            f"{result.endpoint} is also the telemetry endpoint (which serves /healthz itself); use another port",
        )
    return result
