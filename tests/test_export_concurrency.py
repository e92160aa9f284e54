"""Exports of one request to several backends run concurrently, not one after another."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from e2e.bench import build_request
from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, static_config, wait_until


@pytest.mark.parametrize("queue", [True, False], ids=["with-queue", "direct"])
def test_parts_of_one_request_are_exported_to_all_backends_at_the_same_time(tmp_path: Path, queue: bool) -> None:
    # Each backend takes 1 s per request. Exported one after another, no two handling intervals could
    # overlap; exported concurrently, every backend is still busy when the others start.
    sinks = [
        SinkProcess(tmp_path, f"b{i}", "--delay", "1.0", "--timing", str(tmp_path / f"b{i}.timing")).start()
        for i in range(3)
    ]
    otlp = {"timeout": "10s", "sending_queue": {"enabled": queue}, "retry_on_failure": {"enabled": False}}
    dp = DataPlaneProcess(tmp_path, static_config([s.endpoint for s in sinks], otlp=otlp)).start()
    try:
        # 30 traces: parts for all three backends.
        code, details = grpc_export(dp.grpc_endpoint, "traces", build_request(seed=3, spans=300), timeout=30)
        assert code == grpc.StatusCode.OK, details
        if queue:
            wait_until(
                lambda: all((tmp_path / f"b{i}.timing").exists() for i in range(3)),
                30,
                what="every backend to finish its part",
            )
        intervals = []
        for i in range(3):
            lines = (tmp_path / f"b{i}.timing").read_text().split("\n")
            starts_ends = [tuple(map(int, line.split())) for line in lines if line]
            assert len(starts_ends) == 1, f"backend {i} got {len(starts_ends)} requests, expected exactly one part"
            intervals.append(starts_ends[0])
        latest_start = max(start for start, _ in intervals)
        earliest_end = min(end for _, end in intervals)
        assert latest_start < earliest_end, "some backend only started after another had finished"
        assert dp.metric("ringleader_items_exported_total") == 300
    finally:
        dp.stop()
        for s in sinks:
            s.stop()
