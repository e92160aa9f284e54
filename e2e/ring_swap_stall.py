"""How long does a ring swap stall the data path? (upstream #8843: a ring change blocks it)

Runs a LoadBalancer in-process, swaps the backend set from N to N+1 backends and
measures the event loop's worst lateness with a 1 ms ticker while the swap runs:
once as the data plane does it (the native builder on a thread, without the
interpreter lock), once building the ring with the Python reference inline on the
event loop, for comparison in the same run.

Usage: ``python -m e2e.ring_swap_stall [--backends 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import time

from dataplane.balancer import LoadBalancer
from dataplane.config_model import LoadBalancingConfig, OTLPExporterConfig, StaticResolverConfig, TLSConfig
from dataplane.ring import build_ring_reference
from dataplane.telemetry import Telemetry


async def _worst_lateness(stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - start - 0.001)
    return worst


async def measure(n: int, inline: bool) -> tuple[float, float]:
    # Endpoints in TEST-NET-1 (never contacted: no data is sent in this measurement).
    endpoints = [f"192.0.2.{i % 250}:{4317 + i // 250}" for i in range(n + 1)]
    cfg = LoadBalancingConfig(
        resolver=StaticResolverConfig(hostnames=tuple(endpoints[:n])),
        protocol=OTLPExporterConfig(tls=TLSConfig(insecure=True)),
    )
    lb = LoadBalancer(cfg, ("traces",), Telemetry())
    lb.update_endpoints(endpoints[:n])
    await lb.wait_for_updates()
    stop = asyncio.Event()
    ticker = asyncio.create_task(_worst_lateness(stop))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    if inline:
        build_ring_reference("ringleader", endpoints)  # what a blocking Python build costs the loop
    else:
        lb.update_endpoints(endpoints)
        await lb.wait_for_updates()
    took = time.perf_counter() - started
    await asyncio.sleep(0.05)
    stop.set()
    worst = await ticker
    await lb.shutdown(0.1)
    return took, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", type=int, default=300)
    n = parser.parse_args().backends
    for label, inline in (
        ("native, on a thread (Ringleader)", False),
        ("Python reference, inline on the event loop", True),
    ):
        took, worst = asyncio.run(measure(n, inline))
        print(f"| {label} | {n} -> {n + 1} | {took * 1000:.0f} | {worst * 1000:.1f} |")


if __name__ == "__main__":
    main()
