"""A ``LoadBalancingExporter``'s ``spec`` as typed, frozen objects.

:func:`parse_spec` reads the resource's ``spec`` (a mapping, camelCase, as the API
server stores it) into an :class:`ExporterSpec`, or raises :class:`SpecError`
naming the offending field the way ``kubectl explain`` does::

    >>> parse_spec({"resolver": {"static": {"hostnames": []}}})
    Traceback (most recent call last):
    SpecError: spec.resolver.static.hostnames: must list at least one backend

The API server already applies the CRD's defaults and refuses most bad specs
(schema and CEL rules in crds/ringleader.dev_loadbalancingexporters.yaml);
:func:`parse_spec` applies the same defaults and repeats the same checks so that a
spec that never went through the API server (unit tests, ``ringleader-operator
convert``) means the same thing. What only the data plane can judge is checked on
the rendered config by :func:`ringleader_operator.render.validate_config`.

Durations stay Go duration strings (``"5s"``, ``"1m30s"``), exactly as written, so
the rendered config says what the user wrote; Kubernetes-typed fields
(``resources``, ``affinity``, ``tolerations``, ...) stay plain mappings and are
copied into the pod template unchanged. docs/operator.md lists every field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, cast

from dataplane.config import parse_duration

__all__ = [
    "CREDENTIAL_HEADERS",
    "DEFAULT_IMAGE",
    "MANAGED_EXTRA_CONFIG_KEYS",
    "TLS",
    "AWSCloudMapResolver",
    "Autoscaling",
    "DNSResolver",
    "ExporterSpec",
    "Header",
    "K8sResolver",
    "OTLPClient",
    "PodDisruptionBudget",
    "Ports",
    "Queue",
    "Resolver",
    "Retry",
    "SecretKeyRef",
    "ServiceMonitor",
    "SpecError",
    "StaticResolver",
    "parse_spec",
]

DEFAULT_IMAGE = "ringleader:0.1.0"

RoutingKey = Literal["traceID", "service", "resource", "metric", "streamID", "attributes"]
ROUTING_KEYS: tuple[RoutingKey, ...] = ("traceID", "service", "resource", "metric", "streamID", "attributes")


class SpecError(ValueError):
    """An invalid spec: ``path`` is the field in camelCase (``spec.resolver.k8s.service``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = " ".join(message.split())
        super().__init__(f"{path}: {self.message}")


# ------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class K8sResolver:
    """Watch the EndpointSlices of a tier-2 Service (``namespace`` None: the resource's own)."""

    service: str
    namespace: str | None = None
    ports: tuple[int, ...] = (4317,)
    return_hostnames: bool = False
    timeout: str = "1m"
    debounce: str = "200ms"


@dataclass(frozen=True)
class DNSResolver:
    hostname: str
    port: int | None = None
    interval: str = "5s"
    timeout: str = "1s"
    server: str | None = None
    srv: bool = False


@dataclass(frozen=True)
class StaticResolver:
    hostnames: tuple[str, ...]


@dataclass(frozen=True)
class AWSCloudMapResolver:
    namespace: str
    service_name: str
    port: int | None = None
    health_status: Literal["HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL"] = "HEALTHY"
    interval: str = "30s"
    timeout: str = "5s"
    owner_account: str | None = None


Resolver = K8sResolver | DNSResolver | StaticResolver | AWSCloudMapResolver


@dataclass(frozen=True)
class Queue:
    """``sendingQueue``; the exporter level defaults to off, the per-backend level to on."""

    enabled: bool
    num_consumers: int = 10
    queue_size: int = 1000
    sizer: Literal["requests", "items", "bytes"] = "requests"
    block_on_overflow: bool = False


@dataclass(frozen=True)
class Retry:
    """``retryOnFailure``; the exporter level defaults to off, the per-backend level to on."""

    enabled: bool
    initial_interval: str = "5s"
    randomization_factor: float = 0.5
    multiplier: float = 1.5
    max_interval: str = "30s"
    max_elapsed_time: str = "5m"


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class Header:
    """One header on every export call: a literal ``value`` or a Secret key (never both)."""

    name: str
    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None


@dataclass(frozen=True)
class TLS:
    """TLS to tier 2. ``secret_name``: a Secret with ``ca.crt`` (and ``tls.crt``/``tls.key``
    when ``client_certificate``), mounted read-only into the pods."""

    insecure: bool = False
    secret_name: str | None = None
    client_certificate: bool = False
    server_name: str | None = None


@dataclass(frozen=True)
class OTLPClient:
    """``otlp``: the client settings for every tier-2 backend (upstream's ``protocol.otlp``)."""

    timeout: str = "5s"
    compression: Literal["gzip", "zstd", "snappy", "deflate", "none"] = "gzip"
    tls: TLS = field(default_factory=TLS)
    headers: tuple[Header, ...] = ()
    sending_queue: Queue = field(default_factory=lambda: Queue(enabled=True))
    retry_on_failure: Retry = field(default_factory=lambda: Retry(enabled=True))


@dataclass(frozen=True)
class Ports:
    grpc: int = 4317
    http: int = 4318
    metrics: int = 8888


@dataclass(frozen=True)
class PodDisruptionBudget:
    enabled: bool = True
    min_available: int | str | None = None
    max_unavailable: int | str | None = 1


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_utilization_percentage: int = 70


@dataclass(frozen=True)
class ServiceMonitor:
    """A prometheus-operator ServiceMonitor, made only where its CRD exists."""

    enabled: bool = True
    interval: str = "30s"


DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


@dataclass(frozen=True)
class ExporterSpec:
    resolver: Resolver
    replicas: int = 2
    image: str = DEFAULT_IMAGE
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    routing_key: RoutingKey = "traceID"
    routing_attributes: tuple[str, ...] = ()
    ring_algorithm: Literal["ringleader", "upstream"] = "ringleader"
    timeout: str = "0s"
    sending_queue: Queue = field(default_factory=lambda: Queue(enabled=False))
    retry_on_failure: Retry = field(default_factory=lambda: Retry(enabled=False))
    otlp: OTLPClient = field(default_factory=OTLPClient)
    ports: Ports = field(default_factory=Ports)
    drain_timeout: str = "30s"
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    resources: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: Mapping[str, Any] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    topology_spread_constraints: tuple[Mapping[str, Any], ...] = ()
    pod_disruption_budget: PodDisruptionBudget = field(default_factory=PodDisruptionBudget)
    autoscaling: Autoscaling | None = None
    service_monitor: ServiceMonitor = field(default_factory=ServiceMonitor)
    extra_config: Mapping[str, Any] = field(default_factory=dict)
    """Other ``exporters.loadbalancing`` keys (snake_case, upstream's names), merged into the config."""



# ``extraConfig`` keys that fields of the spec own: setting them there is an error naming the field.
MANAGED_EXTRA_CONFIG_KEYS: dict[str, str] = {
    "resolver": "spec.resolver",
    "routing_key": "spec.routingKey",
    "routing_attributes": "spec.routingAttributes",
    "ring_algorithm": "spec.ringAlgorithm",
    "timeout": "spec.timeout",
    "sending_queue": "spec.sendingQueue",
    "retry_on_failure": "spec.retryOnFailure",
    "protocol.otlp.timeout": "spec.otlp.timeout",
    "protocol.otlp.compression": "spec.otlp.compression",
    "protocol.otlp.tls.insecure": "spec.otlp.tls.insecure",
    "protocol.otlp.tls.ca_file": "spec.otlp.tls.secretName (ca.crt)",
    "protocol.otlp.tls.cert_file": "spec.otlp.tls.secretName with clientCertificate (tls.crt)",
    "protocol.otlp.tls.key_file": "spec.otlp.tls.secretName with clientCertificate (tls.key)",
    "protocol.otlp.tls.cert_pem": "spec.otlp.tls.secretName with clientCertificate (tls.crt)",
    "protocol.otlp.tls.key_pem": "spec.otlp.tls.secretName with clientCertificate (a private key belongs in a Secret)",
    "protocol.otlp.tls.server_name_override": "spec.otlp.tls.serverName",
    "protocol.otlp.headers": "spec.otlp.headers",
    "protocol.otlp.sending_queue": "spec.otlp.sendingQueue",
    "protocol.otlp.retry_on_failure": "spec.otlp.retryOnFailure",
    "protocol.otlp.endpoint": "spec.resolver (the resolver sets each backend's endpoint)",
}

# Limits shared with the CRD schema (crds/...yaml); tests/test_operator_crd.py checks they agree.
MAX_NAME = 253
MAX_TEXT = 1024
MAX_HOSTNAMES = 256
MAX_PORTS = 16
MAX_ATTRIBUTES = 32
MAX_HEADERS = 32
MAX_TOLERATIONS = 32
MAX_SPREAD = 8
MAX_REPLICAS = 1000

# Headers whose value is a credential: only from a Secret (a literal value would land in the ConfigMap).
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035 label: Service names
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # namespaces
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # Secrets
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_INT_OR_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


# ------------------------------------------------------------------ typed reading
class _Field:
    """One value of the spec and its camelCase path; the accessors check its type."""

    def __init__(self, path: str, raw: object) -> None:
        self.path = path
        self.raw = raw

    def fail(self, message: str) -> NoReturn:
        raise SpecError(self.path, message)

    def obj(self) -> _Obj:
        if self.raw is None:
            return _Obj(self.path, {})
        if not isinstance(self.raw, Mapping):
            self.fail(f"expected an object, got {_kind(self.raw)}")
        return _Obj(self.path, self.raw)

    def string(self, *, max_length: int = MAX_TEXT, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(self.raw, str):
            self.fail(f"expected a string, got {_kind(self.raw)}")
        if not self.raw:
            self.fail("must not be empty")
        if len(self.raw) > max_length:
            self.fail(f"must be at most {max_length} characters, got {len(self.raw)}")
        if pattern is not None and not pattern.match(self.raw):
            self.fail(f"{self.raw!r} is not {what or 'valid'}")
        return self.raw

    def boolean(self) -> bool:
        if not isinstance(self.raw, bool):
            self.fail(f"expected true or false, got {_kind(self.raw)}")
        return self.raw

    def integer(self, minimum: int, maximum: int) -> int:
        if isinstance(self.raw, bool) or not isinstance(self.raw, int):
            self.fail(f"expected an integer, got {_kind(self.raw)}")
        if not minimum <= self.raw <= maximum:
            self.fail(f"must be between {minimum} and {maximum}, got {self.raw}")
        return self.raw

    def number(self, minimum: float, maximum: float | None = None) -> float:
        if isinstance(self.raw, bool) or not isinstance(self.raw, (int, float)):
            self.fail(f"expected a number, got {_kind(self.raw)}")
        if self.raw < minimum or (maximum is not None and self.raw > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            self.fail(f"must be {bound}, got {self.raw:g}")
        return float(self.raw)

    def choice(self, options: tuple[str, ...]) -> str:
        if not isinstance(self.raw, str) or self.raw not in options:
            self.fail(f"must be one of {', '.join(options)}, got {self.raw!r}")
        return self.raw

    def duration(self, *, positive: bool = False) -> str:
        text = self.string(max_length=32)
        seconds = parse_duration(text)
        if seconds is None:
            self.fail(f'invalid duration {text!r}: expected a Go duration such as "5s", "250ms" or "1m30s"')
        if seconds < 0:
            self.fail(f"must not be negative, got {text!r}")
        if positive and seconds == 0:
            self.fail(f"must be greater than zero, got {text!r}")
        return text

    def int_or_percent(self) -> int | str:
        if isinstance(self.raw, int) and not isinstance(self.raw, bool):
            return self.integer(0, MAX_REPLICAS)
        if isinstance(self.raw, str) and _INT_OR_PERCENT.match(self.raw):
            return self.raw
        self.fail(f'expected an integer or a percentage such as "50%", got {self.raw!r}')

    def items(self, *, max_items: int) -> list[_Field]:
        if not isinstance(self.raw, list):
            self.fail(f"expected a list, got {_kind(self.raw)}")
        if len(self.raw) > max_items:
            self.fail(f"must have at most {max_items} items, got {len(self.raw)}")
        return [_Field(f"{self.path}[{i}]", item) for i, item in enumerate(self.raw)]

    def plain(self, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
        """A Kubernetes-typed value copied as is (the API server checked its shape)."""
        if not isinstance(self.raw, kind):
            if kind is dict and isinstance(self.raw, Mapping):
                return _thaw(self.raw)
            self.fail(f"expected {'an object' if kind is dict else 'a list'}, got {_kind(self.raw)}")
        return _thaw(self.raw)


class _Obj:
    """An object of the spec. Reading a key marks it known; :meth:`done` rejects the rest."""

    def __init__(self, path: str, data: Mapping[Any, Any]) -> None:
        self.path = path
        self.data = data
        self._known: list[str] = []

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str) -> _Field | None:
        self._known.append(key)
        value = self.data.get(key)
        return None if value is None else _Field(f"{self.path}.{key}", value)

    def require(self, key: str) -> _Field:
        value = self.get(key)
        if value is None:
            raise SpecError(f"{self.path}.{key}", "required")
        return value

    def done(self) -> None:
        for key in self.data:
            if key not in self._known:
                valid = ", ".join(self._known) or "none"
                raise SpecError(f"{self.path}.{key}", f"unknown field (valid fields here: {valid})")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _thaw(value: Any) -> Any:
    """A deep, plain-``dict``/``list`` copy (kopf hands out read-only views)."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return copy.copy(value)


# ---------------------------------------------------------------------- sections
def _resolver(value: _Field) -> Resolver:
    block = value.obj()
    names = ("k8s", "dns", "static", "awsCloudMap")
    present = [name for name in names if block.has(name)]
    if len(present) != 1:
        found = f"found {len(present)} ({', '.join(present)})" if present else "found none"
        value.fail(f"exactly one resolver must be set (k8s, dns, static or awsCloudMap), {found}")
    kind = present[0]
    body = block.require(kind).obj()
    result: Resolver
    if kind == "k8s":
        ports: tuple[int, ...] = (4317,)
        if (p := body.get("ports")) is not None:
            ports = tuple(item.integer(1, 65535) for item in p.items(max_items=MAX_PORTS))
            if not ports:
                p.fail("must list at least one port")
            if len(set(ports)) != len(ports):
                p.fail("must not list a port twice")
        namespace = body.get("namespace")
        hostnames = body.get("returnHostnames")
        timeout = body.get("timeout")
        debounce = body.get("debounce")
        result = K8sResolver(
            service=body.require("service").string(max_length=63, pattern=_DNS_LABEL, what="a Service name"),
            namespace=namespace.string(max_length=63, pattern=_DNS_1123_LABEL, what="a namespace name")
            if namespace
            else None,
            ports=ports,
            return_hostnames=hostnames.boolean() if hostnames else False,
            timeout=timeout.duration(positive=True) if timeout else "1m",
            debounce=debounce.duration() if debounce else "200ms",
        )
    elif kind == "dns":
        port = body.get("port")
        interval = body.get("interval")
        timeout = body.get("timeout")
        server = body.get("server")
        srv = body.get("srv")
        result = DNSResolver(
            hostname=body.require("hostname").string(max_length=MAX_NAME),
            port=port.integer(1, 65535) if port else None,
            interval=interval.duration(positive=True) if interval else "5s",
            timeout=timeout.duration(positive=True) if timeout else "1s",
            server=server.string(max_length=MAX_NAME) if server else None,
            srv=srv.boolean() if srv else False,
        )
        if result.srv and result.port is not None:
            raise SpecError(f"{body.path}.port", "cannot be used with srv: true (the SRV records carry the ports)")
    elif kind == "static":
        hostnames = body.require("hostnames")
        names_list = tuple(item.string(max_length=MAX_NAME) for item in hostnames.items(max_items=MAX_HOSTNAMES))
        if not names_list:
            hostnames.fail("must list at least one backend")
        result = StaticResolver(hostnames=names_list)
    else:
        port = body.get("port")
        health = body.get("healthStatus")
        interval = body.get("interval")
        timeout = body.get("timeout")
        owner = body.get("ownerAccount")
        result = AWSCloudMapResolver(
            namespace=body.require("namespace").string(max_length=MAX_NAME),
            service_name=body.require("serviceName").string(max_length=MAX_NAME),
            port=port.integer(1, 65535) if port else None,
            health_status=cast(Any, health.choice(("HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL")))
            if health
            else "HEALTHY",
            interval=interval.duration(positive=True) if interval else "30s",
            timeout=timeout.duration(positive=True) if timeout else "5s",
            owner_account=owner.string(max_length=64) if owner else None,
        )
    body.done()
    block.done()
    return result


def _queue(value: _Field | None, *, enabled: bool) -> Queue:
    if value is None:
        return Queue(enabled=enabled)
    block = value.obj()
    on = block.get("enabled")
    consumers = block.get("numConsumers")
    size = block.get("queueSize")
    sizer = block.get("sizer")
    overflow = block.get("blockOnOverflow")
    block.done()
    return Queue(
        enabled=on.boolean() if on else enabled,
        num_consumers=consumers.integer(1, 10_000) if consumers else 10,
        queue_size=size.integer(1, 100_000_000) if size else 1000,
        sizer=cast(Any, sizer.choice(("requests", "items", "bytes"))) if sizer else "requests",
        block_on_overflow=overflow.boolean() if overflow else False,
    )


def _retry(value: _Field | None, *, enabled: bool) -> Retry:
    if value is None:
        return Retry(enabled=enabled)
    block = value.obj()
    on = block.get("enabled")
    initial = block.get("initialInterval")
    factor = block.get("randomizationFactor")
    multiplier = block.get("multiplier")
    max_interval = block.get("maxInterval")
    max_elapsed = block.get("maxElapsedTime")
    block.done()
    result = Retry(
        enabled=on.boolean() if on else enabled,
        initial_interval=initial.duration(positive=True) if initial else "5s",
        randomization_factor=factor.number(0, 1) if factor else 0.5,
        multiplier=multiplier.number(1) if multiplier else 1.5,
        max_interval=max_interval.duration(positive=True) if max_interval else "30s",
        max_elapsed_time=max_elapsed.duration() if max_elapsed else "5m",
    )
    if (parse_duration(result.max_interval) or 0) < (parse_duration(result.initial_interval) or 0):
        raise SpecError(f"{block.path}.maxInterval", "must not be below initialInterval")
    return result


def _otlp(value: _Field | None) -> OTLPClient:
    if value is None:
        return OTLPClient()
    block = value.obj()
    timeout = block.get("timeout")
    compression = block.get("compression")
    tls = _tls(block.get("tls"))
    headers: list[Header] = []
    if (h := block.get("headers")) is not None:
        seen: set[str] = set()
        for item in h.items(max_items=MAX_HEADERS):
            headers.append(_header(item))
            lowered = headers[-1].name.lower()
            if lowered in seen:
                raise SpecError(f"{item.path}.name", f"header {headers[-1].name!r} is listed twice")
            seen.add(lowered)
    queue = _queue(block.get("sendingQueue"), enabled=True)
    retry = _retry(block.get("retryOnFailure"), enabled=True)
    block.done()
    return OTLPClient(
        timeout=timeout.duration() if timeout else "5s",
        compression=cast(Any, compression.choice(("gzip", "zstd", "snappy", "deflate", "none")))
        if compression
        else "gzip",
        tls=tls,
        headers=tuple(headers),
        sending_queue=queue,
        retry_on_failure=retry,
    )


def _tls(value: _Field | None) -> TLS:
    if value is None:
        return TLS()
    block = value.obj()
    insecure = block.get("insecure")
    secret = block.get("secretName")
    client = block.get("clientCertificate")
    server = block.get("serverName")
    block.done()
    result = TLS(
        insecure=insecure.boolean() if insecure else False,
        secret_name=secret.string(max_length=MAX_NAME, pattern=_DNS_SUBDOMAIN, what="a Secret name")
        if secret
        else None,
        client_certificate=client.boolean() if client else False,
        server_name=server.string(max_length=MAX_NAME) if server else None,
    )
    if result.insecure and (result.secret_name or result.client_certificate or result.server_name):
        raise SpecError(
            f"{block.path}.insecure",
            "insecure: true means plaintext; remove secretName, clientCertificate and serverName or set it false",
        )
    if result.client_certificate and not result.secret_name:
        raise SpecError(f"{block.path}.secretName", "required with clientCertificate: true (holds tls.crt and tls.key)")
    return result


def _header(value: _Field) -> Header:
    block = value.obj()
    name = block.require("name").string(max_length=256, pattern=_HEADER_NAME, what="an HTTP header name")
    text = block.get("value")
    source = block.get("valueFrom")
    block.done()
    if (text is None) == (source is None):
        value.fail("set exactly one of value and valueFrom")
    if text is not None:
        if not isinstance(text.raw, str):
            text.fail(f"expected a string, got {_kind(text.raw)}")
        if name.lower() in CREDENTIAL_HEADERS:
            text.fail(f"{name} carries a credential, which must not be written to a ConfigMap: use "
                      "valueFrom.secretKeyRef")  # fmt: skip
        return Header(name=name, value=text.raw)
    assert source is not None
    src = source.obj()
    ref = src.require("secretKeyRef").obj()
    secret = SecretKeyRef(
        name=ref.require("name").string(max_length=MAX_NAME, pattern=_DNS_SUBDOMAIN, what="a Secret name"),
        key=ref.require("key").string(max_length=MAX_NAME, pattern=_SECRET_KEY, what="a Secret key"),
    )
    ref.done()
    src.done()
    return Header(name=name, secret_key_ref=secret)


def _ports(value: _Field | None) -> Ports:
    if value is None:
        return Ports()
    block = value.obj()
    grpc = block.get("grpc")
    http = block.get("http")
    metrics = block.get("metrics")
    block.done()
    # Ports below 1024 need NET_BIND_SERVICE, which the non-root, capability-free pod does not have.
    result = Ports(
        grpc=grpc.integer(1024, 65535) if grpc else 4317,
        http=http.integer(1024, 65535) if http else 4318,
        metrics=metrics.integer(1024, 65535) if metrics else 8888,
    )
    if len({result.grpc, result.http, result.metrics}) != 3:
        got = f"{result.grpc}, {result.http}, {result.metrics}"
        value.fail(f"grpc, http and metrics must be different ports, got {got}")
    return result


def _pdb(value: _Field | None) -> PodDisruptionBudget:
    if value is None:
        return PodDisruptionBudget()
    block = value.obj()
    enabled = block.get("enabled")
    min_available = block.get("minAvailable")
    max_unavailable = block.get("maxUnavailable")
    block.done()
    if min_available is not None and max_unavailable is not None:
        value.fail("set at most one of minAvailable and maxUnavailable")
    return PodDisruptionBudget(
        enabled=enabled.boolean() if enabled else True,
        min_available=min_available.int_or_percent() if min_available else None,
        max_unavailable=max_unavailable.int_or_percent() if max_unavailable else (None if min_available else 1),
    )


def _autoscaling(value: _Field | None) -> Autoscaling | None:
    if value is None:
        return None
    block = value.obj()
    enabled = block.get("enabled")
    low = block.get("minReplicas")
    high = block.get("maxReplicas")
    cpu = block.get("targetCPUUtilizationPercentage")
    block.done()
    if enabled is not None and not enabled.boolean():
        return None
    result = Autoscaling(
        min_replicas=low.integer(1, MAX_REPLICAS) if low else 2,
        max_replicas=high.integer(1, MAX_REPLICAS) if high else 10,
        target_cpu_utilization_percentage=cpu.integer(1, 100) if cpu else 70,
    )
    if result.min_replicas > result.max_replicas:
        raise SpecError(f"{block.path}.minReplicas", f"must not exceed maxReplicas ({result.max_replicas})")
    return result


def _service_monitor(value: _Field | None) -> ServiceMonitor:
    if value is None:
        return ServiceMonitor()
    block = value.obj()
    enabled = block.get("enabled")
    interval = block.get("interval")
    block.done()
    return ServiceMonitor(
        enabled=enabled.boolean() if enabled else True,
        interval=interval.duration(positive=True) if interval else "30s",
    )


_ENV_REFERENCE = re.compile(r"\$\$|\$\{[^}]*\}")


def _no_env_references(node: Any, path: str) -> None:
    """The pod's environment holds nothing extraConfig could use (only the headers' Secret values), and the
    operator's must not leak into a validation message: refuse ``${...}`` (``$$`` is a literal ``$``)."""
    if isinstance(node, str):
        if any(m.group() != "$$" for m in _ENV_REFERENCE.finditer(node)):
            raise SpecError(
                path,
                "environment references are not available here (write the value; a secret belongs in "
                "spec.otlp.headers with valueFrom or in spec.otlp.tls.secretName; write $$ for a literal $)",
            )
    elif isinstance(node, dict):
        for key, item in node.items():
            _no_env_references(item, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _no_env_references(item, f"{path}[{i}]")


def _toleration(value: _Field) -> dict[str, Any]:
    """A core/v1 Toleration, with the two rules the CRD checks (the rest the API server checks in the pod)."""
    toleration: dict[str, Any] = value.plain(dict)
    if "tolerationSeconds" in toleration and toleration.get("effect") != "NoExecute":
        raise SpecError(f"{value.path}.tolerationSeconds", "tolerationSeconds is only valid with effect NoExecute")
    if toleration.get("operator") == "Exists" and toleration.get("value"):
        raise SpecError(f"{value.path}.value", "value must be empty with operator Exists")
    return toleration


def _extra_config(value: _Field | None) -> dict[str, Any]:
    if value is None:
        return {}
    extra: dict[str, Any] = value.plain(dict)
    _no_env_references(extra, value.path)
    for dotted, owner in MANAGED_EXTRA_CONFIG_KEYS.items():
        node: Any = extra
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            value_path = f"{value.path}.{dotted}"
            raise SpecError(value_path, f"is set by {owner}; set it there instead of in extraConfig")
    return extra


# -------------------------------------------------------------------------- entry
def parse_spec(spec: Mapping[str, Any]) -> ExporterSpec:
    """Read a resource's ``spec`` (defaults applied as the CRD applies them)."""
    root = _Field("spec", spec).obj()
    replicas = root.get("replicas")
    image = root.get("image")
    pull = root.get("imagePullPolicy")
    routing_key = root.get("routingKey")
    attrs = root.get("routingAttributes")
    ring = root.get("ringAlgorithm")
    timeout = root.get("timeout")
    drain = root.get("drainTimeout")
    log_level = root.get("logLevel")
    resources = root.get("resources")
    node_selector = root.get("nodeSelector")
    affinity = root.get("affinity")
    tolerations = root.get("tolerations")
    spread = root.get("topologySpreadConstraints")

    key = cast(RoutingKey, routing_key.choice(ROUTING_KEYS) if routing_key else "traceID")
    attributes: tuple[str, ...] = ()
    if attrs is not None:
        attributes = tuple(item.string(max_length=256) for item in attrs.items(max_items=MAX_ATTRIBUTES))
        if key != "attributes":
            attrs.fail(f"only valid with routingKey: attributes (routingKey is {key})")
    if key == "attributes" and not attributes:
        raise SpecError("spec.routingAttributes", "required (at least one attribute) with routingKey: attributes")

    selector: dict[str, str] = {}
    if node_selector is not None:
        for name, val in node_selector.obj().data.items():
            selector[str(name)] = _Field(f"spec.nodeSelector.{name}", val).string(max_length=MAX_NAME)
    result = ExporterSpec(
        resolver=_resolver(root.require("resolver")),
        replicas=replicas.integer(0, MAX_REPLICAS) if replicas else 2,
        image=image.string(max_length=512) if image else DEFAULT_IMAGE,
        image_pull_policy=cast(Any, pull.choice(("Always", "IfNotPresent", "Never")) if pull else "IfNotPresent"),
        routing_key=key,
        routing_attributes=attributes,
        ring_algorithm=cast(Any, ring.choice(("ringleader", "upstream")) if ring else "ringleader"),
        timeout=timeout.duration() if timeout else "0s",
        sending_queue=_queue(root.get("sendingQueue"), enabled=False),
        retry_on_failure=_retry(root.get("retryOnFailure"), enabled=False),
        otlp=_otlp(root.get("otlp")),
        ports=_ports(root.get("ports")),
        drain_timeout=drain.duration() if drain else "30s",
        log_level=cast(Any, log_level.choice(("debug", "info", "warn", "error")) if log_level else "info"),
        resources=resources.plain(dict) if resources else copy.deepcopy(DEFAULT_RESOURCES),
        node_selector=selector,
        affinity=affinity.plain(dict) if affinity else None,
        tolerations=tuple(_toleration(t) for t in tolerations.items(max_items=MAX_TOLERATIONS)) if tolerations else (),
        topology_spread_constraints=tuple(s.plain(dict) for s in spread.items(max_items=MAX_SPREAD)) if spread else (),
        pod_disruption_budget=_pdb(root.get("podDisruptionBudget")),
        autoscaling=_autoscaling(root.get("autoscaling")),
        service_monitor=_service_monitor(root.get("serviceMonitor")),
        extra_config=_extra_config(root.get("extraConfig")),
    )
    root.done()
    return result
