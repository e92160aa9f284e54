"""The configuration of passive ejection, coalescing and the memory budget (Ringleader keys)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dataplane.config import ConfigError, parse_config
from dataplane.config_model import CoalesceConfig, EjectionConfig

BASE: dict[str, Any] = {
    "receivers": {"otlp": {"protocols": {"grpc": None}}},
    "exporters": {"loadbalancing": {"resolver": {"static": {"hostnames": ["tier2-a:4317", "tier2-b:4317"]}}}},
}


def with_lb(**blocks: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["exporters"]["loadbalancing"].update(blocks)
    return data


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_defaults_eject_after_ten_seconds_without_progress_and_coalesce_for_twenty_milliseconds() -> None:
    cfg = parse_config(copy.deepcopy(BASE))
    assert cfg.exporter.ejection == EjectionConfig(
        enabled=True,
        consecutive_failures=5,
        window=10.0,
        cooldown=30.0,
        probe_interval=5.0,
        probe_timeout=2.0,
        max_ejected_percent=50,
    )
    assert cfg.exporter.coalesce == CoalesceConfig(max_size=1 << 20, max_delay=0.02)
    assert cfg.memory.limit is None  # decided at start-up: 80% of the container's limit, else 1 GiB


def test_every_key_is_read() -> None:
    cfg = parse_config(
        with_lb(
            ejection={
                "enabled": False,
                "consecutive_failures": 3,
                "window": "2s",
                "cooldown": "1m",
                "probe_interval": "500ms",
                "probe_timeout": "250ms",
                "max_ejected_percent": 25,
            },
            coalesce={"max_size": "256KiB", "max_delay": "0s"},
        )
        | {"memory": {"limit": "512MiB"}}
    )
    assert cfg.exporter.ejection == EjectionConfig(False, 3, 2.0, 60.0, 0.5, 0.25, 25)
    assert cfg.exporter.coalesce == CoalesceConfig(max_size=256 << 10, max_delay=0.0)
    assert cfg.memory.limit == 512 << 20


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_lb(ejection={"max_ejected_percent": 150}),
            "config error at exporters.loadbalancing.ejection.max_ejected_percent:",
        ),
        (with_lb(ejection={"window": "0s"}), "config error at exporters.loadbalancing.ejection.window:"),
        (with_lb(ejection={"threshold": 3}), "config error at exporters.loadbalancing.ejection.threshold:"),
        (with_lb(ejection={"enabled": "yes"}), "config error at exporters.loadbalancing.ejection.enabled:"),
        (with_lb(coalesce={"max_delay": 5}), "config error at exporters.loadbalancing.coalesce.max_delay:"),
        (BASE | {"memory": {"limit": "32MiB"}}, "config error at memory.limit: must be at least 64MiB"),
        (BASE | {"memory": {"budget": "1GiB"}}, "config error at memory.budget:"),
    ],
)
def test_bad_values_name_their_key(data: dict[str, Any], message: str) -> None:
    assert error_of(data).startswith(message)


def test_with_a_memory_limiter_too_the_smaller_limit_applies() -> None:
    data = copy.deepcopy(BASE) | {
        "memory": {"limit": "1GiB"},
        "processors": {"memory_limiter": {"check_interval": "1s", "limit_mib": 400}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["loadbalancing"]}
            }
        },
    }
    assert parse_config(data).memory.limit == 400 << 20
    data["memory"] = {"limit": "256MiB"}
    assert parse_config(data).memory.limit == 256 << 20
