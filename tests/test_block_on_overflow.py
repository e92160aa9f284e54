"""``block_on_overflow``: a client waits for room in a full queue, up to its deadline.

At either level (``protocol.otlp.sending_queue`` per backend, or the exporter-level
``sending_queue``), with a one-request queue in front of a backend that takes 5 s
per request:

- a request that finds the queue full waits and is accepted once room frees
  (without the setting it would get UNAVAILABLE at once);
- a request whose client deadline passes while it waits is refused
  (``deadline_exceeded``) and none of it is ever delivered;
- every accepted span arrives exactly once.
"""

from __future__ import annotations

import collections
import concurrent.futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from e2e.bench import build_request
from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, spans_of, static_config, wait_until

ONE_SLOT = {"enabled": True, "queue_size": 1, "num_consumers": 1, "block_on_overflow": True}


@pytest.mark.parametrize("level", ["backend", "exporter"])
def test_a_full_queue_makes_the_client_wait_until_room_or_its_deadline(tmp_path: Path, level: str) -> None:
    sink = SinkProcess(tmp_path, "slow", "--delay", "5").start()
    otlp: dict[str, Any] = {"timeout": "30s", "retry_on_failure": {"enabled": False}}
    exporter: dict[str, Any] = {}
    if level == "backend":
        otlp["sending_queue"] = ONE_SLOT
    else:
        otlp["sending_queue"] = {"enabled": False}
        exporter["sending_queue"] = ONE_SLOT
    # No coalescing: b must occupy the one slot on its own, not join a's export.
    exporter["coalesce"] = {"max_size": 0}
    dp = DataPlaneProcess(tmp_path, static_config([sink.endpoint], otlp=otlp, **exporter)).start()
    requests = {name: build_request(seed=seed, spans=10) for seed, name in enumerate("abcd")}
    try:
        # a: taken by the consumer (5 s at the backend); b: fills the one slot.
        for name in "ab":
            code, details = grpc_export(dp.grpc_endpoint, "traces", requests[name], timeout=30)
            assert code == grpc.StatusCode.OK, (name, details)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # c waits for room (a must finish first) and is then accepted, whether it arrives before d or not.
            waiting = pool.submit(grpc_export, dp.grpc_endpoint, "traces", requests["c"], 60)
            # d's client gives up after 1 s, long before any room frees.
            code, _ = grpc_export(dp.grpc_endpoint, "traces", requests["d"], timeout=1)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert waiting.result(60) == (grpc.StatusCode.OK, "")
        wait_until(lambda: dp.metric("ringleader_items_exported_total") == 30, 60, what="a, b and c delivered")
        received = collections.Counter(sid for _, sid, _, _ in spans_of(sink.records()))
        expected = {sid for name in "abc" for _, sid, _, _ in spans_of([("traces", requests[name])])}
        assert set(received) == expected and max(received.values()) == 1
        assert dp.metric("ringleader_items_refused_total", reason="deadline_exceeded") == 10
        assert dp.metric("ringleader_items_refused_total", reason="queue_full") == 0
    finally:
        dp.stop()
        sink.stop()
