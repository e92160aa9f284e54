"""Traces end to end: the OpenTelemetry SDK -> data plane -> three real backends."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import pytest

from e2e.loadgen import ProducedSpan, send_traces
from tests.harness import DataPlaneProcess, SinkProcess, spans_of, static_config, wait_until


@pytest.fixture
def sinks(tmp_path: Path):
    started = [SinkProcess(tmp_path, f"backend-{i}").start() for i in range(3)]
    yield started
    for s in started:
        s.stop()


def _received(sinks: list[SinkProcess]) -> dict[str, list[tuple[bytes, bytes, str, str]]]:
    return {s.name: spans_of(s.records()) for s in sinks}


def _assert_exactly_once_and_trace_affinity(sinks: list[SinkProcess], produced: list[ProducedSpan]) -> dict[str, int]:
    received = _received(sinks)
    span_counts = collections.Counter(span_id for spans in received.values() for _, span_id, _, _ in spans)
    duplicates = [sid.hex() for sid, n in span_counts.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} spans delivered more than once"
    expected = {p.span_id for p in produced}
    missing = expected - set(span_counts)
    assert not missing, f"{len(missing)} of {len(expected)} spans never arrived"
    assert set(span_counts) == expected
    owners: dict[bytes, set[str]] = collections.defaultdict(set)
    for name, spans in received.items():
        for trace_id, _, _, _ in spans:
            owners[trace_id].add(name)
    split = [t.hex() for t, o in owners.items() if len(o) > 1]
    assert not split, f"{len(split)} traces landed on more than one backend"
    return {name: len(spans) for name, spans in received.items()}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_traces_from_several_services_arrive_once_and_each_trace_on_one_backend(
    tmp_path: Path, sinks: list[SinkProcess], protocol: str
) -> None:
    dp = DataPlaneProcess(tmp_path, static_config([s.endpoint for s in sinks])).start()
    try:
        endpoint = dp.grpc_endpoint if protocol == "grpc" else dp.http_endpoint
        produced = send_traces(endpoint, protocol, traces=300, spans_per_trace=6, seed=7)
        assert len(produced) == 1800
        wait_until(
            lambda: sum(len(v) for v in _received(sinks).values()) >= len(produced),
            30,
            what="all spans at the backends",
        )
        per_backend = _assert_exactly_once_and_trace_affinity(sinks, produced)
        # Every backend got a fair part of 300 traces (the ring balances them).
        assert all(n > 0 for n in per_backend.values()), per_backend
        assert dp.metric("ringleader_items_received_total", signal="traces", transport=protocol) == len(produced)
        assert dp.metric("ringleader_items_exported_total", signal="traces") == len(produced)
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()


def test_backend_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    cfg = static_config(
        [s.endpoint for s in sinks],
        otlp={
            "timeout": "1s",
            "sending_queue": {"enabled": True, "queue_size": 5000, "num_consumers": 4},
            "retry_on_failure": {
                "enabled": True,
                "initial_interval": "100ms",
                "max_interval": "500ms",
                "max_elapsed_time": "120s",
            },
        },
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    victim = sinks[1]
    produced: list[ProducedSpan] = []
    try:
        sender = threading.Thread(
            target=lambda: produced.extend(
                send_traces(
                    dp.grpc_endpoint,
                    "grpc",
                    traces=600,
                    spans_per_trace=5,
                    seed=11,
                    max_export_batch_size=32,
                    pause=0.015,
                )
            )
        )
        sender.start()
        # Kill the backend once it has taken part of the stream, keep it down a while, restart it.
        wait_until(lambda: len(victim.records()) >= 3, 60, what="the victim to receive some data")
        victim.kill()
        assert sender.is_alive(), "the stream should still be flowing when the backend dies"
        wait_until(
            lambda: (
                dp.metric("otelcol_loadbalancer_backend_outcome", endpoint=victim.endpoint, success="false") >= 2
            ),
            30,
            what="exports to the dead backend to fail",
        )
        victim.start()
        sender.join(120)
        assert not sender.is_alive()
        assert len(produced) == 3000
        wait_until(
            lambda: sum(len(v) for v in _received(sinks).values()) >= len(produced),
            60,
            what="all spans at the backends after the restart",
        )
        _assert_exactly_once_and_trace_affinity(sinks, produced)
        assert dp.metric("ringleader_items_failed_total") == 0
        assert dp.metric("otelcol_loadbalancer_backend_outcome", endpoint=victim.endpoint, success="false") >= 2
    finally:
        dp.stop()
