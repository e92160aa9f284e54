"""The exporter-level retry and queue (``exporters.loadbalancing.retry_on_failure`` /
``sending_queue``) retry only what failed, so delivered parts are never duplicated
(upstream #47600 re-sends the whole batch)."""

from __future__ import annotations

import collections
from pathlib import Path

import grpc
import pytest

from e2e.bench import build_request
from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, spans_of, static_config, wait_until


@pytest.mark.parametrize("lb_queue", [False, True], ids=["client-waits", "exporter-level-queue"])
def test_exporter_level_retry_resends_only_the_failed_parts(tmp_path: Path, lb_queue: bool) -> None:
    flaky = SinkProcess(tmp_path, "flaky", "--fail-first", "3").start()
    healthy = [SinkProcess(tmp_path, f"ok{i}").start() for i in range(2)]
    sinks = [flaky, *healthy]
    cfg = static_config(
        [s.endpoint for s in sinks],
        # No backend-level queue or retry: the exporter-level policy is the only one at work.
        otlp={"sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}},
        retry_on_failure={
            "enabled": True,
            "initial_interval": "50ms",
            "max_interval": "200ms",
            "max_elapsed_time": "30s",
        },
        sending_queue={"enabled": lb_queue},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    requests = [build_request(seed=s, spans=200) for s in range(5)]
    try:
        for payload in requests:
            # Succeeds: the flaky part is retried behind the scenes.
            code, details = grpc_export(dp.grpc_endpoint, "traces", payload, timeout=60)
            assert code == grpc.StatusCode.OK, details
        total = 5 * 200
        wait_until(lambda: sum(len(spans_of(s.records())) for s in sinks) >= total, 30, what="all spans delivered")
        span_ids = collections.Counter(sid for s in sinks for _, sid, _, _ in spans_of(s.records()))
        assert len(span_ids) == total
        assert max(span_ids.values()) == 1, "a delivered part was sent again"
        assert dp.metric("otelcol_loadbalancer_backend_outcome", endpoint=flaky.endpoint, success="false") == 3
        assert dp.metric("ringleader_items_failed_total") == 0
        assert dp.metric("ringleader_items_refused_total") == 0
    finally:
        dp.stop()
        for s in sinks:
            s.stop()
