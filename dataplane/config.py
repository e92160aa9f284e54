"""Loading and validating the data plane's YAML configuration.

The file is shaped like an OpenTelemetry Collector configuration, so a tier-1
collector's config keeps working after trivial edits (remove the ``batch``
processor and any other exporter)::

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
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn, cast

import yaml

from .config_model import (
    ROUTING_KEYS_BY_SIGNAL,
    SIGNALS,
    AWSCloudMapResolverConfig,
    Config,
    DNSResolverConfig,
    GRPCReceiverConfig,
    HTTPReceiverConfig,
    K8sResolverConfig,
    KeepaliveConfig,
    LoadBalancingConfig,
    OTLPExporterConfig,
    QueueConfig,
    ReceiverConfig,
    ResolverConfig,
    RetryConfig,
    ShutdownConfig,
    StaticResolverConfig,
    TelemetryConfig,
    TLSConfig,
)

log = logging.getLogger("ringleader.config")

__all__ = ["ConfigError", "load_config", "parse_config", "parse_duration", "parse_size"]


class ConfigError(Exception):
    """An invalid configuration: ``key_path`` names the offending key ("" for the whole file)."""

    def __init__(self, key_path: str, message: str) -> None:
        # One line, always: the CLI prints str(error) as is.
        self.key_path = key_path
        self.message = " ".join(message.split())
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.key_path:
            return f"config error at {self.key_path}: {self.message}"
        return f"config error: {self.message}"


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars, like the collector's Go YAML parser.

    PyYAML implements YAML 1.1, where ``yes``/``on`` are booleans and ``1:30`` is
    the integer 90; the collector reads all of those as strings. Duplicate keys
    are rejected (Go's parser does too) instead of silently keeping the last.
    """


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0) if text.startswith("0x") else int(text, 10)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConfigError(
                "", f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (each key may appear once)"
            )
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _load_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_Loader)
    except ConfigError as exc:
        raise ConfigError("", f"{source}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError("", f"{source}: invalid YAML at {where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{source}: invalid YAML: {exc}") from None


# ------------------------------------------------------------- environment expansion
_ENV_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Expanded(str):
    """A string that was exactly one ``${...}`` reference.

    Like the collector, such a value also has a typed reading (the variable's text
    parsed as YAML), so ``port: ${env:PORT}`` is an integer while
    ``hostname: ${env:HOST}`` stays a string even if HOST is ``1234``.
    """

    typed: object

    def __new__(cls, text: str, typed: object) -> _Expanded:
        obj = super().__new__(cls, text)
        obj.typed = typed
        return obj


def _expand_ref(body: str, path: str) -> str:
    if body.startswith("env:"):
        name, _, default = body[4:].partition(":-")
        has_default = ":-" in body[4:]
    elif ":" in body:
        scheme = body.split(":", 1)[0]
        raise ConfigError(path, f"unsupported config provider {scheme!r} in ${{{body}}} (only env is supported)")
    else:
        name, has_default, default = body, False, ""
    if not _ENV_NAME.match(name):
        raise ConfigError(path, f"invalid environment variable name {name!r} in ${{{body}}}")
    value = os.environ.get(name)
    if value is None or (has_default and value == ""):
        return default
    return value


def _expand_string(text: str, path: str) -> str:
    if "$" not in text:
        return text
    match = _ENV_REF.fullmatch(text)
    if match and match.group(0) != "$$":
        value = _expand_ref(match.group(1), path)
        try:
            typed: object = yaml.load(value, Loader=_Loader) if value else value
        except (yaml.YAMLError, ConfigError):
            typed = value
        if isinstance(typed, (dict, list)) or typed is None:
            typed = value
        return _Expanded(value, typed)

    def replace(m: re.Match[str]) -> str:
        return "$" if m.group(0) == "$$" else _expand_ref(m.group(1), path)

    return _ENV_REF.sub(replace, text)


def _expand(node: object, path: str) -> object:
    if isinstance(node, str):
        return _expand_string(node, path)
    if isinstance(node, list):
        return [_expand(item, f"{path}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: _expand(value, _join(path, str(key))) for key, value in node.items()}
    return node


# ------------------------------------------------------------------- scalar parsers
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_EXAMPLE = 'a duration such as "5s", "250ms" or "1m30s"'


def parse_duration(text: str) -> float | None:
    """A Go duration string ("1m30s", "250ms", "1.5h", "0") in seconds, or None if malformed."""
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        return None
    total = 0.0
    pos = 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if not match:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip


def parse_size(text: str) -> int | None:
    """A byte size ("20MiB", "512KiB", "4MB", "1GiB", "1024") in bytes, or None if malformed."""
    match = _SIZE.match(text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        return None
    return round(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _split_hostport(text: str) -> tuple[str, str] | None:
    """``host:port`` -> (host, port); IPv6 hosts in brackets. None if there is no port."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            return None
        return text[1:end], text[end + 2 :]
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


# -------------------------------------------------------------------- typed access
class _Val:
    """One value from the file and its key path; the accessors check its type."""

    def __init__(self, path: str, raw: object) -> None:
        self.path = path
        self.raw = raw

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.path, message)

    def _typed(self) -> object:
        return self.raw.typed if isinstance(self.raw, _Expanded) else self.raw

    def _got(self) -> str:
        value = self._typed()
        shown = f" {value!r}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
        return f"got {_type_name(value)}{shown}"

    @property
    def is_null(self) -> bool:
        return self.raw is None

    def string(self, *, non_empty: bool = False) -> str:
        if not isinstance(self.raw, str):
            self.fail(f"expected a string, got {_type_name(self.raw)}")
        if non_empty and not self.raw.strip():
            self.fail("must not be empty")
        return str(self.raw)

    def boolean(self) -> bool:
        value = self._typed()
        if not isinstance(value, bool):
            self.fail(f"expected a boolean (true or false), {self._got()}")
        return value

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._typed()
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected an integer, {self._got()}")
        self._check_range(value, minimum, maximum)
        return value

    def number(self, *, minimum: float | None = None, maximum: float | None = None, above: float | None = None
               ) -> float:  # fmt: skip
        value = self._typed()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(f"expected a number, {self._got()}")
        if above is not None and value <= above:
            self.fail(f"must be greater than {above:g}, got {value:g}")
        self._check_range(value, minimum, maximum)
        return float(value)

    def _check_range(self, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            self.fail(f"must be between {minimum:g} and {maximum:g}, got {value:g}")
        if minimum is not None and value < minimum:
            self.fail(f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            self.fail(f"must be at most {maximum:g}, got {value:g}")

    def port(self) -> int:
        return self.integer(minimum=1, maximum=65535)

    def duration(self, *, positive: bool = False) -> float:
        value = self._typed()
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            seconds = 0.0  # a bare 0 is unambiguous; any other number is (nanoseconds in Go)
        elif isinstance(self.raw, str):
            parsed = parse_duration(self.raw)
            if parsed is None:
                self.fail(f"invalid duration {self.raw!r}: expected {_DURATION_EXAMPLE}")
            seconds = parsed
        else:
            self.fail(f"expected {_DURATION_EXAMPLE}, {self._got()}")
        if seconds < 0:
            self.fail(f"must not be negative, got {self.raw!r}")
        if positive and seconds == 0:
            self.fail(f"must be greater than zero, got {self.raw!r}")
        return seconds

    def size(self, *, positive: bool = False) -> int:
        value = self._typed()
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(self.raw, str):
            parsed = parse_size(self.raw)
            if parsed is None:
                self.fail(f'invalid size {self.raw!r}: expected bytes or a size such as "512KiB", "20MiB", "4MB"')
            size = parsed
        else:
            self.fail(f'expected a size (bytes, or a string such as "20MiB"), {self._got()}')
        if size < 0 or (positive and size == 0):
            self.fail(f"must be {'greater than zero' if positive else 'at least 0'}, got {self.raw!r}")
        return size

    def choice(self, options: Iterable[str]) -> str:
        allowed = tuple(options)
        value = self.string()
        if value not in allowed:
            self.fail(f"invalid value {value!r}; valid values: {', '.join(allowed)}")
        return value

    def hostport(self, *, allow_empty: bool = False) -> str:
        value = self.string()
        if allow_empty and value == "":
            return value
        parts = _split_hostport(value)
        if parts is None or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 65535:
            self.fail(f'expected "host:port" with a port between 1 and 65535, got {value!r}')
        return value

    def items(self) -> list[_Val]:
        value = self._typed()
        if not isinstance(value, list):
            self.fail(f"expected a list, {self._got()}")
        return [_Val(f"{self.path}[{i}]", item) for i, item in enumerate(value)]

    def mapping(self) -> _Map:
        """The value as a block; null (``key:`` with nothing after it) is an empty block."""
        if self.raw is None:
            return _Map(self.path, {})
        if not isinstance(self.raw, dict):
            self.fail(f"expected a mapping, got {_type_name(self.raw)}")
        return _Map(self.path, cast("dict[object, object]", self.raw))


class _Map:
    """A block of keys. Reading a key marks it known; :meth:`done` rejects the rest."""

    def __init__(self, path: str, data: Mapping[object, object]) -> None:
        self.path = path
        self.data = {str(key): value for key, value in data.items()}
        self._known: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def names(self) -> list[str]:
        return list(self.data)

    def child(self, key: str) -> _Val:
        return _Val(_join(self.path, key), self.data.get(key))

    def get(self, key: str) -> _Val | None:
        self._known.append(key)
        return self.child(key) if key in self.data else None

    def require(self, key: str, what: str = "") -> _Val:
        value = self.get(key)
        if value is None:
            raise ConfigError(_join(self.path, key), f"required{what}")
        return value

    def done(self, unsupported: Mapping[str, str] | None = None) -> None:
        for key in self.data:
            if key in self._known:
                continue
            if unsupported and key in unsupported:
                raise ConfigError(_join(self.path, key), unsupported[key])
            valid = ", ".join(dict.fromkeys(self._known)) or "none"
            raise ConfigError(_join(self.path, key), f"unknown key (valid keys here: {valid})")


# ----------------------------------------------------------------- component IDs
_COMPONENT_ID = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:/(.+))?$")


def _component_type(value: _Val, key: str) -> str:
    match = _COMPONENT_ID.match(key)
    if not match or key.endswith("/"):
        raise ConfigError(value.path, f'invalid component ID {key!r}: expected "type" or "type/name"')
    return match.group(1)


def _no_components(root: _Map, section: str, what: str) -> None:
    value = root.get(section)
    if value is None:
        return
    block = value.mapping()
    for key in block.names():
        raise ConfigError(_join(section, key), f"unsupported component (Ringleader has no {what}; remove it)")


# ---------------------------------------------------------------------- receivers
def _parse_receivers(root: _Map) -> tuple[str, ReceiverConfig]:
    section = root.require("receivers", " (an otlp receiver)")
    block = section.mapping()
    otlp_ids: list[str] = []
    for key in block.names():
        if _component_type(block.child(key), key) != "otlp":
            raise ConfigError(block.child(key).path, "unsupported component (Ringleader only has the otlp receiver)")
        otlp_ids.append(key)
    if len(otlp_ids) != 1:
        found = f", found {len(otlp_ids)} ({', '.join(otlp_ids)})" if otlp_ids else ""
        raise ConfigError("receivers", f"exactly one otlp receiver must be set{found}")
    receiver_id = otlp_ids[0]
    otlp = block.child(receiver_id).mapping()
    protocols = otlp.require("protocols", " (grpc and/or http)").mapping()
    otlp.done()

    grpc_cfg: GRPCReceiverConfig | None = None
    grpc_val = protocols.get("grpc")
    if grpc_val is not None:
        grpc_block = grpc_val.mapping()
        defaults = GRPCReceiverConfig()
        endpoint = grpc_block.get("endpoint")
        mib = grpc_block.get("max_recv_msg_size_mib")
        grpc_cfg = GRPCReceiverConfig(
            endpoint=endpoint.hostport() if endpoint else defaults.endpoint,
            max_recv_msg_size=int(mib.number(above=0) * 1024 * 1024) if mib else defaults.max_recv_msg_size,
        )
        grpc_block.done(_UNSUPPORTED_RECEIVER_KEYS)

    http_cfg: HTTPReceiverConfig | None = None
    http_val = protocols.get("http")
    if http_val is not None:
        http_block = http_val.mapping()
        defaults_http = HTTPReceiverConfig()
        endpoint = http_block.get("endpoint")
        body = http_block.get("max_request_body_size")
        http_cfg = HTTPReceiverConfig(
            endpoint=endpoint.hostport() if endpoint else defaults_http.endpoint,
            max_request_body_size=body.size(positive=True) if body else defaults_http.max_request_body_size,
        )
        http_block.done(_UNSUPPORTED_RECEIVER_KEYS)
    protocols.done()
    if grpc_cfg is None and http_cfg is None:
        raise ConfigError(protocols.path, "at least one protocol (grpc or http) must be enabled")
    return receiver_id, ReceiverConfig(grpc=grpc_cfg, http=http_cfg)


_UNSUPPORTED_RECEIVER_KEYS = {
    key: "not supported by Ringleader's receiver (supported: endpoint and the size limit); remove it"
    for key in (
        "tls", "auth", "transport", "keepalive", "max_concurrent_streams", "read_buffer_size",
        "write_buffer_size", "include_metadata", "cors", "traces_url_path", "logs_url_path",
        "metrics_url_path", "response_headers", "compression_algorithms", "middlewares",
    )
}  # fmt: skip


# ---------------------------------------------------------------------- exporters
_EXPORTER_TYPES = ("loadbalancing", "load_balancing")
_RESOLVERS = ("static", "dns", "k8s", "aws_cloud_map")
_K8S_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _parse_exporters(root: _Map) -> tuple[str, LoadBalancingConfig]:
    section = root.require("exporters", " (a loadbalancing exporter)")
    block = section.mapping()
    ids: list[str] = []
    for key in block.names():
        if _component_type(block.child(key), key) not in _EXPORTER_TYPES:
            raise ConfigError(
                block.child(key).path,
                "unsupported component (Ringleader only has the loadbalancing exporter)",
            )
        ids.append(key)
    if len(ids) != 1:
        found = f", found {len(ids)} ({', '.join(ids)})" if ids else ""
        raise ConfigError("exporters", f"exactly one loadbalancing exporter must be set{found}")
    return ids[0], _parse_loadbalancing(block.child(ids[0]).mapping())


def _parse_loadbalancing(lb: _Map) -> LoadBalancingConfig:
    routing_key: str | None = None
    if (value := lb.get("routing_key")) is not None:
        routing_key = value.choice(("traceID", "service", "resource", "metric", "streamID", "attributes"))
    attrs: tuple[str, ...] = ()
    attrs_val = lb.get("routing_attributes")
    if attrs_val is not None:
        attrs = tuple(item.string(non_empty=True) for item in attrs_val.items())
    if routing_key == "attributes" and not attrs:
        raise ConfigError(_join(lb.path, "routing_attributes"), 'required when routing_key is "attributes"')
    if routing_key != "attributes" and attrs_val is not None:
        raise ConfigError(
            attrs_val.path,
            f'only valid when routing_key is "attributes" (routing_key is {routing_key or "unset"}); '
            "remove it or set routing_key: attributes",
        )
    resolver = _parse_resolver(lb.require("resolver", f" (one of {', '.join(_RESOLVERS)})").mapping())
    timeout = value.duration() if (value := lb.get("timeout")) is not None else 0.0
    queue = _parse_queue(lb.get("sending_queue"), enabled_by_default=False)
    retry = _parse_retry(lb.get("retry_on_failure"), enabled_by_default=False)
    protocol = OTLPExporterConfig()
    if (value := lb.get("protocol")) is not None:
        protocol_block = value.mapping()
        if (otlp := protocol_block.get("otlp")) is not None:
            protocol = _parse_otlp(otlp.mapping())
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
        ring_algorithm=cast(Any, ring.choice(("ringleader", "upstream"))) if ring else "ringleader",
    )


def _parse_resolver(block: _Map) -> ResolverConfig:
    present = sorted(key for key in block.names() if key in _RESOLVERS)
    for key in block.names():
        if key not in _RESOLVERS:
            hint = "; the Kubernetes resolver is called k8s" if key in ("kubernetes", "k8s_svc") else ""
            raise ConfigError(block.child(key).path, f"unknown resolver (valid: {', '.join(_RESOLVERS)}){hint}")
    if len(present) != 1:
        raise ConfigError(block.path, f"exactly one resolver must be set, found {len(present)} ({', '.join(present)})")
    kind = present[0]
    body = block.child(kind).mapping()
    result: ResolverConfig
    if kind == "static":
        hostnames = body.require("hostnames", " (a list of backend host:port)")
        items = hostnames.items()
        if not items:
            hostnames.fail("must list at least one backend")
        result = StaticResolverConfig(hostnames=tuple(_backend(item) for item in items))
    elif kind == "dns":
        dns_defaults = DNSResolverConfig(hostname="")
        hostname = body.require("hostname").string(non_empty=True)
        port = _dns_port(body.get("port"))
        interval = body.get("interval")
        timeout = body.get("timeout")
        server = body.get("server")
        srv = body.get("srv")
        result = DNSResolverConfig(
            hostname=hostname,
            port=port,
            interval=interval.duration(positive=True) if interval else dns_defaults.interval,
            timeout=timeout.duration(positive=True) if timeout else dns_defaults.timeout,
            server=_dns_server(server) if server else None,
            srv=srv.boolean() if srv else False,
        )
        if result.srv and result.port:
            raise ConfigError(_join(body.path, "port"), "cannot be used with srv: true (SRV records carry the ports)")
    elif kind == "k8s":
        k8s_defaults = K8sResolverConfig(service="")
        service = body.require("service", ' ("name" or "name.namespace")')
        ports = body.get("ports")
        port_list = k8s_defaults.ports
        if ports is not None:
            port_list = tuple(item.port() for item in ports.items())
            if not port_list:
                ports.fail("must list at least one port")
        k8s_timeout = body.get("timeout")
        return_hostnames = body.get("return_hostnames")
        debounce = body.get("debounce")
        result = K8sResolverConfig(
            service=_k8s_service(service),
            ports=port_list,
            timeout=k8s_timeout.duration(positive=True) if k8s_timeout else k8s_defaults.timeout,
            return_hostnames=return_hostnames.boolean() if return_hostnames else False,
            debounce=debounce.duration() if debounce else k8s_defaults.debounce,
        )
    else:
        aws_defaults = AWSCloudMapResolverConfig(namespace="", service_name="")
        namespace = body.require("namespace").string(non_empty=True)
        service_name = body.require("service_name").string(non_empty=True)
        health = body.get("health_status")
        interval = body.get("interval")
        timeout = body.get("timeout")
        aws_port = body.get("port")
        owner = body.get("owner_account")
        health_status = aws_defaults.health_status
        if health is not None:
            health_status = cast(Any, health.choice(("HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL")))
        result = AWSCloudMapResolverConfig(
            namespace=namespace,
            service_name=service_name,
            health_status=health_status,
            interval=interval.duration(positive=True) if interval else aws_defaults.interval,
            timeout=timeout.duration(positive=True) if timeout else aws_defaults.timeout,
            port=aws_port.port() if aws_port else None,
            owner_account=owner.string(non_empty=True) if owner else None,
        )
    body.done()
    return result


def _backend(item: _Val) -> str:
    value = item.string(non_empty=True)
    if any(ch.isspace() for ch in value) or "/" in value:
        item.fail(f'expected "host" or "host:port", got {value!r}')
    parts = _split_hostport(value)
    if parts is not None and (not parts[0] or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 65535):
        item.fail(f'expected "host" or "host:port" with a port between 1 and 65535, got {value!r}')
    return value


def _dns_port(value: _Val | None) -> str:
    # Upstream's port is a string; YAML writers naturally write a number. Accept both.
    if value is None:
        return ""
    raw = value._typed()
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(value.port())
    text = value.string()
    if text == "":
        return ""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        value.fail(f"expected a port between 1 and 65535, got {text!r}")
    return str(int(text))


def _dns_server(value: _Val) -> str:
    text = value.string(non_empty=True)
    parts = _split_hostport(text)
    host_ok = bool(parts[0]) if parts else not any(ch.isspace() or ch in "/[]" for ch in text)
    if not host_ok or (parts and (not parts[1].isdigit() or not 1 <= int(parts[1]) <= 65535)):
        value.fail(f'expected "host" or "host:port" of a DNS server (port 53 if omitted), got {text!r}')
    return text


def _k8s_service(value: _Val) -> str:
    # "name.ns.svc.cluster.local" is accepted too: the resolver reads it as name.ns.
    text = value.string(non_empty=True)
    parts = text.split(".")
    if not all(_K8S_LABEL.match(part) for part in parts) or (len(parts) > 2 and parts[2] != "svc"):
        value.fail(
            f'expected "name", "name.namespace" or "name.namespace.svc[.cluster-domain]" '
            f"(lowercase DNS labels), got {text!r}"
        )
    return text


# -------------------------------------------------------------------- otlp block
_COMPRESSIONS = ("gzip", "zstd", "snappy", "deflate", "none")
_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")

_UNSUPPORTED_OTLP = {
    "auth": "authentication extensions are not supported by Ringleader; send credentials with headers",
    "middlewares": "middleware extensions are not supported by Ringleader; remove it",
    "batcher": "the batcher is not supported by Ringleader (batching happens at the receiver); remove it",
    "per_rpc_auth": "not supported by Ringleader; send credentials with headers",
    "ca_file": "unknown key; TLS settings belong under tls (tls.ca_file)",
    "insecure": "unknown key; TLS settings belong under tls (tls.insecure)",
}
_UNSUPPORTED_TLS = {
    "cipher_suites": "not supported by Ringleader (gRPC's default cipher suites are used); remove it",
    "curve_preferences": "not supported by Ringleader; remove it",
    "tpm": "TPM-held keys are not supported by Ringleader; remove it",
    "server_name": "unknown key; the collector calls it server_name_override",
}


def _parse_otlp(block: _Map) -> OTLPExporterConfig:
    defaults = OTLPExporterConfig()
    if block.get("endpoint") is not None:
        log.warning("%s is ignored: the resolver sets each backend's endpoint", _join(block.path, "endpoint"))
    timeout = block.get("timeout")
    compression = defaults.compression
    if (value := block.get("compression")) is not None:
        text = value.string()
        compression = cast(Any, value.choice(_COMPRESSIONS) if text else "none")
    headers = _parse_headers(block.get("headers"))
    keepalive: KeepaliveConfig | None = None
    if (value := block.get("keepalive")) is not None and not value.is_null:
        ka = value.mapping()
        ka_time = ka.get("time")
        ka_timeout = ka.get("timeout")
        ka_permit = ka.get("permit_without_stream")
        keepalive = KeepaliveConfig(
            time=ka_time.duration() if ka_time else None,
            timeout=ka_timeout.duration() if ka_timeout else None,
            permit_without_stream=ka_permit.boolean() if ka_permit else False,
        )
        ka.done()
    tls = _parse_tls(block.get("tls"))
    queue = _parse_queue(block.get("sending_queue"), enabled_by_default=True)
    retry = _parse_retry(block.get("retry_on_failure"), enabled_by_default=True)
    balancer = block.get("balancer_name")
    authority = block.get("authority")
    wait = block.get("wait_for_ready")
    read_buf = block.get("read_buffer_size")
    write_buf = block.get("write_buffer_size")
    user_agent = block.get("user_agent")
    block.done(_UNSUPPORTED_OTLP)
    return OTLPExporterConfig(
        timeout=timeout.duration() if timeout else defaults.timeout,
        compression=compression,
        tls=tls,
        headers=headers,
        keepalive=keepalive,
        sending_queue=queue,
        retry_on_failure=retry,
        balancer_name=balancer.choice(("", "pick_first", "round_robin")) if balancer else "",
        authority=authority.string() if authority else "",
        wait_for_ready=wait.boolean() if wait else False,
        read_buffer_size=(read_buf.size() or None) if read_buf else defaults.read_buffer_size,
        write_buffer_size=(write_buf.size() or None) if write_buf else defaults.write_buffer_size,
        user_agent=user_agent.string() if user_agent else "",
    )


def _parse_headers(value: _Val | None) -> tuple[tuple[str, str], ...]:
    if value is None or value.is_null:
        return ()
    if isinstance(value.raw, list):
        # The collector also accepts headers as a list of {name, value} pairs.
        pairs: list[tuple[str, str]] = []
        for item in value.items():
            entry = item.mapping()
            name = entry.require("name").string(non_empty=True)
            pairs.append((name, entry.require("value").string()))
            entry.done()
        return tuple(pairs)
    block = value.mapping()
    result = []
    for key in block.names():
        if not key.strip():
            block.child(key).fail("header names must not be empty")
        result.append((key, block.child(key).string()))
    return tuple(result)


def _parse_tls(value: _Val | None) -> TLSConfig:
    if value is None or value.is_null:
        return TLSConfig()
    block = value.mapping()
    defaults = TLSConfig()
    flags = {key: (v.boolean() if (v := block.get(key)) else False)
             for key in ("insecure", "insecure_skip_verify", "include_system_ca_certs_pool")}  # fmt: skip
    texts: dict[str, str | None] = {}
    for key in ("ca_file", "ca_pem", "cert_file", "cert_pem", "key_file", "key_pem", "server_name_override"):
        v = block.get(key)
        texts[key] = (v.string() or None) if v else None
    for kind in ("ca", "cert", "key"):
        if texts[f"{kind}_file"] and texts[f"{kind}_pem"]:
            raise ConfigError(
                _join(block.path, f"{kind}_pem"),
                f"{kind}_file and {kind}_pem are mutually exclusive; set one",
            )
    has_cert = bool(texts["cert_file"] or texts["cert_pem"])
    has_key = bool(texts["key_file"] or texts["key_pem"])
    if has_cert != has_key:
        missing = "key_file or key_pem" if has_cert else "cert_file or cert_pem"
        present = "a client certificate" if has_cert else "a client key"
        raise ConfigError(_join(block.path, missing.split()[0]), f"{present} is set, so {missing} is required")
    for key in ("ca_file", "cert_file", "key_file"):
        path = texts[key]
        if path and not Path(path).is_file():
            raise ConfigError(_join(block.path, key), f"file not found: {path}")
    min_v = block.get("min_version")
    max_v = block.get("max_version")
    min_version = _tls_version(min_v) if min_v else defaults.min_version
    max_version = _tls_version(max_v) if max_v else defaults.max_version
    if min_version and max_version and _TLS_VERSIONS.index(min_version) > _TLS_VERSIONS.index(max_version):
        raise ConfigError(_join(block.path, "min_version"), f"{min_version} is above max_version {max_version}")
    # grpcio (BoringSSL) always verifies server certificates and negotiates TLS 1.2 or 1.3 on its
    # own: refuse settings it cannot honour instead of silently ignoring them.
    if flags["insecure_skip_verify"]:
        raise ConfigError(
            _join(block.path, "insecure_skip_verify"),
            "not supported: the gRPC client always verifies server certificates; set ca_file to the "
            "tier-2 CA, or insecure: true for plaintext",
        )
    if min_version not in ("", "1.2"):
        raise ConfigError(
            _join(block.path, "min_version"),
            f"{min_version} is not supported: gRPC negotiates TLS 1.2 or 1.3 (set 1.2)",
        )
    if max_version not in ("", "1.3"):
        raise ConfigError(
            _join(block.path, "max_version"),
            f"{max_version} is not supported: gRPC negotiates TLS 1.2 or 1.3 (set 1.3)",
        )
    reload = block.get("reload_interval")
    block.done(_UNSUPPORTED_TLS)
    return TLSConfig(
        insecure=flags["insecure"],
        insecure_skip_verify=flags["insecure_skip_verify"],
        ca_file=texts["ca_file"],
        ca_pem=texts["ca_pem"],
        cert_file=texts["cert_file"],
        cert_pem=texts["cert_pem"],
        key_file=texts["key_file"],
        key_pem=texts["key_pem"],
        server_name_override=texts["server_name_override"],
        include_system_ca_certs_pool=flags["include_system_ca_certs_pool"],
        min_version=min_version,
        max_version=max_version,
        reload_interval=reload.duration() if reload else defaults.reload_interval,
    )


def _tls_version(value: _Val) -> str:
    text = value.string()
    if text == "":
        return ""
    return value.choice(_TLS_VERSIONS)


# -------------------------------------------------------------- queue and retry
def _parse_queue(value: _Val | None, *, enabled_by_default: bool) -> QueueConfig:
    """A ``sending_queue`` block merged onto the defaults.

    As in the collector, writing the block at all turns the queue on (the
    exporter-level queue is off only while absent); ``enabled: false`` turns it off.
    """
    if value is None:
        return QueueConfig(enabled=enabled_by_default)
    block = value.mapping()
    defaults = QueueConfig()
    enabled = block.get("enabled")
    consumers = block.get("num_consumers")
    size = block.get("queue_size")
    sizer = block.get("sizer")
    block_on_overflow = block.get("block_on_overflow")
    blocking = block.get("blocking")  # deprecated upstream alias of block_on_overflow
    wait = block.get("wait_for_result")
    if wait is not None and wait.boolean():
        wait.fail("not supported by Ringleader (data is acknowledged once queued); remove it or set false")
    block.done(
        {
            "storage": "persistent queues are not supported (Ringleader's queues are in memory); remove it",
            "batch": "batching in the queue is not supported by Ringleader; remove it",
        }
    )
    overflow = defaults.block_on_overflow
    if blocking is not None:
        overflow = blocking.boolean()
    if block_on_overflow is not None:
        overflow = block_on_overflow.boolean()
    return QueueConfig(
        enabled=enabled.boolean() if enabled else True,
        num_consumers=consumers.integer(minimum=1) if consumers else defaults.num_consumers,
        queue_size=size.integer(minimum=1) if size else defaults.queue_size,
        sizer=cast(Any, sizer.choice(("requests", "items", "bytes"))) if sizer else defaults.sizer,
        block_on_overflow=overflow,
    )


def _parse_retry(value: _Val | None, *, enabled_by_default: bool) -> RetryConfig:
    defaults = RetryConfig()
    if value is None:
        return RetryConfig(enabled=enabled_by_default)
    block = value.mapping()
    enabled = block.get("enabled")
    initial = block.get("initial_interval")
    factor = block.get("randomization_factor")
    multiplier = block.get("multiplier")
    max_interval = block.get("max_interval")
    max_elapsed = block.get("max_elapsed_time")
    block.done()
    result = RetryConfig(
        enabled=enabled.boolean() if enabled else enabled_by_default,
        initial_interval=initial.duration(positive=True) if initial else defaults.initial_interval,
        randomization_factor=factor.number(minimum=0, maximum=1) if factor else defaults.randomization_factor,
        multiplier=multiplier.number(minimum=1) if multiplier else defaults.multiplier,
        max_interval=max_interval.duration(positive=True) if max_interval else defaults.max_interval,
        max_elapsed_time=max_elapsed.duration() if max_elapsed else defaults.max_elapsed_time,
    )
    if result.max_interval < result.initial_interval:
        raise ConfigError(
            _join(block.path, "max_interval"),
            f"must not be below initial_interval ({result.max_interval:g}s < {result.initial_interval:g}s)",
        )
    return result


# --------------------------------------------------------------- service section
def _parse_service(value: _Val | None, receiver_id: str, exporter_id: str, lb: LoadBalancingConfig) -> tuple[str, ...]:
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
    pipelines = pipelines_val.mapping() if pipelines_val is not None else _Map("service.pipelines", {})
    found: list[str] = []
    for pipeline_id in pipelines.names():
        item = pipelines.child(pipeline_id)
        signal = _component_type(item, pipeline_id)
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


def _pipeline_refs(pipeline: _Map, kind: str, defined: str) -> None:
    refs = pipeline.require(kind, f" (a list naming {defined})")
    items = refs.items()
    if not items:
        refs.fail(f"must name at least one of the defined {kind} ({defined})")
    for item in items:
        name = item.string()
        if name != defined:
            item.fail(f"{kind[:-1]} {name!r} is not defined (defined: {defined})")


# ------------------------------------------------------------------------ entry
_TOP_LEVEL = (
    "receivers",
    "exporters",
    "service",
    "processors",
    "extensions",
    "connectors",
    "telemetry",
    "shutdown",
)


def parse_config(data: object, source: str = "<config>") -> Config:
    """Validate already-loaded YAML data (env references not yet expanded)."""
    if data is None:
        raise ConfigError("", f"{source}: the configuration is empty")
    if not isinstance(data, dict):
        raise ConfigError("", f"{source}: expected a mapping at the top level, got {_type_name(data)}")
    root = _Map("", cast("dict[object, object]", _expand(data, "")))
    for key in root.names():
        if key not in _TOP_LEVEL:
            raise ConfigError(key, f"unknown top-level key (valid keys: {', '.join(_TOP_LEVEL)})")
    _no_components(root, "processors", "processors")
    _no_components(root, "extensions", "extensions")
    _no_components(root, "connectors", "connectors")
    receiver_id, receivers = _parse_receivers(root)
    exporter_id, lb = _parse_exporters(root)
    signals = _parse_service(root.get("service"), receiver_id, exporter_id, lb)

    telemetry = TelemetryConfig()
    if (value := root.get("telemetry")) is not None:
        block = value.mapping()
        endpoint = block.get("endpoint")
        level = block.get("log_level")
        block.done()
        telemetry = TelemetryConfig(
            endpoint=endpoint.hostport(allow_empty=True) if endpoint else telemetry.endpoint,
            log_level=level.choice(("debug", "info", "warn", "warning", "error")) if level else telemetry.log_level,
        )
    shutdown = ShutdownConfig()
    if (value := root.get("shutdown")) is not None:
        block = value.mapping()
        drain = block.get("drain_timeout")
        block.done()
        shutdown = ShutdownConfig(drain_timeout=drain.duration() if drain else shutdown.drain_timeout)
    root.done()
    return Config(receivers=receivers, exporter=lb, telemetry=telemetry, shutdown=shutdown, signals=signals)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, expand and validate a YAML config file."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{source}: not UTF-8 text") from None
    data = _load_yaml(text, source)
    if data is None:
        raise ConfigError("", f"{source}: the configuration file is empty")
    return parse_config(data, source)
