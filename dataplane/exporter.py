"""Exporting to one tier-2 backend: a native gRPC channel per backend, OTLP Export calls.

:class:`BackendClient` owns the channel to one endpoint and sends already
serialized export requests (the splitter's output) without re-encoding them.
The channel is native (``dataplane._native.Channel``, the Rust crate's
``client`` module): HTTP/2 over one connection per backend (plaintext when
``tls.insecure``, else TLS with rustls), our own gRPC framing and compression
(``gzip``, ``deflate``, ``zstd``, ``snappy`` or none, at
``compression_params.level``), reconnecting with backoff (250 ms to 5 s),
keepalive pings, authority, headers, user agent and wait-for-ready as
configured. Compressing, sending and waiting happen on the data path's own
threads without the interpreter lock; the outcome comes back to the asyncio loop
as one callback. Cancelling an :meth:`BackendClient.export` cancels the call:
the backend sees the stream reset.

Each call's timeout is ``protocol.otlp.timeout``, shortened to the client's
deadline; it is sent as ``grpc-timeout`` and enforced by a local timer
(``DEADLINE_EXCEEDED``). Failures below gRPC map to codes as grpc-go maps them:
no connection, a refused or reset one is ``UNAVAILABLE``; a non-200 HTTP answer
follows gRPC's HTTP-to-status table.

Outcomes follow the OTLP specification's retry rules: ``UNAVAILABLE``,
``DEADLINE_EXCEEDED``, ``ABORTED``, ``OUT_OF_RANGE``, ``CANCELLED`` and
``DATA_LOSS`` are retryable; ``RESOURCE_EXHAUSTED`` only when the backend sends
a ``google.rpc.RetryInfo`` (it is recovering, e.g. a memory limiter), not
otherwise (e.g. a message over its size limit, which no retry can fix); every
other error is permanent. A RetryInfo's delay is carried as
:attr:`ExportError.retry_after`, and the retry waits at least that long.
A response that reports partial success counts the rejected items as failed
(permanently) and the rest as delivered.

Retrying is not done here: see :mod:`dataplane.delivery` (per backend) and
:mod:`dataplane.backoff` (the delays).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from . import _native
from .config_model import OTLPExporterConfig
from .hostport import join_host_port, split_host_port
from .telemetry import Telemetry
from .wire import MalformedError, find_len_field, iter_len_fields, read_tag, read_varint, skip_field

log = logging.getLogger("ringleader.exporter")

# Before the interpreter finalizes, the native side stops handing results over and waits for the
# hand-overs under way: a runtime thread caught inside Python at finalization would abort the process.
atexit.register(_native.quiesce)

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

# gRPC status codes by number (the native channel reports numbers; names as grpcio's StatusCode.name).
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

# The local timer's slack past a client's deadline (see BackendClient.export).
_DEADLINE_SLACK = 0.1

RETRYABLE_CODES = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"})


class ExportError(Exception):
    """An export attempt failed. ``retryable`` says whether trying again may help;
    ``retry_after`` is the backend's RetryInfo delay (seconds), if it sent one."""

    def __init__(self, message: str, retryable: bool, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.retry_after = retry_after


_RETRY_INFO_TYPE = b"type.googleapis.com/google.rpc.RetryInfo"


def retry_info_delay(status_details: bytes) -> float | None:
    """The delay of the ``google.rpc.RetryInfo`` in a serialized ``google.rpc.Status``, if any.

    Status: ``details`` (3) are ``Any`` messages (``type_url`` 1, ``value`` 2); RetryInfo's
    ``retry_delay`` (1) is a Duration (``seconds`` 1, ``nanos`` 2). Malformed bytes count as absent.
    """
    try:
        for tag, _, start, end in iter_len_fields(status_details, 0, len(status_details)):
            if tag != 0x1A:
                continue
            fields = {t: (s, e) for t, _, s, e in iter_len_fields(status_details, start, end)}
            url, value = fields.get(0x0A), fields.get(0x12)
            if url is None or status_details[url[0] : url[1]] != _RETRY_INFO_TYPE:
                continue
            if value is None:
                return 0.0
            duration = find_len_field(status_details, value[0], value[1], 0x0A)
            if duration is None:
                return 0.0
            numbers = _varints(status_details, duration[0], duration[1])
            return numbers.get(1, 0) + numbers.get(2, 0) / 1e9
    except MalformedError:
        return None
    return None


def _varints(data: bytes, pos: int, end: int) -> dict[int, int]:
    out: dict[int, int] = {}
    while pos < end:
        tag, pos = read_tag(data, pos, end)
        if tag & 7 == 0:
            out[tag >> 3], pos = read_varint(data, pos, end)
        else:
            pos = skip_field(data, tag & 7, pos, end)
    return out


def status_name(code: int) -> str:
    """The name of a gRPC status number (``UNKNOWN`` for numbers gRPC does not define)."""
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else "UNKNOWN"


def export_error(code: str, message: str, details: bytes) -> ExportError:
    """The :class:`ExportError` for a failed call: retryable per the OTLP rules, RetryInfo read from the details."""
    retry_after = retry_info_delay(details) if details else None
    retryable = code in RETRYABLE_CODES or (code == "RESOURCE_EXHAUSTED" and retry_after is not None)
    return ExportError(f"{code}: {message}".strip(), retryable, code, retry_after)


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


def channel_options(cfg: OTLPExporterConfig) -> dict[str, Any]:
    """The ``protocol.otlp`` template as keyword arguments of ``dataplane._native.Channel``.

    ``balancer_name`` has nothing to choose between: a channel is one endpoint (the resolver
    and the ring balance across backends), so it is accepted and ignored, as documented.
    """
    tls = cfg.tls
    keepalive = cfg.keepalive
    return {
        "compression": cfg.compression,
        "level": cfg.compression_level,
        "insecure": tls.insecure,
        "ca_file": tls.ca_file,
        "ca_pem": tls.ca_pem,
        "cert_file": tls.cert_file,
        "cert_pem": tls.cert_pem,
        "key_file": tls.key_file,
        "key_pem": tls.key_pem,
        "include_system_ca_certs_pool": tls.include_system_ca_certs_pool,
        "system_ca_files": list(_SYSTEM_CA_BUNDLES),
        "server_name_override": tls.server_name_override,
        "insecure_skip_verify": tls.insecure_skip_verify,
        "min_version": tls.min_version,
        "max_version": tls.max_version,
        "reload_interval": tls.reload_interval or None,
        "headers": [(k.lower(), v) for k, v in cfg.headers],
        "authority": cfg.authority,
        "user_agent": cfg.user_agent,
        "wait_for_ready": cfg.wait_for_ready,
        "keepalive_time": keepalive.time if keepalive else None,
        "keepalive_timeout": keepalive.timeout if keepalive else None,
        "keepalive_permit_without_stream": keepalive.permit_without_stream if keepalive else False,
        "write_buffer_size": cfg.write_buffer_size,
        "read_buffer_size": cfg.read_buffer_size,
    }


def open_channel(endpoint: str, cfg: OTLPExporterConfig) -> _native.Channel:
    """A native channel to ``endpoint`` (port 4317 when none is given); it starts connecting at once.

    Raises ``ValueError`` for settings the channel cannot use (e.g. a malformed PEM file).
    """
    return _native.Channel(grpc_target(endpoint), **channel_options(cfg))


def _settle(future: asyncio.Future[tuple[int, str, bytes, bytes]], *outcome: Any) -> None:
    if not future.done():
        future.set_result(outcome)  # type: ignore[arg-type]


async def call(
    channel: _native.Channel, method: str, payload: bytes, timeout: float | None
) -> tuple[int, str, bytes, bytes]:
    """One call on ``channel``: (code, message, status details, response message).

    Cancelling the awaiting task cancels the native call (the backend sees the stream reset).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[int, str, bytes, bytes]] = loop.create_future()
    handle = channel.export(method, payload, timeout, loop, functools.partial(_settle, future))
    try:
        return await future
    except asyncio.CancelledError:
        handle.cancel()
        raise


class BackendClient:
    """One backend's channel and its Export calls."""

    def __init__(self, endpoint: str, cfg: OTLPExporterConfig, telemetry: Telemetry) -> None:
        self.endpoint = endpoint
        self._cfg = cfg
        self._telemetry = telemetry
        self._channel = open_channel(endpoint, cfg)
        self._inflight: dict[asyncio.Future[tuple[int, str, bytes, bytes]], _native.ExportCall] = {}
        self._latency = telemetry.backend_latency.labels(endpoint=endpoint)
        self._ok = telemetry.backend_outcome.labels(endpoint=endpoint, success="true")
        self._failed = telemetry.backend_outcome.labels(endpoint=endpoint, success="false")

    async def export(self, signal: str, payload: bytes, items: int, deadline: float | None = None) -> ExportResult:
        """Send one serialized export request; raises :class:`ExportError` on failure.

        The call's timeout is ``protocol.otlp.timeout``, shortened to the client's
        ``deadline`` (``time.monotonic()`` based) when there is one, so the backend
        sees the same deadline as the client (sent as ``grpc-timeout``).
        """
        limit = self._cfg.timeout or None
        local = limit
        start = time.monotonic()
        if deadline is not None:
            remaining = deadline - start
            if remaining <= 0:
                raise ExportError("DEADLINE_EXCEEDED: the client's deadline passed", True, "DEADLINE_EXCEEDED")
            if limit is None or remaining < limit:
                # The client's deadline binds: the backend gets it exactly (grpc-timeout), while the
                # local timer leaves the client's own cancellation (its deadline) a moment to arrive
                # first, so the request is counted as the client's deadline, not as an export failure.
                limit, local = remaining, remaining + _DEADLINE_SLACK
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, str, bytes, bytes]] = loop.create_future()
        handle = self._channel.export(
            METHODS[signal], payload, limit, loop, functools.partial(_settle, future), local_timeout=local
        )
        self._inflight[future] = handle
        try:
            code, message, details, response = await future
        except asyncio.CancelledError:
            handle.cancel()  # the caller gave up: so does the call (RST_STREAM to the backend)
            raise
        finally:
            del self._inflight[future]
        self._latency.observe((time.monotonic() - start) * 1000)
        if code != 0:
            self._failed.inc()
            raise export_error(status_name(code), message, details)
        self._ok.inc()
        return partial_success(signal, response, items)

    async def close(self, grace: float | None = None) -> None:
        """Close the channel: calls in flight get up to ``grace`` seconds, then are cancelled (their
        awaiters get ``CancelledError``; the backend sees the streams reset)."""
        pending = [f for f in self._inflight if not f.done()]
        if pending and grace:
            await asyncio.wait(pending, timeout=grace)
        for future, handle in list(self._inflight.items()):
            if not future.done():
                # As grpc.aio's close did: the call is cancelled and its awaiter sees CancelledError
                # (shutdown counts such exports by their consumer, see dataplane.shutdown).
                handle.cancel()
                future.cancel()
        self._channel.close()


def partial_success(signal: str, response: bytes, items: int) -> ExportResult:
    """The :class:`ExportResult` of a successful call, counting a partial success's rejected items."""
    rejected = 0
    message = ""
    if response:
        try:
            parsed = _RESPONSES[signal].FromString(response)
        except DecodeError:
            log.debug("unparseable %s export response (%d bytes): counted as accepted", signal, len(response))
            return ExportResult(accepted=items)
        if parsed.HasField("partial_success"):
            rejected = int(getattr(parsed.partial_success, _REJECTED_FIELD[signal]))
            message = parsed.partial_success.error_message
    return ExportResult(accepted=items - rejected, rejected=rejected, message=message)
