"""The intake never lets an unexpected error pass silently."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from dataplane.balancer import LoadBalancer
from dataplane.config_model import LoadBalancingConfig, StaticResolverConfig
from dataplane.receiver import Intake, _Refusal
from dataplane.ring import Ring
from dataplane.routing import Lookup, Split
from dataplane.telemetry import Telemetry
from e2e.bench import build_request


class _BrokenSplitter:
    """Stands in for a splitter with a bug: the one thing that cannot be produced for real."""

    signal = "traces"
    key = "traceID"

    def split(self, data: bytes, lookup: Lookup) -> Split:
        raise KeyError("a bug")

    def split_ring(self, data: bytes, ring: Ring | None) -> Split:
        raise KeyError("a bug")


def test_an_internal_error_is_counted_logged_and_answered_internal(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        telemetry = Telemetry()
        cfg = LoadBalancingConfig(resolver=StaticResolverConfig(hostnames=("127.0.0.1:1",)))
        balancer = LoadBalancer(cfg, ("traces",), telemetry)
        balancer.splitters["traces"] = _BrokenSplitter()
        intake = Intake(balancer, telemetry, ("traces",))
        with pytest.raises(_Refusal) as refusal:
            await intake.accept("traces", build_request(random.randrange(100), spans=20), "grpc")
        assert refusal.value.code == grpc.StatusCode.INTERNAL
        assert refusal.value.http == 500
        sample = telemetry.registry.get_sample_value
        assert sample("ringleader_items_refused_total", {"signal": "traces", "reason": "internal_error"}) == 20
        assert sample("ringleader_requests_refused_total", {"signal": "traces", "reason": "internal_error"}) == 1

    asyncio.run(scenario())
    assert "internal error while handling a traces request" in caplog.text
