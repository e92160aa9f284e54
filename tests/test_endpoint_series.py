"""Per-endpoint metric series of a backend that left the set are removed.

A backend set that churns (autoscaled tier-2 pods get new IPs) must not grow
``/metrics`` forever: once a departed backend is retired, no series labelled with
its endpoint is left, while the remaining backend's series stay.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from dataplane.balancer import LoadBalancer
from dataplane.config_model import (
    GRPCReceiverConfig,
    LoadBalancingConfig,
    OTLPExporterConfig,
    RetryConfig,
    StaticResolverConfig,
    TLSConfig,
)
from dataplane.receiver import GRPCReceiver, Intake
from dataplane.telemetry import Telemetry
from tests.harness import SinkProcess, grpc_export, trace_request


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def test_series_of_a_departed_backend_are_removed_and_the_remaining_ones_kept(tmp_path: Path) -> None:
    stays = SinkProcess(tmp_path, "stays").start()
    leaves = SinkProcess(tmp_path, "leaves", "--fail-first", "1").start()
    try:
        asyncio.run(_scenario(stays.endpoint, leaves.endpoint))
    finally:
        stays.stop()
        leaves.stop()


async def _scenario(stays: str, leaves: str) -> None:
    telemetry = Telemetry(forget_delay=1.0)
    protocol = OTLPExporterConfig(
        tls=TLSConfig(insecure=True),
        timeout=5.0,
        retry_on_failure=RetryConfig(initial_interval=0.1, max_interval=0.2),
    )
    lb = LoadBalancer(
        LoadBalancingConfig(resolver=StaticResolverConfig((stays, leaves)), protocol=protocol), ["traces"], telemetry
    )
    lb.start()
    lb.update_endpoints([stays, leaves])
    await lb.wait_for_updates()
    receiver = GRPCReceiver(Intake(lb, telemetry, ("traces",)), GRPCReceiverConfig(endpoint="127.0.0.1:0"))
    await receiver.start()
    data = trace_request([(os.urandom(16), os.urandom(8)) for _ in range(64)])
    _, split = lb.split("traces", data)
    assert len(split.parts) == 2
    code, details = await asyncio.to_thread(grpc_export, f"127.0.0.1:{receiver.port}", "traces", data)
    assert code.name == "OK", details

    def exported(endpoint: str) -> float:
        telemetry.refresh()  # the native pipeline's counters are copied in before each read
        return (
            telemetry.registry.get_sample_value(
                "ringleader_items_exported_total", {"endpoint": endpoint, "signal": "traces"}
            )
            or 0.0
        )

    await _until(lambda: exported(stays) > 0 and exported(leaves) > 0, 30, "both backends exported")
    before = telemetry.render().decode()
    assert before.count(f'endpoint="{leaves}"') >= 5, before  # latency, outcome ok/failed, exported, queue, share

    lb.update_endpoints([stays])
    await lb.wait_for_updates()
    # Kept for a scrape after it retired, then gone.
    await _until(lambda: lb.route is not None and leaves not in lb.route.ring.endpoints, 30, "the ring without it")
    assert f'endpoint="{leaves}"' in telemetry.render().decode()
    await _until(lambda: f'endpoint="{leaves}"' not in telemetry.render().decode(), 30, "the departed series gone")
    await receiver.stop(1.0)
    after = telemetry.render().decode()
    for name in (
        "ringleader_items_exported_total",
        "otelcol_loadbalancer_backend_outcome",
        "otelcol_loadbalancer_backend_latency_count",
        "ringleader_ring_share",
        "ringleader_queue_size",
    ):
        assert any(line.startswith(name) and f'endpoint="{stays}"' in line for line in after.splitlines()), name
    assert exported(stays) > 0
    await lb.shutdown(5)
