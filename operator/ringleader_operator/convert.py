"""Move a tier-1 collector's ``loadbalancing`` block to a ``LoadBalancingExporter``.

The mapping is mechanical (docs/operator.md has the table): every key of the
upstream exporter block becomes the spec field of the same meaning in
camelCase, keys without a field go to ``spec.extraConfig`` unchanged, and what
cannot move by itself (a TLS file, an authenticator extension, a header read
from the collector's environment) is reported as a note saying what to do::

    conversion = convert_collector_block(config["exporters"]["loadbalancing"])
    conversion.spec     # the resource's spec
    conversion.notes    # ("protocol.otlp.tls.ca_file: put the CA in a Secret as ca.crt ...", ...)

:func:`spec_from_collector_config` accepts a whole collector config (it finds
the exporter) or the block itself. Grafana Alloy's
``otelcol.exporter.loadbalancing`` component is read by
:mod:`ringleader_operator.alloy` and converted by :func:`convert_alloy`.

Values keep their meaning, not always their spelling: the exporter-level
``sending_queue`` is on as soon as it is written (upstream's rule), so a block
without ``enabled`` becomes ``enabled: true`` explicitly (the resource's
default is off); ``dns.port`` becomes a number; ``k8s.service: name.ns``
becomes ``service`` and ``namespace``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .alloy import AlloyError, alloy_to_collector, parse_alloy
from .spec import CREDENTIAL_HEADERS

__all__ = [
    "Conversion",
    "ConversionError",
    "convert_alloy",
    "convert_collector_block",
    "convert_main",
    "find_block",
    "spec_from_collector_config",
]


class ConversionError(ValueError):
    """The input cannot be converted: ``path`` names the key in the input."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class Conversion:
    spec: dict[str, Any]
    notes: tuple[str, ...] = ()


HEADERS_SECRET = "otlp-headers"  # where converted credential headers are read from (the user creates it)
_EXPORTER = re.compile(r"^(loadbalancing|load_balancing)(/.*)?$")


def spec_from_collector_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The spec for a collector config (with ``exporters:``) or a bare ``loadbalancing`` block."""
    return convert_collector_block(find_block(config)).spec


def find_block(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``loadbalancing`` exporter block of a collector config, or ``config`` if it is one."""
    if "resolver" in config:
        return config
    exporters = config.get("exporters")
    if not isinstance(exporters, Mapping):
        raise ConversionError("", "neither a loadbalancing exporter block (no resolver) nor a config with exporters")
    found = [key for key in exporters if _EXPORTER.match(str(key))]
    if len(found) != 1:
        raise ConversionError("exporters", f"expected exactly one loadbalancing exporter, found {len(found)}")
    block = exporters[found[0]]
    if not isinstance(block, Mapping):
        raise ConversionError(f"exporters.{found[0]}", "expected a mapping")
    return block


class _Notes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, text: str) -> None:
        self.items.append(f"{path}: {text}")


def _camel(key: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)


def _duration(value: Any, path: str) -> str:
    if isinstance(value, bool):
        raise ConversionError(path, f"expected a duration, got {value!r}")
    if value == 0:
        return "0s"
    if isinstance(value, str):
        return value
    raise ConversionError(path, f"expected a duration string such as 5s, got {value!r}")


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConversionError(path, f"expected a mapping, got {type(value).__name__}")
    return value


_DURATION_KEYS = {"timeout", "interval", "initial_interval", "max_interval", "max_elapsed_time", "debounce"}


def _fields(block: Mapping[str, Any], path: str, keys: tuple[str, ...], notes: _Notes) -> dict[str, Any]:
    """Known ``keys`` renamed to camelCase (durations normalised); anything else is a note."""
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key not in keys:
            notes.add(f"{path}.{key}", "no such field in the resource; dropped (check it is needed)")
            continue
        out[_camel(key)] = _duration(value, f"{path}.{key}") if key in _DURATION_KEYS else value
    return out


_QUEUE_KEYS = ("enabled", "num_consumers", "queue_size", "sizer", "block_on_overflow")
_RETRY_KEYS = ("enabled", "initial_interval", "randomization_factor", "multiplier", "max_interval", "max_elapsed_time")


def _queue(value: Any, path: str, notes: _Notes, *, exporter_level: bool) -> dict[str, Any]:
    block = dict(_mapping(value, path))
    if "blocking" in block:  # upstream's deprecated alias
        block.setdefault("block_on_overflow", block.pop("blocking"))
    out = _fields(block, path, _QUEUE_KEYS, notes)
    if exporter_level and "enabled" not in out:
        out["enabled"] = True  # upstream: a written exporter-level queue is on
    return out


def _retry(value: Any, path: str, notes: _Notes) -> dict[str, Any]:
    return _fields(_mapping(value, path), path, _RETRY_KEYS, notes)


def _resolver(value: Any, notes: _Notes) -> dict[str, Any]:
    block = _mapping(value, "resolver")
    out: dict[str, Any] = {}
    for kind, body_raw in block.items():
        path = f"resolver.{kind}"
        body = dict(_mapping(body_raw, path))
        if kind == "static":
            out["static"] = _fields(body, path, ("hostnames",), notes)
        elif kind == "dns":
            port = body.pop("port", None)
            dns = _fields(body, path, ("hostname", "interval", "timeout", "server", "srv"), notes)
            if port not in (None, ""):
                if not str(port).isdigit():
                    raise ConversionError(f"{path}.port", f"expected a port number, got {port!r}")
                dns["port"] = int(port)
            out["dns"] = dns
        elif kind in ("k8s", "kubernetes"):
            service = str(body.pop("service", ""))
            k8s = _fields(body, path, ("ports", "timeout", "return_hostnames", "debounce"), notes)
            if "ports" in k8s:  # Alloy writes ports = ["34621"]
                k8s["ports"] = [int(p) if isinstance(p, str) and p.isdigit() else p for p in k8s["ports"]]
            name, _, rest = service.partition(".")
            namespace = rest.split(".", 1)[0]
            k8s = {"service": name, **({"namespace": namespace} if namespace else {}), **k8s}
            if not namespace:
                notes.add(f"{path}.service", "no namespace given: the resource's own namespace is used")
            out["k8s"] = k8s
        elif kind == "aws_cloud_map":
            keys = ("namespace", "service_name", "health_status", "interval", "timeout", "port", "owner_account")
            out["awsCloudMap"] = _fields(body, path, keys, notes)
        else:
            raise ConversionError(path, "unknown resolver (valid: static, dns, k8s, aws_cloud_map)")
    return out


_OTLP_PASSTHROUGH = (
    "keepalive", "balancer_name", "authority", "wait_for_ready", "read_buffer_size", "write_buffer_size", "user_agent",
)  # fmt: skip
_TLS_FILES = {
    "ca_file": "put the CA certificate in a Secret as key ca.crt and set spec.otlp.tls.secretName",
    "ca_pem": "put the CA certificate in a Secret as key ca.crt and set spec.otlp.tls.secretName",
    "cert_file": "put the client certificate in the TLS Secret as tls.crt and set spec.otlp.tls.clientCertificate",
    "cert_pem": "put the client certificate in the TLS Secret as tls.crt and set spec.otlp.tls.clientCertificate",
    "key_file": "put the client key in the TLS Secret as tls.key (spec.otlp.tls.clientCertificate)",
    "key_pem": "put the client key in the TLS Secret as tls.key (spec.otlp.tls.clientCertificate)",
}
_ENV_REF = re.compile(r"\$\{(env:)?[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}")


def _otlp(value: Any, notes: _Notes, extra: dict[str, Any]) -> dict[str, Any]:
    block = _mapping(value, "protocol.otlp")
    out: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    for key, item in block.items():
        path = f"protocol.otlp.{key}"
        if key == "endpoint":
            notes.add(path, "dropped: the resolver sets each backend's endpoint")
        elif key == "timeout":
            out["timeout"] = _duration(item, path)
        elif key == "compression":
            out["compression"] = item or "none"
        elif key == "tls":
            tls, tls_extra = _tls(item, notes)
            if tls:
                out["tls"] = tls
            if tls_extra:
                passthrough["tls"] = tls_extra
        elif key == "headers":
            out["headers"] = _headers(item, path, notes)
        elif key == "sending_queue":
            out["sendingQueue"] = _queue(item, path, notes, exporter_level=False)
        elif key == "retry_on_failure":
            out["retryOnFailure"] = _retry(item, path, notes)
        elif key in _OTLP_PASSTHROUGH:
            passthrough[key] = item
        elif key == "auth":
            notes.add(path, "authenticator extensions are not supported; send the credential as a header from a Secret")
        else:
            passthrough[key] = item  # the data plane's validator judges it (spec.extraConfig)
    if passthrough:
        extra["protocol"] = {"otlp": passthrough}
    return out


def _tls(value: Any, notes: _Notes) -> tuple[dict[str, Any], dict[str, Any]]:
    block = _mapping(value, "protocol.otlp.tls")
    tls: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, item in block.items():
        path = f"protocol.otlp.tls.{key}"
        if key == "insecure":
            tls["insecure"] = item
        elif key == "server_name_override":
            tls["serverName"] = item
        elif key in _TLS_FILES:
            if item:
                notes.add(path, _TLS_FILES[key])
        elif key == "insecure_skip_verify":
            if item:
                notes.add(path, "not supported (the client always verifies); give the tier-2 CA in the TLS Secret")
        else:
            extra[key] = item
    return tls, extra


def _headers(value: Any, path: str, notes: _Notes) -> list[dict[str, Any]]:
    pairs: list[tuple[str, Any]]
    if isinstance(value, list):
        pairs = [(str(_mapping(h, path).get("name")), _mapping(h, path).get("value")) for h in value]
    else:
        pairs = [(str(k), v) for k, v in _mapping(value, path).items()]
    headers: list[dict[str, Any]] = []
    for name, text in pairs:
        if name.lower() in CREDENTIAL_HEADERS:
            key = name.lower()
            headers.append({"name": name, "valueFrom": {"secretKeyRef": {"name": HEADERS_SECRET, "key": key}}})
            notes.add(
                f"{path}.{name}",
                f"a credential: create the Secret it is read from, e.g. kubectl create secret generic "
                f"{HEADERS_SECRET} --from-literal={key}='<value>'",
            )
            continue
        headers.append({"name": name, "value": "" if text is None else str(text)})
        if _ENV_REF.search(str(text or "")):
            notes.add(
                f"{path}.{name}",
                "reads the collector's environment; store the value in a Secret and use "
                "valueFrom.secretKeyRef (a literal value is written to the ConfigMap)",
            )
    return headers


def convert_collector_block(block: Mapping[str, Any]) -> Conversion:
    """Convert an upstream ``loadbalancing`` exporter block (snake_case) to a resource spec."""
    notes = _Notes()
    spec: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in block.items():
        if key == "routing_key":
            spec["routingKey"] = value
        elif key == "routing_attributes":
            spec["routingAttributes"] = list(value or [])
        elif key == "ring_algorithm":
            spec["ringAlgorithm"] = value
        elif key == "timeout":
            spec["timeout"] = _duration(value, key)
        elif key in ("sending_queue", "queue"):
            if key == "queue":
                notes.add(key, "read as sending_queue (upstream's name; `queue` is refused by the collector)")
            spec["sendingQueue"] = _queue(value, key, notes, exporter_level=True)
        elif key in ("retry_on_failure", "retry"):
            if key == "retry":
                notes.add(key, "read as retry_on_failure (upstream's name)")
            spec["retryOnFailure"] = _retry(value, key, notes)
        elif key == "resolver":
            spec["resolver"] = _resolver(value, notes)
        elif key == "protocol":
            protocol = _mapping(value, "protocol")
            for other in protocol:
                if other != "otlp":
                    raise ConversionError(f"protocol.{other}", "only the otlp protocol exists")
            if "otlp" in protocol:
                otlp = _otlp(protocol["otlp"], notes, extra)
                if otlp:
                    spec["otlp"] = otlp
        else:
            extra[key] = value
    if "resolver" not in spec:
        raise ConversionError("resolver", "required: the block has no resolver")
    if "routingKey" not in spec:
        notes.add(
            "routing_key",
            "not set: upstream routes traces by traceID but logs and metrics by service; the resource's "
            "routingKey defaults to traceID (traces and logs by trace ID); route metrics with a second "
            "resource whose routingKey is service",
        )
    if extra:
        spec["extraConfig"] = extra
        _note_env_references(extra, "", notes)
    return Conversion(spec=spec, notes=tuple(notes.items))


def _note_env_references(node: Any, path: str, notes: _Notes) -> None:
    if isinstance(node, str) and _ENV_REF.search(node):
        notes.add(path, "reads the collector's environment; write the value (extraConfig refuses ${...})")
    elif isinstance(node, Mapping):
        for key, item in node.items():
            _note_env_references(item, f"{path}.{key}" if path else str(key), notes)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _note_env_references(item, f"{path}[{i}]", notes)


def convert_alloy(text: str) -> Conversion:
    """Convert an Alloy file's ``otelcol.exporter.loadbalancing`` component to a resource spec."""
    try:
        block = alloy_to_collector(parse_alloy(text))
    except AlloyError as exc:
        raise ConversionError(exc.path, exc.message) from None
    return convert_collector_block(block)


# ------------------------------------------------------------------------- CLI
def convert_main(argv: list[str] | None = None) -> int:
    """``ringleader-operator convert FILE``: print a LoadBalancingExporter for a collector or Alloy config.

    FILE is a collector config (YAML with ``exporters:``), a bare ``loadbalancing`` block, or an Alloy
    file (``.alloy``, or ``--alloy``); ``-`` reads stdin. Notes go to stderr as ``# note: ...`` lines;
    exit status 0 on success, 2 when the input cannot be converted.
    """
    import argparse
    import sys
    from pathlib import Path

    import yaml

    parser = argparse.ArgumentParser(prog="ringleader-operator convert", description=convert_main.__doc__)
    parser.add_argument("file", help="collector config, loadbalancing block or Alloy file; - for stdin")
    parser.add_argument("--alloy", action="store_true", help="read the file as Alloy syntax")
    parser.add_argument("--name", default="tier1", help="metadata.name of the resource (default tier1)")
    parser.add_argument("--namespace", help="metadata.namespace of the resource")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        if args.alloy or args.file.endswith(".alloy"):
            conversion = convert_alloy(text)
        else:
            data = yaml.safe_load(text)
            if not isinstance(data, Mapping):
                raise ConversionError("", "expected a YAML mapping")
            conversion = convert_collector_block(find_block(data))
    except (ConversionError, yaml.YAMLError) as exc:
        print(f"ringleader-operator convert: {exc}", file=sys.stderr)
        return 2
    metadata: dict[str, Any] = {"name": args.name}
    if args.namespace:
        metadata["namespace"] = args.namespace
    manifest = {
        "apiVersion": "ringleader.dev/v1alpha1",
        "kind": "LoadBalancingExporter",
        "metadata": metadata,
        "spec": conversion.spec,
    }
    for note in conversion.notes:
        print(f"# note: {note}", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))
    return 0
