"""The delivery contract (docs/operations.md) against real backends on loopback.

- The exporter-level ``timeout`` and retry act per part: a slow backend's part
  is timed out and retried alone; what the fast backends accepted is never sent
  again.
- When the client gives up (HTTP disconnect, gRPC deadline), the work on its
  request stops: the slow backend never gets the part, and the refusal is
  counted with its reason.
- Where at-least-once is unavoidable, every case is counted in
  ``ringleader_items_at_least_once_total{reason}``: a backend response that was
  lost (the backend had the data, the data plane sent it again), and a client
  told to retry (or gone) after some parts of its request were delivered.
"""

from __future__ import annotations

import collections
import urllib.error
import urllib.request
from pathlib import Path

import grpc

from e2e.bench import build_request
from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, spans_of, static_config, wait_until

AT_LEAST_ONCE = "ringleader_items_at_least_once_total"


def _span_counts(sinks: list[SinkProcess]) -> collections.Counter[bytes]:
    return collections.Counter(sid for s in sinks for _, sid, _, _ in spans_of(s.records()))


def _timing_lines(path: Path) -> int:
    return len(path.read_text().split()) // 2 if path.exists() else 0


def test_exporter_level_timeout_retries_only_the_slow_part(tmp_path: Path) -> None:
    # The slow backend answers its first two requests after 3 s; the exporter-level timeout is 1 s.
    slow = SinkProcess(tmp_path, "slow", "--delay", "3", "--slow-first", "2").start()
    fast = [SinkProcess(tmp_path, f"fast{i}").start() for i in range(2)]
    sinks = [slow, *fast]
    cfg = static_config(
        [s.endpoint for s in sinks],
        otlp={"timeout": "20s", "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}},
        timeout="1s",
        retry_on_failure={"enabled": True, "initial_interval": "100ms", "max_interval": "200ms"},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        code, details = grpc_export(dp.grpc_endpoint, "traces", build_request(seed=7, spans=300), timeout=60)
        assert code == grpc.StatusCode.OK, details
        counts = _span_counts(sinks)
        assert len(counts) == 300
        assert max(counts.values()) == 1, "a part a backend accepted was sent again"
        slow_items = len(spans_of(slow.records()))
        assert 0 < slow_items < 300
        # Both timed-out attempts may have reached the slow backend: each re-send is counted.
        assert dp.metric(AT_LEAST_ONCE, reason="unknown_outcome") == 2 * slow_items
        assert dp.metric("ringleader_items_exported_total") == 300
        assert dp.metric("ringleader_items_refused_total") == 0
    finally:
        dp.stop()
        for s in sinks:
            s.stop()


def test_a_permanently_slow_backend_fails_only_its_part_and_the_delivered_rest_is_counted(tmp_path: Path) -> None:
    slow = SinkProcess(tmp_path, "slow", "--delay", "30").start()
    fast = SinkProcess(tmp_path, "fast").start()
    cfg = static_config(
        [slow.endpoint, fast.endpoint],
        otlp={"timeout": "60s", "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}},
        timeout="1s",
        retry_on_failure={"enabled": True, "initial_interval": "100ms", "max_elapsed_time": "1s"},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        code, _ = grpc_export(dp.grpc_endpoint, "traces", build_request(seed=8, spans=200), timeout=60)
        assert code == grpc.StatusCode.UNAVAILABLE
        delivered = spans_of(fast.records())
        assert 0 < len(delivered) < 200
        assert max(collections.Counter(sid for _, sid, _, _ in delivered).values()) == 1
        # The client was told to retry the whole request: what the fast backend has will come again.
        assert dp.metric(AT_LEAST_ONCE, reason="partial_delivery") == len(delivered)
        assert dp.metric("ringleader_items_refused_total", reason="export_failed") == 200
    finally:
        dp.stop()
        slow.stop()
        fast.stop()


def test_a_lost_backend_response_is_resent_and_counted(tmp_path: Path) -> None:
    # The backend stores the first request, then answers after 3 s: the 1 s export timeout loses the answer.
    sink = SinkProcess(tmp_path, "sink", "--respond-delay", "3", "--slow-first", "1").start()
    cfg = static_config(
        [sink.endpoint],
        otlp={"timeout": "1s", "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms"}},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        assert grpc_export(dp.grpc_endpoint, "traces", build_request(seed=9, spans=50))[0] == grpc.StatusCode.OK
        wait_until(lambda: dp.metric("ringleader_items_exported_total") == 50, 30, what="the retry to succeed")
        counts = _span_counts([sink])
        assert len(counts) == 50
        assert set(counts.values()) == {2}, "the backend had the first attempt, and got the retry too"
        assert dp.metric(AT_LEAST_ONCE, reason="unknown_outcome") == 50
    finally:
        dp.stop()
        sink.stop()


def test_an_http_client_that_disconnects_stops_the_export(tmp_path: Path) -> None:
    timing = tmp_path / "slow.timing"
    slow = SinkProcess(tmp_path, "slow", "--delay", "3", "--timing", str(timing)).start()
    cfg = static_config(
        [slow.endpoint],
        otlp={"timeout": "30s", "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        req = urllib.request.Request(
            f"{dp.http_endpoint}/v1/traces",
            data=build_request(seed=10, spans=40),
            headers={"Content-Type": "application/x-protobuf"},
            method="POST",
        )
        try:
            urllib.request.urlopen(req, timeout=1).close()
            raise AssertionError("the request should have timed out on the client side")
        except (TimeoutError, urllib.error.URLError):
            pass  # the client gives up and closes its connection
        # The backend's handler ends (cancelled or finished); only then is its record final.
        wait_until(lambda: _timing_lines(timing) == 1, 30, what="the backend's handler to end")
        assert slow.records() == [], "the export went on after the client had gone"
        wait_until(
            lambda: dp.metric("ringleader_items_refused_total", reason="client_cancelled") == 40,
            10,
            what="the abandoned request to be counted",
        )
    finally:
        dp.stop()
        slow.stop()


def test_a_grpc_deadline_stops_the_export_and_is_counted(tmp_path: Path) -> None:
    timing = tmp_path / "slow.timing"
    slow = SinkProcess(tmp_path, "slow", "--delay", "5", "--timing", str(timing)).start()
    fast = SinkProcess(tmp_path, "fast").start()
    cfg = static_config(
        [slow.endpoint, fast.endpoint],
        otlp={"timeout": "30s", "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": True}},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        code, _ = grpc_export(dp.grpc_endpoint, "traces", build_request(seed=11, spans=200), timeout=1.5)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: _timing_lines(timing) == 1, 30, what="the backend's handler to end")
        assert slow.records() == [], "the export went on after the client's deadline"
        wait_until(
            lambda: dp.metric("ringleader_items_refused_total", reason="deadline_exceeded") == 200,
            10,
            what="the abandoned request to be counted",
        )
        delivered = len(spans_of(fast.records()))
        assert 0 < delivered < 200
        assert dp.metric(AT_LEAST_ONCE, reason="partial_delivery") == delivered
    finally:
        dp.stop()
        slow.stop()
        fast.stop()
