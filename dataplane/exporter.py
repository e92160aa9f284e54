"""Exporting to one tier-2 backend: a gRPC channel per backend, OTLP Export calls.

:class:`BackendClient` owns the channel to one endpoint and sends already
serialized export requests (the splitter's output) without re-encoding them.
It applies the ``protocol.otlp`` template: TLS (including mTLS files), headers,
compression, keepalive, per-call timeout, authority and wait-for-ready.

Outcomes follow the OTLP specification's retry rules: ``UNAVAILABLE``,
``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``, ``ABORTED``, ``OUT_OF_RANGE``,
``CANCELLED`` and ``DATA_LOSS`` are retryable, every other error is permanent.
A response that reports partial success counts the rejected items as failed
(permanently) and the rest as delivered.

Retrying is not done here: see :mod:`dataplane.delivery` (per backend) and
:mod:`dataplane.backoff` (the delays).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .config_model import OTLPExporterConfig
from .hostport import join_host_port, split_host_port
from .telemetry import Telemetry

log = logging.getLogger("ringleader.exporter")

DEFAULT_PORT = 4317

METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
_RESPONSES: dict[str, Any] = {
    "traces": ExportTraceServiceResponse,
    "logs": ExportLogsServiceResponse,
    "metrics": ExportMetricsServiceResponse,
}
_REJECTED_FIELD = {"traces": "rejected_spans", "logs": "rejected_log_records", "metrics": "rejected_data_points"}

RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

_COMPRESSION = {
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
    "none": grpc.Compression.NoCompression,
}


class ExportError(Exception):
    """An export attempt failed. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool, code: str) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


@dataclass(slots=True)
class ExportResult:
    """Items the backend accepted and rejected (partial success) in one call."""

    accepted: int
    rejected: int = 0
    message: str = ""


def grpc_target(endpoint: str) -> str:
    """The gRPC target for a resolver endpoint, adding upstream's default port 4317."""
    if split_host_port(endpoint) is not None:
        return endpoint
    host = endpoint[1:-1] if endpoint.startswith("[") and endpoint.endswith("]") else endpoint
    return join_host_port(host, DEFAULT_PORT)


# Debian/Ubuntu, RHEL/Fedora, Alpine/other: where the system CA bundle lives.
_SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def _system_roots() -> bytes:
    for path in _SYSTEM_CA_BUNDLES:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            continue
    return b""


def _read(path: str | None, pem: str | None) -> bytes | None:
    if pem:
        return pem.encode()
    if path:
        with open(path, "rb") as f:
            return f.read()
    return None


def _channel_options(cfg: OTLPExporterConfig) -> list[tuple[str, object]]:
    options: list[tuple[str, object]] = [
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        # Each backend gets its own channel; never let grpc share subchannels between them.
        ("grpc.use_local_subchannel_pool", 1),
        # Reconnect quickly after a tier-2 pod restarts: gRPC's default backoff reaches 120 s.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]
    if cfg.keepalive is not None:
        if cfg.keepalive.time:
            options.append(("grpc.keepalive_time_ms", int(cfg.keepalive.time * 1000)))
        if cfg.keepalive.timeout:
            options.append(("grpc.keepalive_timeout_ms", int(cfg.keepalive.timeout * 1000)))
        options.append(("grpc.keepalive_permit_without_calls", int(cfg.keepalive.permit_without_stream)))
    if cfg.balancer_name:
        options.append(("grpc.lb_policy_name", cfg.balancer_name))
    if cfg.authority:
        options.append(("grpc.default_authority", cfg.authority))
    if cfg.tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", cfg.tls.server_name_override))
    if cfg.user_agent:
        options.append(("grpc.primary_user_agent", cfg.user_agent))
    if cfg.write_buffer_size:
        options.append(("grpc.experimental.tcp_write_buffer_size", cfg.write_buffer_size))  # best effort
    if cfg.read_buffer_size:
        options.append(("grpc.experimental.tcp_read_chunk_size", cfg.read_buffer_size))
    return options


def channel_compression(name: str) -> grpc.Compression:
    """grpcio implements gzip and deflate only; zstd and snappy fall back to gzip (logged once)."""
    if name in _COMPRESSION:
        return _COMPRESSION[name]
    if name not in _warned_compressions:
        _warned_compressions.add(name)
        log.warning("protocol.otlp.compression %r is not available in grpcio: exports use gzip instead", name)
    return grpc.Compression.Gzip


_warned_compressions: set[str] = set()


def make_channel(endpoint: str, cfg: OTLPExporterConfig) -> grpc.aio.Channel:
    target = grpc_target(endpoint)
    options = _channel_options(cfg)
    compression = channel_compression(cfg.compression)
    if cfg.tls.insecure:
        return grpc.aio.insecure_channel(target, options=options, compression=compression)
    roots = _read(cfg.tls.ca_file, cfg.tls.ca_pem)
    if roots is not None and cfg.tls.include_system_ca_certs_pool:
        roots = _system_roots() + b"\n" + roots
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_read(cfg.tls.key_file, cfg.tls.key_pem),
        certificate_chain=_read(cfg.tls.cert_file, cfg.tls.cert_pem),
    )
    return grpc.aio.secure_channel(target, credentials, options=options, compression=compression)


class BackendClient:
    """One backend's channel and its Export calls."""

    def __init__(self, endpoint: str, cfg: OTLPExporterConfig, telemetry: Telemetry) -> None:
        self.endpoint = endpoint
        self._cfg = cfg
        self._telemetry = telemetry
        self._metadata = tuple((k.lower(), v) for k, v in cfg.headers) or None
        self._open_channel()
        self._latency = telemetry.backend_latency.labels(endpoint=endpoint)
        self._ok = telemetry.backend_outcome.labels(endpoint=endpoint, success="true")
        self._failed = telemetry.backend_outcome.labels(endpoint=endpoint, success="false")

    def _open_channel(self) -> None:
        self._channel = make_channel(self.endpoint, self._cfg)
        self._opened = time.monotonic()
        self._calls = {
            signal: self._channel.unary_unary(
                method, request_serializer=None, response_deserializer=_RESPONSES[signal].FromString
            )
            for signal, method in METHODS.items()
        }

    def _maybe_reload(self) -> None:
        """tls.reload_interval: re-read certificate files by opening a fresh channel."""
        reload = self._cfg.tls.reload_interval
        if reload and not self._cfg.tls.insecure and time.monotonic() - self._opened >= reload:
            old = self._channel
            self._open_channel()
            # In-flight calls on the old channel finish within the grace period.
            asyncio.get_running_loop().create_task(old.close(grace=self._cfg.timeout or 5.0))
            log.info("%s: reloaded TLS credentials", self.endpoint)

    async def export(self, signal: str, payload: bytes, items: int, timeout: float | None = None) -> ExportResult:
        """Send one serialized export request; raises :class:`ExportError` on failure."""
        self._maybe_reload()
        call = self._calls[signal]
        limit = timeout if timeout is not None else (self._cfg.timeout or None)
        start = time.monotonic()
        try:
            response = await call(
                payload, timeout=limit, metadata=self._metadata, wait_for_ready=self._cfg.wait_for_ready
            )
        except grpc.aio.AioRpcError as exc:
            self._latency.observe((time.monotonic() - start) * 1000)
            self._failed.inc()
            code = exc.code()
            raise ExportError(
                f"{code.name}: {exc.details() or ''}".strip(), code in RETRYABLE_CODES, code.name
            ) from None
        self._latency.observe((time.monotonic() - start) * 1000)
        self._ok.inc()
        rejected = 0
        message = ""
        if response.HasField("partial_success"):
            rejected = int(getattr(response.partial_success, _REJECTED_FIELD[signal]))
            message = response.partial_success.error_message
        return ExportResult(accepted=items - rejected, rejected=rejected, message=message)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)
