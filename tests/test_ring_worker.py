"""The ring-builder worker process lives and dies with its data plane."""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness import DataPlaneProcess, static_config, wait_until


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(c) for c in text)
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_killed_data_plane_takes_its_ring_worker_with_it(tmp_path: Path) -> None:
    dp = DataPlaneProcess(tmp_path, static_config(["127.0.0.1:1", "127.0.0.1:2"])).start()
    assert dp.proc is not None
    workers = wait_until(lambda: _children(dp.proc.pid), 10, what="the ring-builder worker")  # type: ignore[union-attr]
    assert all(_alive(w) for w in workers)
    dp.stop()  # SIGKILL: no chance to shut the pool down
    wait_until(lambda: not any(_alive(w) for w in workers), 10, what="the worker to exit with its parent")
    assert os.getpid() not in workers
