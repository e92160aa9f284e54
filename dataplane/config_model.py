"""The validated configuration, as typed, immutable objects.

:mod:`dataplane.config` parses a YAML file into these; everything else in the
data plane only ever sees these objects. Durations are seconds (float), sizes are
bytes (int). Defaults are upstream's (OpenTelemetry Collector ``loadbalancing``
exporter and the OTLP exporter/receiver it builds on) unless marked
*Ringleader extension*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Signal = Literal["traces", "logs", "metrics"]
SIGNALS: tuple[Signal, ...] = ("traces", "logs", "metrics")

RoutingKey = Literal["traceID", "service", "resource", "metric", "streamID", "attributes"]

# Which routing keys each signal accepts, and its default (upstream semantics).
ROUTING_KEYS_BY_SIGNAL: dict[str, tuple[str, ...]] = {
    "traces": ("traceID", "service", "attributes"),
    "logs": ("service", "traceID", "resource", "attributes"),
    "metrics": ("service", "resource", "metric", "streamID", "attributes"),
}
DEFAULT_ROUTING_KEY: dict[str, str] = {"traces": "traceID", "logs": "service", "metrics": "service"}


@dataclass(frozen=True)
class GRPCReceiverConfig:
    endpoint: str = "0.0.0.0:4317"
    max_recv_msg_size: int = 4 * 1024 * 1024  # from max_recv_msg_size_mib (default 4)


@dataclass(frozen=True)
class HTTPReceiverConfig:
    endpoint: str = "0.0.0.0:4318"
    max_request_body_size: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class ReceiverConfig:
    grpc: GRPCReceiverConfig | None = field(default_factory=GRPCReceiverConfig)
    http: HTTPReceiverConfig | None = field(default_factory=HTTPReceiverConfig)


@dataclass(frozen=True)
class TLSConfig:
    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    ca_pem: str | None = None
    cert_file: str | None = None
    cert_pem: str | None = None
    key_file: str | None = None
    key_pem: str | None = None
    server_name_override: str | None = None
    include_system_ca_certs_pool: bool = False
    min_version: str = "1.2"
    max_version: str = ""
    reload_interval: float = 0.0


@dataclass(frozen=True)
class KeepaliveConfig:
    time: float | None = None  # seconds between pings when idle
    timeout: float | None = None  # seconds to wait for a ping ack
    permit_without_stream: bool = False


@dataclass(frozen=True)
class QueueConfig:
    enabled: bool = True
    num_consumers: int = 10
    queue_size: int = 1000
    sizer: Literal["requests", "items", "bytes"] = "requests"
    block_on_overflow: bool = False


@dataclass(frozen=True)
class CoalesceConfig:
    """Ringleader extension ``exporters.loadbalancing.coalesce``: queued parts bound for one
    backend are sent as one export of at most ``max_size`` bytes; a part waits at most
    ``max_delay`` seconds for others to join it (0: only what is already waiting joins)."""

    max_size: int = 1 << 20
    max_delay: float = 0.02


@dataclass(frozen=True)
class EjectionConfig:
    """Ringleader extension ``exporters.loadbalancing.ejection`` (passive ejection, see
    :mod:`dataplane.ejection`)."""

    enabled: bool = True
    consecutive_failures: int = 5
    window: float = 10.0
    cooldown: float = 30.0
    probe_interval: float = 5.0
    probe_timeout: float = 2.0
    max_ejected_percent: int = 50


@dataclass(frozen=True)
class RetryConfig:
    enabled: bool = True
    initial_interval: float = 5.0
    randomization_factor: float = 0.5
    multiplier: float = 1.5
    max_interval: float = 30.0
    max_elapsed_time: float = 300.0  # 0 = retry forever


@dataclass(frozen=True)
class OTLPExporterConfig:
    """``protocol.otlp``: the template of the per-backend OTLP/gRPC exporter."""

    timeout: float = 5.0
    compression: Literal["gzip", "zstd", "snappy", "deflate", "none"] = "gzip"
    # ``compression_params.level`` (as the collector's confighttp): 0 is the codec's default
    # (gzip/deflate 6, zstd 3); gzip/deflate -1 or 1..9, zstd any (clamped to 1..22).
    compression_level: int = 0
    tls: TLSConfig = field(default_factory=TLSConfig)
    headers: tuple[tuple[str, str], ...] = ()
    keepalive: KeepaliveConfig | None = None
    sending_queue: QueueConfig = field(default_factory=QueueConfig)
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)
    balancer_name: str = ""
    authority: str = ""
    wait_for_ready: bool = False
    read_buffer_size: int | None = None
    write_buffer_size: int | None = None
    user_agent: str = ""  # upstream configgrpc ``user_agent``; "" = gRPC's default
    # Ringleader extension: parts larger than this are cut at item boundaries before they are
    # queued; 4 MiB is a collector's default gRPC receive limit (max_recv_msg_size_mib: 4).
    max_request_size: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class StaticResolverConfig:
    hostnames: tuple[str, ...]


@dataclass(frozen=True)
class DNSResolverConfig:
    hostname: str
    port: str = ""
    interval: float = 5.0
    timeout: float = 1.0
    server: str | None = None  # Ringleader extension: host:port of the DNS server to ask
    srv: bool = False  # Ringleader extension: hostname names an SRV record set


@dataclass(frozen=True)
class K8sResolverConfig:
    service: str
    ports: tuple[int, ...] = (4317,)
    timeout: float = 60.0
    return_hostnames: bool = False
    debounce: float = 0.2  # Ringleader extension: coalesce bursts of slice changes


@dataclass(frozen=True)
class AWSCloudMapResolverConfig:
    namespace: str
    service_name: str
    health_status: Literal["HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL"] = "HEALTHY"
    interval: float = 30.0
    timeout: float = 5.0
    port: int | None = None
    owner_account: str | None = None


ResolverConfig = StaticResolverConfig | DNSResolverConfig | K8sResolverConfig | AWSCloudMapResolverConfig


@dataclass(frozen=True)
class LoadBalancingConfig:
    """``exporters.loadbalancing`` (or ``load_balancing``)."""

    resolver: ResolverConfig
    routing_key: str | None = None  # None: each signal's default
    routing_attributes: tuple[str, ...] = ()
    timeout: float = 0.0  # 0 = none
    sending_queue: QueueConfig = field(default_factory=lambda: QueueConfig(enabled=False))
    retry_on_failure: RetryConfig = field(default_factory=lambda: RetryConfig(enabled=False))
    protocol: OTLPExporterConfig = field(default_factory=OTLPExporterConfig)
    ring_algorithm: str = "ringleader"  # Ringleader extension; one of dataplane.ring.ALGORITHMS
    coalesce: CoalesceConfig = field(default_factory=CoalesceConfig)  # Ringleader extension
    ejection: EjectionConfig = field(default_factory=EjectionConfig)  # Ringleader extension

    def routing_key_for(self, signal: str) -> str:
        return self.routing_key or DEFAULT_ROUTING_KEY[signal]


@dataclass(frozen=True)
class TelemetryConfig:
    endpoint: str = "0.0.0.0:8888"  # /metrics, /healthz, /readyz, /debug/ring; "" disables
    log_level: str = "info"


@dataclass(frozen=True)
class HealthCheckConfig:
    """A collector's ``health_check`` extension, served as the collector serves it."""

    endpoint: str = "localhost:13133"
    path: str = "/"  # "/" answers on every path, like Go's ServeMux


@dataclass(frozen=True)
class ShutdownConfig:
    drain_timeout: float = 30.0


@dataclass(frozen=True)
class MemoryConfig:
    """Ringleader extension ``memory``: the process's total memory budget (see :mod:`dataplane.memory`)."""

    limit: int | None = None  # bytes; None: 80% of the container's limit, else 1 GiB


@dataclass(frozen=True)
class DataPathConfig:
    """Ringleader extension ``data_path``: the native data path's threads (see :mod:`dataplane.runtime`)."""

    worker_threads: int | None = None  # None: the CPUs the process may use, at least 1


@dataclass(frozen=True)
class Config:
    receivers: ReceiverConfig
    exporter: LoadBalancingConfig
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    data_path: DataPathConfig = field(default_factory=DataPathConfig)
    signals: tuple[str, ...] = SIGNALS
    """Signals the data plane accepts: from service.pipelines when given, else every signal
    the routing key supports."""
    health_check: HealthCheckConfig | None = None
    """From a collector's ``health_check`` extension, when service.extensions enables it."""
    receiver_id: str = "otlp"
    """The receiver's component ID (``otlp``, ``otlp/tier1``): the ``receiver`` label of the
    collector's standard self-metrics."""
    exporter_id: str = "loadbalancing"
    """The exporter's component ID as written (``loadbalancing``, ``load_balancing/x``): the
    ``exporter`` label of the collector's standard self-metrics."""
