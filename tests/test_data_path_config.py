"""The ``data_path`` block: the native worker threads, validated and applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.config import ConfigError, parse_config
from dataplane.runtime import available_cpus

BASE = {
    "receivers": {"otlp": {"protocols": {"grpc": {}}}},
    "exporters": {"loadbalancing": {"resolver": {"static": {"hostnames": ["127.0.0.1:4317"]}}}},
}


def test_worker_threads_default_to_the_available_cpus() -> None:
    assert parse_config(dict(BASE)).data_path.worker_threads is None


def test_worker_threads_are_read() -> None:
    cfg = parse_config({**BASE, "data_path": {"worker_threads": 3}})
    assert cfg.data_path.worker_threads == 3


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"worker_threads": 0}, "data_path.worker_threads"),
        ({"worker_threads": "two"}, "data_path.worker_threads"),
        ({"threads": 2}, "data_path.threads"),
    ],
)
def test_a_bad_data_path_block_names_the_key(block: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "data_path": block})
    assert path in str(info.value)


def test_the_cgroup_cpu_quota_rounds_up_and_never_exceeds_the_affinity(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert available_cpus(cpu_max) == min(2, available_cpus(tmp_path / "absent"))
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == available_cpus(tmp_path / "absent") >= 1
    cpu_max.write_text("10000 100000\n")
    assert available_cpus(cpu_max) == 1
