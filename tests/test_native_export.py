"""The native gRPC exporter (``dataplane._native.Channel`` under :class:`BackendClient`) against real servers.

- real grpcio servers in this process (plaintext, TLS, mTLS; certificates made by
  ``openssl`` for this run only) receive what :class:`BackendClient` sends, see its
  metadata and deadline, and answer with statuses, RetryInfo and partial success;
- a cancelled export resets the stream at the backend (the server sees the call end);
- the real upstream collector (v0.161, ``e2e/build_otelcol.sh``) as the tier-2 backend
  of a running data plane receives every span with each codec it speaks, and the
  codec really is on the wire (the collector decodes it, the sink counts the spans).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from dataplane.config_model import KeepaliveConfig, OTLPExporterConfig, TLSConfig
from dataplane.exporter import BackendClient, ExportError, ExportResult
from dataplane.telemetry import Telemetry
from tests.harness import (
    DataPlaneProcess,
    SinkProcess,
    free_port,
    grpc_export,
    spans_of,
    static_config,
    trace_request,
    wait_until,
)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
PLAIN = OTLPExporterConfig(tls=TLSConfig(insecure=True), timeout=10.0)


# ----------------------------------------------------------------- certificates -----


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _make_leaf(d: Path, name: str, ca: str, ext: str) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate (localhost, tier2.test, 127.0.0.1), a client certificate and an unrelated CA."""
    d = tmp_path_factory.mktemp("certs")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    _make_leaf(d, "server", "ca", leaf + "extendedKeyUsage=serverAuth\n"
               "subjectAltName=DNS:localhost,DNS:tier2.test,IP:127.0.0.1\n")  # fmt: skip
    _make_leaf(d, "client", "ca", leaf + "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:tier1.test\n")
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key",
                 d / "other-ca.pem")  # fmt: skip


# ---------------------------------------------------------------- a real backend -----


@dataclass
class Backend:
    """A grpcio OTLP trace server in this process: records requests, metadata and deadlines."""

    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    remaining: list[float | None] = field(default_factory=list)
    ended: list[bool] = field(default_factory=list)  # per blocked call: did it see the call end?
    answer: Any = None  # None: OK; a callable(context) -> bytes to customise
    block: threading.Event = field(default_factory=threading.Event)
    server: Any = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handle(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        self.remaining.append(context.time_remaining())
        if self.answer is not None:
            return bytes(self.answer(context))
        return b""


def _serve(backend: Backend, credentials: grpc.ServerCredentials | None = None) -> Backend:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(backend.handle)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Export": handler})])
    address = f"127.0.0.1:{backend.port}"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    backend.port, backend.server = port, server
    return backend


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = _serve(Backend())
    yield b
    b.block.set()
    b.server.stop(None)


def _tls_backend(certs: Certs, require_client_auth: bool) -> Backend:
    creds = grpc.ssl_server_credentials(
        [(certs.server_key.read_bytes(), certs.server_cert.read_bytes())],
        root_certificates=certs.ca.read_bytes() if require_client_auth else None,
        require_client_auth=require_client_auth,
    )
    return _serve(Backend(), creds)


def _request(n: int, service: str = "native-export") -> bytes:
    return trace_request([(bytes([i % 256]) * 16, i.to_bytes(8, "big")) for i in range(1, n + 1)], service)


def _export(endpoint: str, cfg: OTLPExporterConfig, payload: bytes, items: int, **kw: Any) -> ExportResult:
    async def run() -> ExportResult:
        client = BackendClient(endpoint, cfg, Telemetry())
        try:
            return await client.export("traces", payload, items, **kw)
        finally:
            await client.close(grace=1.0)

    return asyncio.run(run())


def _error(endpoint: str, cfg: OTLPExporterConfig, payload: bytes = b"", **kw: Any) -> ExportError:
    with pytest.raises(ExportError) as info:
        _export(endpoint, cfg, payload, 0, **kw)
    return info.value


# ---------------------------------------------------------------- plaintext calls -----


def test_a_request_arrives_byte_for_byte_with_metadata_and_the_deadline(backend: Backend) -> None:
    cfg = OTLPExporterConfig(
        tls=TLSConfig(insecure=True), timeout=7.0, compression="none",
        headers=(("X-Tenant", "team-a"),), user_agent="tier1/1.0",
    )  # fmt: skip
    payload = _request(100)
    result = _export(backend.endpoint, cfg, payload, 100)
    assert result == ExportResult(accepted=100)
    assert backend.requests == [payload]
    meta = backend.metadata[0]
    assert meta["x-tenant"] == "team-a"
    assert meta["user-agent"].startswith("tier1/1.0 ringleader-grpc/")
    remaining = backend.remaining[0]
    assert remaining is not None and 5.0 < remaining <= 7.0  # grpc-timeout carried the 7 s budget


def test_the_client_deadline_shortens_the_timeout_sent_to_the_backend(backend: Backend) -> None:
    _export(backend.endpoint, PLAIN, _request(1), 1, deadline=time.monotonic() + 3.0)
    remaining = backend.remaining[0]
    assert remaining is not None and remaining <= 3.0


@pytest.mark.parametrize("codec", ["gzip", "deflate", "none"])
def test_grpcio_decodes_what_each_codec_sends(backend: Backend, codec: str) -> None:
    payload = _request(500)
    level = 0 if codec == "none" else 1
    cfg = OTLPExporterConfig(tls=TLSConfig(insecure=True), compression=codec, compression_level=level)  # type: ignore[arg-type]
    assert _export(backend.endpoint, cfg, payload, 500).accepted == 500
    assert backend.requests == [payload]


def test_partial_success_counts_the_rejected_items(backend: Backend) -> None:
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 3
    response.partial_success.error_message = "3 spans too old"
    backend.answer = lambda _ctx: response.SerializeToString()
    result = _export(backend.endpoint, PLAIN, _request(10), 10)
    assert (result.accepted, result.rejected, result.message) == (7, 3, "3 spans too old")


def test_resource_exhausted_with_retry_info_is_retryable_after_its_delay(backend: Backend) -> None:
    # google.rpc.Status{code 8, details [Any{RetryInfo{retry_delay{seconds 2, nanos 5e8}}}]}
    retry_info = b"\x0a\x08\x08\x02\x10\x80\xca\xb5\xee\x01"
    any_msg = b"\x0a\x28type.googleapis.com/google.rpc.RetryInfo\x12" + bytes([len(retry_info)]) + retry_info
    status = b"\x08\x08\x1a" + bytes([len(any_msg)]) + any_msg

    def answer(ctx: grpc.ServicerContext) -> bytes:
        ctx.abort_with_status(_Status(grpc.StatusCode.RESOURCE_EXHAUSTED, "memory limiter",
                                      (("grpc-status-details-bin", status),)))  # fmt: skip
        return b""

    backend.answer = answer
    err = _error(backend.endpoint, PLAIN)
    assert (err.code, err.retryable, err.retry_after) == ("RESOURCE_EXHAUSTED", True, 2.5)
    assert "memory limiter" in str(err)


def test_permanent_and_retryable_codes_keep_their_meaning(backend: Backend) -> None:
    backend.answer = lambda ctx: ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad data: 100% wrong")
    err = _error(backend.endpoint, PLAIN)
    assert (err.code, err.retryable) == ("INVALID_ARGUMENT", False)
    assert "bad data: 100% wrong" in str(err)  # grpc-message is percent-decoded
    backend.answer = lambda ctx: ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too large")
    err = _error(backend.endpoint, PLAIN)
    assert (err.code, err.retryable, err.retry_after) == ("RESOURCE_EXHAUSTED", False, None)
    backend.answer = lambda ctx: ctx.abort(grpc.StatusCode.ABORTED, "try again")
    assert _error(backend.endpoint, PLAIN).retryable


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def test_a_slow_backend_times_out_locally_with_deadline_exceeded(backend: Backend) -> None:
    backend.answer = lambda _ctx: backend.block.wait(30) and b""
    cfg = OTLPExporterConfig(tls=TLSConfig(insecure=True), timeout=0.5)
    started = time.monotonic()
    err = _error(backend.endpoint, cfg)
    assert (err.code, err.retryable) == ("DEADLINE_EXCEEDED", True)
    assert time.monotonic() - started < 20  # bounded by the timeout, not by the blocked handler


def test_cancelling_an_export_resets_the_stream_at_the_backend(backend: Backend) -> None:
    def answer(ctx: grpc.ServicerContext) -> bytes:
        ended = threading.Event()
        ctx.add_callback(ended.set)
        backend.ended.append(ended.wait(30))
        return b""

    backend.answer = answer

    async def run() -> None:
        client = BackendClient(backend.endpoint, OTLPExporterConfig(tls=TLSConfig(insecure=True), timeout=60.0),
                               Telemetry())  # fmt: skip
        task = asyncio.ensure_future(client.export("traces", _request(1), 1))
        while not backend.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()

    asyncio.run(run())
    wait_until(lambda: backend.ended, 30, what="the backend to see the call end")
    assert backend.ended == [True]  # it ended by the reset, 60 s before its deadline


def test_close_lets_calls_in_flight_finish_within_the_grace(backend: Backend) -> None:
    def answer(_ctx: grpc.ServicerContext) -> bytes:
        time.sleep(0.5)
        return b""

    backend.answer = answer

    async def run() -> ExportResult:
        client = BackendClient(backend.endpoint, PLAIN, Telemetry())
        task = asyncio.ensure_future(client.export("traces", _request(2), 2))
        while not backend.requests:
            await asyncio.sleep(0.01)
        await client.close(grace=20.0)
        return await task

    assert asyncio.run(run()).accepted == 2


def test_close_without_grace_cancels_calls_in_flight(backend: Backend) -> None:
    backend.answer = lambda _ctx: backend.block.wait(30) and b""

    async def run() -> None:
        client = BackendClient(backend.endpoint, PLAIN, Telemetry())
        task = asyncio.ensure_future(client.export("traces", _request(2), 2))
        while not backend.requests:
            await asyncio.sleep(0.01)
        await client.close(grace=None)
        with pytest.raises(asyncio.CancelledError):  # as grpc.aio's close: the work was cancelled
            await task

    asyncio.run(run())


_EXIT_SCRIPT = """
import asyncio, sys
from dataplane.config_model import OTLPExporterConfig, TLSConfig
from dataplane.exporter import BackendClient
from dataplane.telemetry import Telemetry
from tests.test_native_export import _request

async def main():
    client = BackendClient(sys.argv[1], OTLPExporterConfig(tls=TLSConfig(insecure=True), compression="gzip"),
                           Telemetry())
    payload = _request(300)
    await asyncio.gather(*(client.export("traces", payload, 300) for _ in range(200)))
    print("exported")

asyncio.run(main())
"""


def test_the_interpreter_exits_cleanly_right_after_exports(tmp_path: Path) -> None:
    """Results handed over while the interpreter exits must not abort it (a runtime thread caught inside
    Python at finalization did, about one exit in four, before ``_native.quiesce`` ran at exit)."""
    import sys

    from tests.harness import ROOT, _env

    sink = SinkProcess(tmp_path, "exit-sink", "--count-only").start()
    try:
        for _ in range(8):
            done = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, sink.endpoint], cwd=ROOT, env=_env(),
                                  capture_output=True, timeout=120)  # fmt: skip
            assert (done.returncode, done.stdout.strip()) == (0, b"exported"), done.stderr.decode()[-2000:]
    finally:
        sink.stop()


def test_no_backend_fails_fast_unavailable_unless_wait_for_ready() -> None:
    port = free_port()
    err = _error(f"127.0.0.1:{port}", OTLPExporterConfig(tls=TLSConfig(insecure=True), timeout=30.0))
    assert (err.code, err.retryable) == ("UNAVAILABLE", True)

    # wait_for_ready: the call waits for the backend that starts while it waits.
    started: list[Backend] = []
    cfg = OTLPExporterConfig(tls=TLSConfig(insecure=True), timeout=60.0, wait_for_ready=True,
                             keepalive=KeepaliveConfig(time=10.0, timeout=5.0))  # fmt: skip
    timer = threading.Timer(1.0, lambda: started.append(_serve(Backend(port=port))))
    timer.start()
    try:
        assert _export(f"127.0.0.1:{port}", cfg, _request(3), 3).accepted == 3
        assert len(started[0].requests) == 1
    finally:
        timer.join()
        for b in started:
            b.server.stop(None)


def test_keepalive_pings_detect_a_frozen_backend_before_the_call_times_out(tmp_path: Path) -> None:
    """A backend that stops answering (SIGSTOP: the TCP connection stays open) misses the HTTP/2 PING:
    the call fails UNAVAILABLE on the keepalive timeout, not DEADLINE_EXCEEDED at its 120 s timeout."""
    import os
    import signal as signals

    sink = SinkProcess(tmp_path, "frozen").start()
    assert sink.proc is not None
    cfg = OTLPExporterConfig(tls=TLSConfig(insecure=True), timeout=120.0,
                             keepalive=KeepaliveConfig(time=1.0, timeout=1.0))  # fmt: skip

    async def run() -> ExportError:
        client = BackendClient(sink.endpoint, cfg, Telemetry())
        try:
            await client.export("traces", _request(1), 1)  # connected and answering
            assert sink.proc is not None
            os.kill(sink.proc.pid, signals.SIGSTOP)
            with pytest.raises(ExportError) as info:
                await client.export("traces", _request(1), 1)
            return info.value
        finally:
            await client.close()

    try:
        err = asyncio.run(run())
    finally:
        os.kill(sink.proc.pid, signals.SIGCONT)
        sink.stop()
    assert (err.code, err.retryable) == ("UNAVAILABLE", True), err


def test_a_plain_http_server_is_unavailable_not_a_hang() -> None:
    """Not HTTP/2 at all (an HTTP/1 server): the handshake fails, the call is UNAVAILABLE."""
    import socketserver

    class Http1(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.read(24)
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Http1) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            err = _error(f"127.0.0.1:{server.server_address[1]}", OTLPExporterConfig(tls=TLSConfig(insecure=True)))
        finally:
            server.shutdown()
    assert (err.code, err.retryable) == ("UNAVAILABLE", True)


# --------------------------------------------------------------------------- TLS -----


def test_a_tls_backend_receives_the_spans(certs: Certs) -> None:
    b = _tls_backend(certs, require_client_auth=False)
    try:
        cfg = OTLPExporterConfig(tls=TLSConfig(ca_file=str(certs.ca)), compression="gzip")
        payload = _request(50)
        assert _export(f"localhost:{b.port}", cfg, payload, 50).accepted == 50
        # By IP with the name the certificate carries.
        cfg = OTLPExporterConfig(tls=TLSConfig(ca_pem=certs.ca.read_text(), server_name_override="tier2.test",
                                               min_version="1.3"))  # fmt: skip
        assert _export(b.endpoint, cfg, payload, 50).accepted == 50
        assert b.requests == [payload, payload]
    finally:
        b.server.stop(None)


def test_an_mtls_backend_receives_the_spans_only_with_the_client_certificate(certs: Certs) -> None:
    b = _tls_backend(certs, require_client_auth=True)
    try:
        tls = TLSConfig(ca_file=str(certs.ca), cert_file=str(certs.client_cert), key_file=str(certs.client_key))
        payload = _request(20)
        assert _export(b.endpoint, OTLPExporterConfig(tls=tls), payload, 20).accepted == 20
        assert b.requests == [payload]
        err = _error(b.endpoint, OTLPExporterConfig(tls=TLSConfig(ca_file=str(certs.ca))), payload)
        assert (err.code, err.retryable) == ("UNAVAILABLE", True)
        assert b.requests == [payload]
    finally:
        b.server.stop(None)


def test_a_wrong_ca_fails_with_unavailable_and_sends_nothing(certs: Certs) -> None:
    b = _tls_backend(certs, require_client_auth=False)
    try:
        err = _error(b.endpoint, OTLPExporterConfig(tls=TLSConfig(ca_file=str(certs.other_ca))), _request(5))
        assert (err.code, err.retryable) == ("UNAVAILABLE", True)
        assert "certificate" in str(err).lower()
        # insecure_skip_verify: encrypted, not authenticated: the same CA mismatch is accepted.
        cfg = OTLPExporterConfig(tls=TLSConfig(ca_file=str(certs.other_ca), insecure_skip_verify=True))
        assert _export(b.endpoint, cfg, _request(5), 5).accepted == 5
        assert len(b.requests) == 1
    finally:
        b.server.stop(None)


def test_the_authority_names_the_server_to_verify(certs: Certs) -> None:
    """Connecting by IP with ``authority: tier2.test``: TLS checks the certificate against the authority."""
    b = _tls_backend(certs, require_client_auth=False)
    try:
        cfg = OTLPExporterConfig(tls=TLSConfig(ca_file=str(certs.ca)), authority="tier2.test:4317")
        assert _export(b.endpoint, cfg, _request(2), 2).accepted == 2
        cfg = OTLPExporterConfig(tls=TLSConfig(ca_file=str(certs.ca)), authority="elsewhere.test:4317")
        err = _error(b.endpoint, cfg, _request(2))
        assert (err.code, err.retryable) == ("UNAVAILABLE", True)
        assert len(b.requests) == 1
    finally:
        b.server.stop(None)


def test_reload_interval_reads_a_rotated_ca_file_for_new_connections(tmp_path: Path, certs: Certs) -> None:
    b = _tls_backend(certs, require_client_auth=False)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certs.other_ca.read_bytes())  # the wrong CA first: the handshake fails

    async def run() -> int:
        cfg = OTLPExporterConfig(tls=TLSConfig(ca_file=str(ca), reload_interval=3600.0), timeout=5.0)
        client = BackendClient(b.endpoint, cfg, Telemetry())
        failures = 0
        try:
            with pytest.raises(ExportError):
                await client.export("traces", _request(1), 1)
            ca.write_bytes(certs.ca.read_bytes())  # rotated: the next connection attempt reads it
            deadline = time.monotonic() + 60
            while True:
                try:
                    await client.export("traces", _request(1), 1)
                    return failures
                except ExportError as exc:
                    assert exc.code == "UNAVAILABLE" and time.monotonic() < deadline, exc
                    failures += 1
                    await asyncio.sleep(0.2)  # reconnect backoff runs meanwhile (250 ms .. 5 s)
        finally:
            await client.close()

    asyncio.run(run())
    assert len(b.requests) == 1
    b.server.stop(None)


def test_a_malformed_ca_fails_exports_with_unavailable_naming_it(tmp_path: Path, certs: Certs) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    b = _tls_backend(certs, require_client_auth=False)
    try:
        err = _error(b.endpoint, OTLPExporterConfig(tls=TLSConfig(ca_file=str(bad))), _request(1))
        assert (err.code, err.retryable) == ("UNAVAILABLE", True)
        assert "CA certificates" in str(err)
        assert b.requests == []
    finally:
        b.server.stop(None)


def test_a_wrong_ca_through_a_running_data_plane_is_retried_and_counted(tmp_path: Path, certs: Certs) -> None:
    b = _tls_backend(certs, require_client_auth=False)
    retry = {"initial_interval": "100ms", "max_elapsed_time": "1s"}
    otlp = {"tls": {"ca_file": str(certs.other_ca)}, "timeout": "2s", "retry_on_failure": retry}
    cfg = static_config([b.endpoint], otlp=otlp)
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        code, _ = grpc_export(dp.grpc_endpoint, "traces", _request(4), timeout=30)
        assert code == grpc.StatusCode.OK  # queued: the per-backend queue owns it now

        def failed() -> float:
            return dp.metric("ringleader_items_failed_total", endpoint=b.endpoint, signal="traces")

        wait_until(lambda: failed() >= 4, 60, what="the 4 spans to be counted as failed after the retries")
        assert failed() == 4
        attempts = dp.metric("otelcol_loadbalancer_backend_outcome", endpoint=b.endpoint, success="false")
        assert attempts >= 2  # every attempt failed (UNAVAILABLE: the handshake) and was retried
        assert dp.metric("otelcol_loadbalancer_backend_outcome", endpoint=b.endpoint, success="true") == 0
        assert b.requests == []
    finally:
        dp.stop()
        b.server.stop(None)


# ------------------------------------------------- the upstream collector as tier 2 -----


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["gzip", "zstd", "snappy", "none"])
def test_the_upstream_collector_receives_every_span_with_each_codec(tmp_path: Path, codec: str) -> None:
    from e2e.otelcol import Collector, ensure_binaries

    bin_dir = ensure_binaries()
    sink = SinkProcess(tmp_path, "sink").start()
    collectors = []
    try:
        for i in range(2):
            port = free_port()
            config = {
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
                "exporters": {"otlp_grpc": {"endpoint": sink.endpoint, "tls": {"insecure": True}}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_grpc"]}}},
            }
            collectors.append((Collector(config, tmp_path / f"c{i}", name=f"tier2-{i}", bin_dir=bin_dir).start(),
                               f"127.0.0.1:{port}"))  # fmt: skip
        otlp: dict[str, Any] = {"compression": codec}
        if codec in ("gzip", "zstd"):
            otlp["compression_params"] = {"level": 1}
        dp = DataPlaneProcess(tmp_path, static_config([ep for _, ep in collectors], otlp=otlp)).start()
        try:
            sent = 0
            for r in range(5):
                spans = [(bytes([r, i % 256, *range(14)]), (r * 1000 + i).to_bytes(8, "big")) for i in range(200)]
                code, details = grpc_export(dp.grpc_endpoint, "traces", trace_request(spans, f"codec-{codec}"))
                assert code == grpc.StatusCode.OK, details
                sent += len(spans)

            def received() -> int:
                return sum(1 for _, _, svc, _ in spans_of(sink.records()) if svc == f"codec-{codec}")

            wait_until(lambda: received() >= sent, 60, what=f"{sent} {codec} spans through the collectors")
            assert received() == sent
            accepted = sum(_metric(c.scrape(), "otelcol_receiver_accepted_spans") for c, _ in collectors)
            refused = sum(_metric(c.scrape(), "otelcol_receiver_refused_spans") for c, _ in collectors)
            assert (accepted, refused) == (sent, 0)
            # Both collectors got a share: the ring split the traces.
            assert all(_metric(c.scrape(), "otelcol_receiver_accepted_spans") > 0 for c, _ in collectors)
        finally:
            dp.stop()
    finally:
        for c, _ in collectors:
            c.stop()
        sink.stop()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in "{ " or line[len(name) :].startswith("_total")):
            total += float(line.rsplit(" ", 1)[1])
    return total
