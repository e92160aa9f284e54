"""Bad input and refusals against a running data plane: each is answered, counted, and the process keeps serving.

One data plane (module scope) with small size limits (64 KiB over gRPC and HTTP)
and only the traces and logs pipelines serves most tests; each test ends by
sending a valid request over both transports and finding its spans at the
backends, so a crash or a wedged receiver fails the test that caused it. Counter
checks are deltas because the process is shared.

Refusals that need their own setup get their own data plane: every backend down
with no queue, a resolver that finds no backend, and a full queue (which must
refuse the whole request and enqueue none of its parts).

Raw requests are built by hand (``tests.harness.trace_request``) and sent as
bytes over a plain gRPC channel or with urllib, because the SDK never sends
most of this input.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from dataplane.ring import build_ring
from tests.dnsserver import DNSServer
from tests.harness import (
    DataPlaneProcess,
    SinkProcess,
    grpc_export,
    http_post,
    spans_of,
    static_config,
    trace_request,
    wait_for_log,
    wait_until,
)

LIMIT = 64 * 1024
PROTOBUF = "application/x-protobuf"


def _ids(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` fresh (trace_id, span_id) pairs."""
    return [(os.urandom(16), os.urandom(8)) for _ in range(n)]


def _received_span_ids(sinks: list[SinkProcess]) -> dict[bytes, str]:
    """span_id -> the backend that received it (fails on a duplicate)."""
    where: dict[bytes, str] = {}
    for sink in sinks:
        for _, span_id, _, _ in spans_of(sink.records()):
            assert span_id not in where, f"span {span_id.hex()} delivered twice"
            where[span_id] = sink.endpoint
    return where


def _wait_delivered(sinks: list[SinkProcess], spans: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    wanted = {sid for _, sid in spans}

    def arrived() -> dict[bytes, str] | None:
        where = _received_span_ids(sinks)
        return where if wanted <= where.keys() else None

    result: dict[bytes, str] = wait_until(arrived, 30, what=f"{len(wanted)} spans at the backends")
    return result


def _assert_none_delivered(sinks: list[SinkProcess], spans: list[tuple[bytes, bytes]]) -> None:
    leaked = {sid for _, sid in spans} & _received_span_ids(sinks).keys()
    assert not leaked, f"{len(leaked)} of {len(spans)} spans of refused requests reached a backend"


def _assert_serves(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    """The data plane still accepts and delivers valid requests over both transports."""
    assert dp.proc is not None and dp.proc.poll() is None, "the data plane exited"
    over_grpc, over_http = _ids(3), _ids(3)
    assert grpc_export(dp.grpc_endpoint, "traces", trace_request(over_grpc)) == (grpc.StatusCode.OK, "")
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(over_http))
    assert status == 200
    _wait_delivered(sinks, over_grpc + over_http)


class Counters:
    """Deltas of the refusal counters of a shared data plane."""

    def __init__(self, dp: DataPlaneProcess, signal: str = "traces") -> None:
        self.dp = dp
        self.signal = signal
        self.before = {name: self._read(name) for name in ("items", "requests")}

    def _read(self, kind: str) -> dict[str, float]:
        _, body = self.dp.get("/metrics")
        out: dict[str, float] = {}
        prefix = f"ringleader_{kind}_refused_total{{"
        for line in body.decode().splitlines():
            if line.startswith(prefix) and f'signal="{self.signal}"' in line:
                reason = line.split('reason="', 1)[1].split('"', 1)[0]
                out[reason] = out.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def delta(self, kind: str) -> dict[str, float]:
        """reason -> increase since construction (reasons that did not move are left out)."""
        now = self._read(kind)
        return {r: v - self.before[kind].get(r, 0.0) for r, v in now.items() if v != self.before[kind].get(r, 0.0)}


def _rpc_status(body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(body)


# ------------------------------------------------------------------------ fixtures -----


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def sinks(workdir: Path) -> Iterator[list[SinkProcess]]:
    started = [SinkProcess(workdir, f"backend-{i}").start() for i in range(3)]
    yield started
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def dp(workdir: Path, sinks: list[SinkProcess]) -> Iterator[DataPlaneProcess]:
    cfg = static_config([s.endpoint for s in sinks])
    protocols = cfg["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["max_recv_msg_size_mib"] = LIMIT / (1 << 20)  # fractional MiB are allowed
    protocols["http"]["max_request_body_size"] = LIMIT
    pipeline = {"receivers": ["otlp"], "exporters": ["loadbalancing"]}
    cfg["service"] = {"pipelines": {"traces": pipeline, "logs": pipeline}}  # metrics disabled
    process = DataPlaneProcess(workdir, cfg).start()
    yield process
    process.stop()


# ------------------------------------------------------------------ malformed input -----


def _malformed_protobufs() -> dict[str, bytes]:
    valid = trace_request(_ids(5))
    return {
        "garbage": b"\xff\xff\xff\xff\xff\xff",
        "truncated": valid[:-7],
        "field number 0": b"\x02\x00",
        "group overruns the request": b"\x0a\x7f\x0a\x00",
        "bad wire type": b"\x0f" + valid,
    }


def test_malformed_protobuf_is_invalid_argument_over_grpc_and_400_over_http(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    counters = Counters(dp)
    bodies = _malformed_protobufs()
    for name, body in bodies.items():
        code, _ = grpc_export(dp.grpc_endpoint, "traces", body)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, name
        status, headers, reply = http_post(f"{dp.http_endpoint}/v1/traces", body)
        assert status == 400, name
        # OTLP/HTTP error bodies are a google.rpc.Status in the request's encoding.
        assert headers["Content-Type"].startswith(PROTOBUF)
        assert _rpc_status(reply).code == grpc.StatusCode.INVALID_ARGUMENT.value[0], name
    assert counters.delta("requests") == {"malformed": 2 * len(bodies)}
    _assert_serves(dp, sinks)


def test_malformed_json_is_400_with_a_json_status(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    counters = Counters(dp)
    bodies = [
        b"{not json",
        b"[1, 2, 3]",
        b'{"resourceSpans": "not a list"}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not hex at all", "spanId": "00"}]}]}]}',
        b"\xff\xfe\x00",
    ]
    for body in bodies:
        status, headers, reply = http_post(f"{dp.http_endpoint}/v1/traces", body, "application/json")
        assert status == 400, body
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(reply)["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert counters.delta("requests") == {"malformed": len(bodies)}
    _assert_serves(dp, sinks)


def _json_spans(spans: list[tuple[bytes, bytes]], service: str) -> bytes:
    """OTLP/JSON as the specification writes it: hex IDs, camelCase, int64 as strings."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                    "scopeSpans": [
                        {
                            "scope": {"name": "json-client"},
                            "spans": [
                                {
                                    "traceId": tid.hex(),
                                    "spanId": sid.hex(),
                                    "name": "json span",
                                    "kind": 2,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000000001000000",
                                    "attributes": [{"key": "retries", "value": {"intValue": "3"}}],
                                }
                                for tid, sid in spans
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()


def test_valid_otlp_json_with_hex_ids_is_accepted_and_routed_by_its_trace_ids(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    traces = [os.urandom(16) for _ in range(30)]
    spans = [(tid, os.urandom(8)) for tid in traces for _ in range(2)]
    status, headers, reply = http_post(
        f"{dp.http_endpoint}/v1/traces", _json_spans(spans, "json-svc"), "application/json"
    )
    assert status == 200, reply
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(reply) == {}
    where = _wait_delivered(sinks, spans)
    # The hex IDs were decoded to the right 16 bytes: each span sits on the ring owner of its trace ID.
    ring = build_ring("ringleader", [s.endpoint for s in sinks])
    assert all(where[sid] == ring.owner_of(tid) for tid, sid in spans)
    received = {sid: tid for s in sinks for tid, sid, _, _ in spans_of(s.records())}
    assert all(received[sid] == tid for tid, sid in spans)
    _assert_serves(dp, sinks)


def test_json_ids_must_be_hex_not_base64(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    # protobuf's JSON mapping would read base64 bytes; OTLP/JSON says hex. A base64 ID is refused.
    counters = Counters(dp)
    tid, sid = os.urandom(16), os.urandom(8)
    body = _json_spans([(tid, sid)], "b64").replace(tid.hex().encode(), base64.b64encode(tid))
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", body, "application/json")
    assert status == 400
    assert counters.delta("requests") == {"malformed": 1}
    _assert_serves(dp, sinks)


# ------------------------------------------------------------------- size and encoding -----


def test_requests_over_the_size_limit_are_resource_exhausted_or_413(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    counters = Counters(dp)
    big_spans = _ids(1000)
    big = trace_request(big_spans)
    assert LIMIT < len(big) < 2 * LIMIT  # just over the limit
    code, details = grpc_export(dp.grpc_endpoint, "traces", big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    status, _, reply = http_post(f"{dp.http_endpoint}/v1/traces", big)
    assert status == 413
    assert _rpc_status(reply).code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    # A small gzip body that inflates past the limit (a zip bomb) is refused the same way.
    bomb = gzip.compress(trace_request(_ids(20)) + b"\x00" * (4 * LIMIT))
    assert len(bomb) < LIMIT
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413
    assert counters.delta("requests") == {"too_large": 3}
    # Far beyond the limit too: refused from the message's header, before its body is read, and counted
    # (grpcio refused these itself, uncounted).
    code, _ = grpc_export(dp.grpc_endpoint, "traces", b"\x0a" + b"\x00" * (3 << 20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert counters.delta("requests") == {"too_large": 4}
    _assert_serves(dp, sinks)
    _assert_none_delivered(sinks, big_spans)


def test_gzip_and_deflate_bodies_are_accepted_and_unknown_encodings_are_415(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    url = f"{dp.http_endpoint}/v1/traces"
    sent: list[tuple[bytes, bytes]] = []
    for encoding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        for content_type in (PROTOBUF, "application/json"):
            spans = _ids(4)
            raw = trace_request(spans) if content_type == PROTOBUF else _json_spans(spans, "gz")
            status, _, reply = http_post(url, compress(raw), content_type, {"Content-Encoding": encoding})
            assert status == 200, (encoding, content_type, reply)
            sent += spans
    _wait_delivered(sinks, sent)
    counters = Counters(dp)
    status, _, _ = http_post(url, trace_request(_ids(2)), headers={"Content-Encoding": "br"})
    assert status == 415
    # A body that claims gzip but is not is malformed, not a crash.
    status, _, _ = http_post(url, trace_request(_ids(2)), headers={"Content-Encoding": "gzip"})
    assert status == 400
    assert counters.delta("requests") == {"unsupported_encoding": 1, "malformed": 1}
    _assert_serves(dp, sinks)


def test_unsupported_content_type_is_415(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    counters = Counters(dp)
    body = trace_request(_ids(2))
    for content_type in ("text/plain", "application/xml", "application/grpc", "application/octet-stream"):
        status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", body, content_type)
        assert status == 415, content_type
    assert counters.delta("requests") == {"unsupported_media_type": 4}
    _assert_serves(dp, sinks)


# ---------------------------------------------------------------------- trace IDs -----


def test_spans_without_a_trace_id_are_routed_as_the_zero_trace_id_and_counted(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    before = dp.metric("ringleader_items_missing_key_total", signal="traces", key="traceID")
    no_id = [(b"", os.urandom(8)) for _ in range(6)]
    with_id = _ids(6)
    assert grpc_export(dp.grpc_endpoint, "traces", trace_request(no_id[:3] + with_id)) == (grpc.StatusCode.OK, "")
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(no_id[3:]))
    assert status == 200
    where = _wait_delivered(sinks, no_id + with_id)
    # The documented rule (as upstream): a missing trace ID routes like the all-zero one, so all
    # such spans, from any request, land together on that key's owner.
    zero_owner = build_ring("ringleader", [s.endpoint for s in sinks]).owner_of(bytes(16))
    assert {where[sid] for _, sid in no_id} == {zero_owner}
    assert dp.metric("ringleader_items_missing_key_total", signal="traces", key="traceID") - before == len(no_id)
    _assert_serves(dp, sinks)


def test_wrong_length_trace_ids_refuse_the_whole_request(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    counters = Counters(dp)
    good = _ids(10)
    refused: list[tuple[bytes, bytes]] = []
    for bad_len in (1, 8, 15, 17, 32):
        spans = [*good[:5], (os.urandom(bad_len), os.urandom(8)), *good[5:]]
        refused += spans
        code, details = grpc_export(dp.grpc_endpoint, "traces", trace_request(spans))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (bad_len, details)
        status, _, reply = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(spans))
        assert status == 400, bad_len
        assert _rpc_status(reply).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # OTLP/JSON: a hex trace ID of 4 bytes.
    json_spans = [(os.urandom(4), os.urandom(8))]
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", _json_spans(json_spans, "j"), "application/json")
    assert status == 400
    refused += json_spans
    assert counters.delta("requests") == {"invalid_trace_id": 11}
    _assert_serves(dp, sinks)
    # Nothing of the refused requests, not even their valid spans, went anywhere.
    _assert_none_delivered(sinks, refused)


def _log_request(trace_ids: list[bytes]) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    scope_logs = req.resource_logs.add().scope_logs.add()
    for i, tid in enumerate(trace_ids):
        record = scope_logs.log_records.add()
        record.trace_id = tid
        record.body.string_value = f"record {i}"
    return req.SerializeToString()


def test_log_records_routed_by_trace_id_refuse_wrong_length_ids_and_count_missing_ones(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "logs").start()
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint], routing_key="traceID")).start()
    try:
        bad = _log_request([os.urandom(16), os.urandom(12)])
        assert grpc_export(dp.grpc_endpoint, "logs", bad)[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert http_post(f"{dp.http_endpoint}/v1/logs", bad)[0] == 400
        assert dp.metric("ringleader_requests_refused_total", signal="logs", reason="invalid_trace_id") == 2
        # Records without a trace ID are accepted (routed at random, as upstream) and counted.
        assert grpc_export(dp.grpc_endpoint, "logs", _log_request([b"", os.urandom(16), b""]))[0] == grpc.StatusCode.OK
        assert dp.metric("ringleader_items_missing_key_total", signal="logs", key="traceID") == 2
        wait_until(lambda: sink.records(), 20, what="the accepted records at the backend")
        _assert_serves(dp, [sink])
        # Only the accepted request's three records were exported.
        wait_until(lambda: dp.metric("ringleader_items_exported_total", signal="logs") == 3, 10, what="3 exported")
        # One logs request reached the backend (_assert_serves' traces may share one export: coalescing).
        assert [sig for sig, _ in sink.records()].count("logs") == 1
    finally:
        dp.stop()
        sink.stop()


def test_a_disabled_signal_is_unimplemented_over_grpc_and_404_over_http(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    counters = Counters(dp, "metrics")
    req = ExportMetricsServiceRequest()
    metric = req.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "requests"
    metric.gauge.data_points.add().as_int = 1
    body = req.SerializeToString()
    code, _ = grpc_export(dp.grpc_endpoint, "metrics", body)
    assert code == grpc.StatusCode.UNIMPLEMENTED
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/metrics", body)
    assert status == 404
    assert counters.delta("requests") == {"signal_disabled": 2}
    # Logs have a pipeline: accepted.
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "hello"
    assert grpc_export(dp.grpc_endpoint, "logs", logs.SerializeToString())[0] == grpc.StatusCode.OK
    _assert_serves(dp, sinks)


# ------------------------------------------------------------- backends unavailable -----


def test_every_backend_down_without_a_queue_is_unavailable_until_one_returns(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "only").start()
    sink.kill()  # its port is now closed; the same port comes back on restart
    cfg = static_config(
        [sink.endpoint],
        otlp={
            "timeout": "1s",
            "sending_queue": {"enabled": False},
            "retry_on_failure": {"enabled": False},
        },
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        code, _ = grpc_export(dp.grpc_endpoint, "traces", trace_request(_ids(3)))
        assert code == grpc.StatusCode.UNAVAILABLE
        status, headers, reply = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(_ids(4)))
        assert status == 503
        assert "Retry-After" in headers
        assert _rpc_status(reply).code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert dp.metric("ringleader_requests_refused_total", signal="traces", reason="export_failed") == 2
        assert dp.metric("ringleader_items_refused_total", signal="traces", reason="export_failed") == 7
        assert dp.metric("ringleader_items_failed_total") == 0  # refused, not lost: the client keeps it
        sink.start()
        # The data plane's channel reconnects with gRPC's backoff: poll until an export goes through.
        wait_until(
            lambda: grpc_export(dp.grpc_endpoint, "traces", trace_request(_ids(1)))[0] == grpc.StatusCode.OK,
            30,
            what="exports to succeed after the backend returned",
        )
        _assert_serves(dp, [sink])
    finally:
        dp.stop()
        sink.stop()


def test_a_resolver_with_no_backend_is_unavailable_until_one_appears(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "late").start()
    with DNSServer(tmp_path) as dns:
        cfg = static_config([])
        cfg["exporters"]["loadbalancing"]["resolver"] = {
            "dns": {"hostname": "backends.tier2.test", "port": sink.port, "interval": "200ms", "server": dns.server}
        }
        dp = DataPlaneProcess(tmp_path, cfg).start(wait_ready=False)
        try:
            wait_for_log(dp.log, "ringleader data plane ready")
            assert dp.get("/readyz")[0] == 503
            code, _ = grpc_export(dp.grpc_endpoint, "traces", trace_request(_ids(3)))
            assert code == grpc.StatusCode.UNAVAILABLE
            status, headers, _ = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(_ids(2)))
            assert status == 503
            assert "Retry-After" in headers
            assert dp.metric("ringleader_requests_refused_total", signal="traces", reason="no_backends") == 2
            assert dp.metric("ringleader_items_refused_total", signal="traces", reason="no_backends") == 5
            dns.set_hosts("backends.tier2.test", ["127.0.0.1"])
            wait_until(lambda: dp.get("/readyz")[0] == 200, 30, what="the backend to be resolved")
            _assert_serves(dp, [sink])
        finally:
            dp.stop()
            sink.stop()


# ---------------------------------------------------------------------- queue full -----


def _spans_for_every_backend(ring: Any, per_backend: int) -> list[tuple[bytes, bytes]]:
    """Spans whose traces cover every backend of ``ring`` ``per_backend`` times (one span per trace)."""
    want = {ep: per_backend for ep in ring.endpoints}
    spans: list[tuple[bytes, bytes]] = []
    while any(want.values()):
        tid = os.urandom(16)
        owner = ring.owner_of(tid)
        if want[owner]:
            want[owner] -= 1
            spans.append((tid, os.urandom(8)))
    return spans


def test_a_full_queue_refuses_the_whole_request_and_enqueues_none_of_its_parts(tmp_path: Path) -> None:
    slow = SinkProcess(tmp_path, "slow", "--delay", "1.5").start()
    fast = [SinkProcess(tmp_path, f"fast-{i}").start() for i in range(2)]
    sinks = [slow, *fast]
    cfg = static_config(
        [s.endpoint for s in sinks],
        otlp={"timeout": "10s", "sending_queue": {"queue_size": 1, "num_consumers": 1}},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    ring = build_ring("ringleader", [s.endpoint for s in sinks])
    accepted: list[tuple[bytes, bytes]] = []
    refused: list[tuple[bytes, bytes]] = []
    refused_requests = {"grpc": 0, "http": 0}
    try:
        # Every request has parts for all three backends. The slow backend takes one batch at a
        # time and queues one more, so its queue is full most of the time; keep sending, alternating
        # transports, until both have been refused.
        turn = 0
        while min(refused_requests.values()) < 2 or len(accepted) < 2 * 9:
            assert turn < 2000, "the slow backend's queue never filled up"
            spans = _spans_for_every_backend(ring, 3)
            transport = ("grpc", "http")[turn % 2]
            turn += 1
            if transport == "grpc":
                code, _ = grpc_export(dp.grpc_endpoint, "traces", trace_request(spans))
                ok = code == grpc.StatusCode.OK
                assert ok or code == grpc.StatusCode.UNAVAILABLE, code
            else:
                status, headers, _ = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(spans))
                ok = status == 200
                assert ok or (status == 503 and "Retry-After" in headers), status
            if ok:
                accepted += spans
            else:
                refused += spans
                refused_requests[transport] += 1
        _wait_delivered(sinks, accepted)
        wait_until(
            lambda: dp.metric("ringleader_items_exported_total", signal="traces") >= len(accepted),
            10,
            what="the exported counter",
        )
        # Every accepted span was delivered, and none of a refused request, to any backend, fast or slow.
        _assert_none_delivered(sinks, refused)
        assert dp.metric("ringleader_items_exported_total", signal="traces") == len(accepted)
        assert dp.metric("ringleader_items_refused_total", signal="traces", reason="queue_full") == len(refused)
        assert dp.metric("ringleader_requests_refused_total", signal="traces", reason="queue_full") == sum(
            refused_requests.values()
        )
        _assert_serves(dp, sinks)
    finally:
        dp.stop()
        for s in sinks:
            s.stop()


@pytest.mark.parametrize("routing_key", ["service", "resource"])
def test_wrong_length_trace_ids_are_refused_whatever_the_routing_key(tmp_path: Path, routing_key: str) -> None:
    # A tier-2 collector refuses the whole batch over one bad trace ID, so accepting it here would
    # lose the batch after acknowledging it. The rule holds for every key, not only traceID.
    sink = SinkProcess(tmp_path, "b").start()
    cfg = static_config([sink.endpoint], routing_key=routing_key)
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        spans = [*_ids(3), (os.urandom(7), os.urandom(8))]
        if routing_key == "service":  # `resource` is not a traces key: traces are disabled then
            code, details = grpc_export(dp.grpc_endpoint, "traces", trace_request(spans))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, details
            assert "7 bytes" in (details or "")
            assert dp.metric("ringleader_items_refused_total", signal="traces", reason="invalid_trace_id") == 4
        logs = _log_request([os.urandom(16), b"", os.urandom(20)])
        assert http_post(f"{dp.http_endpoint}/v1/logs", logs)[0] == 400
        # The refused items are counted, not only the requests.
        assert dp.metric("ringleader_items_refused_total", signal="logs", reason="invalid_trace_id") == 3
        assert grpc_export(dp.grpc_endpoint, "logs", _log_request([os.urandom(16), b""]))[0] == grpc.StatusCode.OK
        wait_until(lambda: dp.metric("ringleader_items_exported_total", signal="logs") == 2, 10, what="2 exported")
        _assert_none_delivered([sink], spans)
    finally:
        dp.stop()
        sink.stop()
