"""Real processes on loopback for integration tests: backends (sinks) and data planes.

- :class:`SinkProcess`: an OTLP/gRPC backend (``e2e.sink``) in its own process,
  which can be killed (SIGKILL) and restarted on the same port; its record file
  survives restarts.
- :class:`DataPlaneProcess`: ``python -m dataplane`` with a config written from a
  dict, started and waited for on ``/readyz``.
- :func:`spans_by_backend` and friends decode what the sinks received.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from e2e.sink import read_records

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class SinkProcess:
    """A tier-2 stand-in: a real gRPC server process recording every accepted request."""

    def __init__(self, workdir: Path, name: str, *extra: str) -> None:
        self.name = name
        self.record = workdir / f"{name}.rec"
        self.port_file = workdir / f"{name}.port"
        self.log = workdir / f"{name}.log"
        self.extra = list(extra)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *extra: str) -> SinkProcess:
        if self.port_file.exists():
            self.port_file.unlink()
        args = [
            PYTHON,
            "-m",
            "e2e.sink",
            "--port",
            str(self.port),
            "--record",
            str(self.record),
            "--port-file",
            str(self.port_file),
            *(list(extra) or self.extra),
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.port_file.exists, 20, what=f"sink {self.name} to listen")
        self.port = int(self.port_file.read_text())
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, like a crashed pod."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def records(self) -> list[tuple[str, bytes]]:
        return list(read_records(self.record))


@contextmanager
def running_sinks(workdir: Path, count: int) -> Iterator[list[SinkProcess]]:
    """``count`` started sinks (``backend-0`` ...), stopped on exit."""
    started = [SinkProcess(workdir, f"backend-{i}").start() for i in range(count)]
    try:
        yield started
    finally:
        for sink in started:
            sink.stop()


class DataPlaneProcess:
    """``ringleader-dataplane`` as a subprocess with a generated config."""

    def __init__(self, workdir: Path, config: dict[str, Any], name: str = "dataplane") -> None:
        self.workdir = workdir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.admin_port = free_port()
        cfg = json.loads(json.dumps(config))  # deep copy
        protocols = cfg.setdefault("receivers", {}).setdefault("otlp", {}).setdefault("protocols", {})
        protocols.setdefault("grpc", {})
        protocols.setdefault("http", {})
        if protocols["grpc"] is not None:
            protocols["grpc"]["endpoint"] = f"127.0.0.1:{self.grpc_port}"
        if protocols["http"] is not None:
            protocols["http"]["endpoint"] = f"127.0.0.1:{self.http_port}"
        cfg.setdefault("telemetry", {})["endpoint"] = f"127.0.0.1:{self.admin_port}"
        cfg["telemetry"].setdefault("log_level", "debug")
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> DataPlaneProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "dataplane", "--config", str(self.config_path)],
                cwd=ROOT,
                env=_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            wait_until(lambda: self.get("/readyz")[0] == 200 or self._died(), 30, what="data plane ready")
            if self.proc.poll() is not None:
                raise AssertionError(f"data plane exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching ``labels`` (0 when absent)."""
        status, body = self.get("/metrics")
        assert status == 200, status
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name):
                continue
            metric, _, value = line.rpartition(" ")
            head, _, rest = metric.partition("{")
            if head != name:
                continue
            pairs = dict(p.split("=", 1) for p in rest.rstrip("}").split(",") if "=" in p)
            if all(pairs.get(k, "").strip('"') == v for k, v in labels.items()):
                total += float(value)
        return total

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def static_config(endpoints: list[str], **exporter: Any) -> dict[str, Any]:
    """A data-plane config routing to ``endpoints`` over plaintext gRPC."""
    protocol = exporter.pop("otlp", {})
    protocol.setdefault("tls", {"insecure": True})
    protocol.setdefault("timeout", "2s")
    lb: dict[str, Any] = {"resolver": {"static": {"hostnames": endpoints}}, "protocol": {"otlp": protocol}}
    lb.update(exporter)
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}},
        "exporters": {"loadbalancing": lb},
        "shutdown": {"drain_timeout": "10s"},
    }


# ------------------------------------------------------------------- decoding -----


def decode_requests(records: list[tuple[str, bytes]], signal_name: str) -> list[Any]:
    types: dict[str, Any] = {
        "traces": ExportTraceServiceRequest,
        "logs": ExportLogsServiceRequest,
        "metrics": ExportMetricsServiceRequest,
    }
    return [types[signal_name].FromString(payload) for sig, payload in records if sig == signal_name]


def resource_service(resource: Any) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return ""


def spans_of(records: list[tuple[str, bytes]]) -> list[tuple[bytes, bytes, str, str]]:
    """(trace_id, span_id, service, span name) of every span received."""
    out = []
    for req in decode_requests(records, "traces"):
        for rs in req.resource_spans:
            svc = resource_service(rs.resource)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out.append((span.trace_id, span.span_id, svc, span.name))
    return out


# ------------------------------------------------------- logs, metrics, raw requests -----
#
# Appended for the logs/metrics, bad-input and shutdown tests: decoders that turn what
# the sinks received back into the identities e2e.loadgen produced, and raw OTLP
# requests (bytes over a plain gRPC channel or urllib) for input the SDK never sends.

from e2e.loadgen import ProducedLog, ProducedPoint  # noqa: E402 - appended section


def _any_text(value: Any) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))


def _attr(attributes: Any, key: str) -> str:
    for kv in attributes:
        if kv.key == key:
            return _any_text(kv.value)
    return ""


def logs_of(records: list[tuple[str, bytes]]) -> list[ProducedLog]:
    """Every log record received, as the identity e2e.loadgen.send_logs produced it."""
    out = []
    for req in decode_requests(records, "logs"):
        for rl in req.resource_logs:
            svc = resource_service(rl.resource)
            inst = _attr(rl.resource.attributes, "service.instance.id")
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    tenant = _attr(rec.attributes, "tenant")
                    out.append(ProducedLog(rec.body.string_value, rec.trace_id, svc, inst, sl.scope.name, tenant))
    return out


def points_of(records: list[tuple[str, bytes]]) -> list[ProducedPoint]:
    """Every metric data point received, as the identity e2e.loadgen.send_metrics produced it."""
    out = []
    for req in decode_requests(records, "metrics"):
        for rm in req.resource_metrics:
            svc = resource_service(rm.resource)
            inst = _attr(rm.resource.attributes, "service.instance.id")
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    for point in getattr(metric, kind).data_points:
                        attrs = tuple(sorted((kv.key, _any_text(kv.value)) for kv in point.attributes))
                        out.append(
                            ProducedPoint(
                                svc, inst, sm.scope.name, metric.name, metric.unit, attrs, point.time_unix_nano
                            )
                        )
    return out


def wait_for_log(path: Path, needle: str, timeout: float = 30.0) -> str:
    """Wait until a process log contains ``needle``; return the first line containing it."""

    def find() -> str | None:
        text = path.read_text(errors="replace") if path.exists() else ""
        return next((line for line in text.splitlines() if needle in line), None)

    return str(wait_until(find, timeout, what=f"{needle!r} in {path.name}"))


GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


def grpc_export(target: str, signal_name: str, payload: bytes, timeout: float = 15.0) -> tuple[Any, str]:
    """Send raw request bytes to an OTLP/gRPC Export method: (grpc.StatusCode, details)."""
    import grpc

    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(GRPC_METHODS[signal_name])
        try:
            call(payload, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code(), str(exc.details())
        return grpc.StatusCode.OK, ""


def http_post(
    url: str,
    body: bytes,
    content_type: str = "application/x-protobuf",
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], bytes]:
    """POST raw bytes; (status, response headers, response body) whatever the status."""
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def trace_request(spans: list[tuple[bytes, bytes]], service: str = "raw-client") -> bytes:
    """A serialized ExportTraceServiceRequest: one resource, one scope, a span per (trace_id, span_id)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = service
    ss = rs.scope_spans.add()
    ss.scope.name = "ringleader.tests"
    for trace_id, span_id in spans:
        span = ss.spans.add()
        span.trace_id = trace_id
        span.span_id = span_id
        span.name = f"span-{span_id.hex()}"
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = 1_700_000_000_001_000_000
    return req.SerializeToString()
