"""The data plane's configuration, rendered from a spec and checked by the data plane itself.

:func:`render_config` turns an :class:`~ringleader_operator.spec.ExporterSpec` into
the YAML file the data plane reads (docs/configuration.md): one ``otlp`` receiver,
one ``loadbalancing`` exporter whose keys are upstream's, the ``telemetry`` and
``shutdown`` blocks. The text is deterministic (same spec, same bytes), so
:func:`config_hash` of it names the ConfigMap and marks the pod template: a
changed config rolls out, an unchanged one does nothing.

:func:`validate_config` loads the text with the data plane's own loader,
:func:`dataplane.config.load_config`: the operator never judges a config by rules
of its own. A refusal becomes a :class:`~ringleader_operator.spec.SpecError` that
names the field of the resource (``spec.resolver.k8s.service``) and keeps the data
plane's key in the message.

No secret is ever written into the config. TLS files come from the Secret named
by ``spec.otlp.tls.secretName``, mounted at :data:`TLS_DIR`; a header whose value
is a Secret key is referenced as ``${env:RINGLEADER_HEADER_<n>}`` (the data plane
expands environment references) and the Deployment sets that variable from the
Secret. Literal strings from the spec are escaped (``$`` -> ``$$``), so a spec
cannot read the pod's environment by accident; ``extraConfig`` is passed through
as written (:func:`~ringleader_operator.spec.parse_spec` refuses ``${...}`` in it).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dataplane.config import ConfigError, load_config

from .owner import Owner
from .spec import (
    AWSCloudMapResolver,
    DNSResolver,
    ExporterSpec,
    K8sResolver,
    Queue,
    Retry,
    SpecError,
    StaticResolver,
)

__all__ = [
    "CONFIG_DIR",
    "CONFIG_FILE",
    "TLS_DIR",
    "config_hash",
    "header_env_name",
    "render_config",
    "spec_path_for",
    "validate_config",
]

CONFIG_DIR = "/etc/ringleader/config"
CONFIG_FILE = "config.yaml"
TLS_DIR = "/etc/ringleader/tls"
TLS_FILES = ("ca.crt", "tls.crt", "tls.key")
EXPORTER_ID = "loadbalancing"


def header_env_name(index: int) -> str:
    """The environment variable carrying the ``index``-th header's value from its Secret."""
    return f"RINGLEADER_HEADER_{index}"


def _lit(text: str) -> str:
    """A literal string for the data plane, whose loader expands ``${...}``."""
    return text.replace("$", "$$")


def _queue(queue: Queue) -> dict[str, Any]:
    return {
        "enabled": queue.enabled,
        "num_consumers": queue.num_consumers,
        "queue_size": queue.queue_size,
        "sizer": queue.sizer,
        "block_on_overflow": queue.block_on_overflow,
    }


def _retry(retry: Retry) -> dict[str, Any]:
    return {
        "enabled": retry.enabled,
        "initial_interval": retry.initial_interval,
        "randomization_factor": retry.randomization_factor,
        "multiplier": retry.multiplier,
        "max_interval": retry.max_interval,
        "max_elapsed_time": retry.max_elapsed_time,
    }


def _resolver(owner: Owner, spec: ExporterSpec) -> dict[str, Any]:
    r = spec.resolver
    if isinstance(r, K8sResolver):
        return {
            "k8s": {
                "service": f"{r.service}.{r.namespace or owner.namespace}",
                "ports": list(r.ports),
                "timeout": r.timeout,
                "return_hostnames": r.return_hostnames,
                "debounce": r.debounce,
            }
        }
    if isinstance(r, DNSResolver):
        dns: dict[str, Any] = {"hostname": _lit(r.hostname), "interval": r.interval, "timeout": r.timeout}
        if r.port is not None:
            dns["port"] = r.port
        if r.server is not None:
            dns["server"] = _lit(r.server)
        if r.srv:
            dns["srv"] = True
        return {"dns": dns}
    if isinstance(r, StaticResolver):
        return {"static": {"hostnames": [_lit(h) for h in r.hostnames]}}
    assert isinstance(r, AWSCloudMapResolver)
    aws: dict[str, Any] = {
        "namespace": _lit(r.namespace),
        "service_name": _lit(r.service_name),
        "health_status": r.health_status,
        "interval": r.interval,
        "timeout": r.timeout,
    }
    if r.port is not None:
        aws["port"] = r.port
    if r.owner_account is not None:
        aws["owner_account"] = _lit(r.owner_account)
    return {"aws_cloud_map": aws}


def _otlp(spec: ExporterSpec) -> dict[str, Any]:
    o = spec.otlp
    tls: dict[str, Any] = {"insecure": o.tls.insecure}
    if o.tls.secret_name:
        tls["ca_file"] = f"{TLS_DIR}/ca.crt"
        if o.tls.client_certificate:
            tls["cert_file"] = f"{TLS_DIR}/tls.crt"
            tls["key_file"] = f"{TLS_DIR}/tls.key"
    if o.tls.server_name:
        tls["server_name_override"] = _lit(o.tls.server_name)
    block: dict[str, Any] = {"timeout": o.timeout, "compression": o.compression, "tls": tls}
    if o.headers:
        block["headers"] = {
            h.name: _lit(h.value) if h.value is not None else f"${{env:{header_env_name(i)}}}"
            for i, h in enumerate(o.headers)
        }
    block["sending_queue"] = _queue(o.sending_queue)
    block["retry_on_failure"] = _retry(o.retry_on_failure)
    return block


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` merged into ``base``: mappings recursively, anything else replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render_config(owner: Owner, spec: ExporterSpec) -> str:
    """The data plane's YAML config for this resource (deterministic text)."""
    lb: dict[str, Any] = {"routing_key": spec.routing_key}
    if spec.routing_attributes:
        lb["routing_attributes"] = [_lit(a) for a in spec.routing_attributes]
    lb["ring_algorithm"] = spec.ring_algorithm
    lb["timeout"] = spec.timeout
    lb["sending_queue"] = _queue(spec.sending_queue)
    lb["retry_on_failure"] = _retry(spec.retry_on_failure)
    lb["protocol"] = {"otlp": _otlp(spec)}
    lb["resolver"] = _resolver(owner, spec)
    lb = _merge(lb, spec.extra_config)
    config = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{spec.ports.grpc}"},
                    "http": {"endpoint": f"0.0.0.0:{spec.ports.http}"},
                }
            }
        },
        "exporters": {EXPORTER_ID: lb},
        "telemetry": {"endpoint": f"0.0.0.0:{spec.ports.metrics}", "log_level": spec.log_level},
        "shutdown": {"drain_timeout": spec.drain_timeout},
    }
    header = f"# Rendered by ringleader-operator from LoadBalancingExporter {owner.namespace}/{owner.name}.\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def config_hash(text: str) -> str:
    """A short, stable content hash (10 hex digits of SHA-256): names the ConfigMap."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


# ------------------------------------------------------------------- validation
def validate_config(text: str) -> None:
    """Load ``text`` exactly as a data-plane pod would; raise :class:`SpecError` if it refuses.

    The TLS files live in a Secret the operator does not read: for the check they
    are stood in for by empty files (the loader only checks that they exist), so
    everything else in the config is judged as the pod will judge it.
    """
    with tempfile.TemporaryDirectory(prefix="ringleader-validate-") as tmp:
        tls_dir = Path(tmp, "tls")
        tls_dir.mkdir()
        for name in TLS_FILES:
            (tls_dir / name).touch()
        config_file = Path(tmp, CONFIG_FILE)
        config_file.write_text(text.replace(TLS_DIR + "/", f"{tls_dir}/"), encoding="utf-8")
        try:
            load_config(config_file)
        except ConfigError as exc:
            message = exc.message.replace(f"{config_file}: ", "").replace(f"{tls_dir}/", TLS_DIR + "/")
            where = f" (data plane config key {exc.key_path})" if exc.key_path else ""
            raise SpecError(spec_path_for(exc.key_path), f"{message}{where}") from None


_LB = f"exporters.{EXPORTER_ID}"
# Data plane config key -> field of the resource, longest prefix first. Keys below the exporter that
# no field owns came from extraConfig.
_SPEC_PATHS: tuple[tuple[str, str], ...] = (
    ("receivers.otlp.protocols.grpc", "spec.ports.grpc"),
    ("receivers.otlp.protocols.http", "spec.ports.http"),
    ("telemetry.log_level", "spec.logLevel"),
    ("telemetry", "spec.ports.metrics"),
    ("shutdown.drain_timeout", "spec.drainTimeout"),
    (f"{_LB}.routing_key", "spec.routingKey"),
    (f"{_LB}.routing_attributes", "spec.routingAttributes"),
    (f"{_LB}.ring_algorithm", "spec.ringAlgorithm"),
    (f"{_LB}.timeout", "spec.timeout"),
    (f"{_LB}.sending_queue", "spec.sendingQueue"),
    (f"{_LB}.retry_on_failure", "spec.retryOnFailure"),
    (f"{_LB}.resolver.aws_cloud_map", "spec.resolver.awsCloudMap"),
    (f"{_LB}.resolver", "spec.resolver"),
    (f"{_LB}.protocol.otlp.tls.server_name_override", "spec.otlp.tls.serverName"),
    (f"{_LB}.protocol.otlp.tls.insecure", "spec.otlp.tls.insecure"),
    (f"{_LB}.protocol.otlp.tls.ca_file", "spec.otlp.tls.secretName"),
    (f"{_LB}.protocol.otlp.tls.cert_file", "spec.otlp.tls.secretName"),
    (f"{_LB}.protocol.otlp.tls.key_file", "spec.otlp.tls.secretName"),
    (f"{_LB}.protocol.otlp.headers", "spec.otlp.headers"),
    (f"{_LB}.protocol.otlp.timeout", "spec.otlp.timeout"),
    (f"{_LB}.protocol.otlp.compression", "spec.otlp.compression"),
    (f"{_LB}.protocol.otlp.sending_queue", "spec.otlp.sendingQueue"),
    (f"{_LB}.protocol.otlp.retry_on_failure", "spec.otlp.retryOnFailure"),
)
_OPAQUE = ("spec.otlp.tls", "spec.otlp.headers", "spec.ports.", "spec.logLevel", "spec.drainTimeout")


def _camel(path: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def spec_path_for(config_path: str) -> str:
    """The resource field behind a data plane config key (``spec`` for the whole file)."""
    if not config_path:
        return "spec"
    for prefix, field in _SPEC_PATHS:
        if config_path == prefix or config_path.startswith((prefix + ".", prefix + "[")):
            rest = config_path[len(prefix) :]
            if field.startswith(_OPAQUE) or field == "spec.ports.metrics":
                return field
            return field + _camel(rest)
    if config_path.startswith(_LB + "."):
        return "spec.extraConfig." + config_path[len(_LB) + 1 :]
    return "spec"

