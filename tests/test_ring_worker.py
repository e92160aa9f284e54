"""Rings are built on a thread with the native builder: the data plane is one process."""

from __future__ import annotations

from pathlib import Path

from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, static_config, trace_request


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.extend(int(c) for c in (task / "children").read_text().split())
    return children


def test_the_data_plane_starts_no_helper_process_and_swaps_rings(tmp_path: Path) -> None:
    sinks = [SinkProcess(tmp_path, f"s{i}").start() for i in range(2)]
    dp = DataPlaneProcess(tmp_path, static_config([s.endpoint for s in sinks])).start()
    try:
        assert dp.proc is not None
        code, _ = grpc_export(
            dp.grpc_endpoint, "traces", trace_request([(bytes([i]) * 16, bytes([i]) * 8) for i in range(1, 9)])
        )
        assert code.name == "OK"
        assert dp.metric("ringleader_ring_version") >= 1
        assert _children(dp.proc.pid) == []  # no ring worker, no multiprocessing resource tracker
    finally:
        dp.stop()
        for s in sinks:
            s.stop()
