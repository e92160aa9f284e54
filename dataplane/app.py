"""Running the data plane: wiring, start-up order and graceful shutdown.

Start-up: telemetry endpoint first (so /healthz answers during start), then the
resolver's first resolution, then the receivers. ``/readyz`` turns 200 once the
receivers listen and the ring has a backend.

Shutdown on SIGTERM or SIGINT honours ``shutdown.drain_timeout`` in total: new
requests are refused at once (``shutting_down``; requests waiting for room are
released), the receivers stop listening and give their in-flight requests what
is left of the deadline (then cancel them) while the queues keep draining, the
load balancer flushes every queue within what is left, anything still queued
then is counted as dropped with reason ``shutdown`` and logged, and the process
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from .admin import AdminServer
from .balancer import LoadBalancer
from .collector_metrics import CollectorSelfMetrics
from .config_model import Config
from .health import HealthServer
from .memory import MemoryBudget, default_limit
from .receiver import GRPCReceiver, HTTPReceiver, Intake
from .resolvers import build_resolver
from .runtime import configure as configure_runtime
from .telemetry import LOG_INTERVAL, Telemetry

log = logging.getLogger("ringleader")


class DataPlane:
    """One running data plane; ``await run()`` until stopped."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.worker_threads = configure_runtime(cfg.data_path)
        self.telemetry = Telemetry()
        self.telemetry.registry.register(
            CollectorSelfMetrics(
                self.telemetry.registry, cfg, self.telemetry.refused_by_transport, self.telemetry.retired_items
            )
        )
        self.budget = MemoryBudget.for_process(cfg.memory.limit or default_limit())
        self.telemetry.memory_data_limit.set(self.budget.data_limit)
        self.telemetry.memory_buffered.set_function(lambda: self.budget.used)
        self.balancer = LoadBalancer(cfg.exporter, cfg.signals, self.telemetry, self.budget)
        self.resolver = build_resolver(cfg.exporter.resolver, self.telemetry)
        self.intake = Intake(self.balancer, self.telemetry, cfg.signals)
        self.grpc: GRPCReceiver | None = None
        self.http: HTTPReceiver | None = None
        self.admin: AdminServer | None = None
        self.health: HealthServer | None = None
        self._listening = False
        self._stop = asyncio.Event()

    async def start(self) -> None:
        if self.cfg.telemetry.endpoint:
            self.admin = AdminServer(
                self.cfg.telemetry.endpoint, self.telemetry, self.balancer, self.resolver, lambda: self._listening
            )
            await self.admin.start()
        if self.cfg.health_check is not None:
            self.health = HealthServer(self.cfg.health_check, lambda: self._listening)
            await self.health.start()
        self.balancer.start()
        await self.resolver.start(self.balancer.update_endpoints)
        await self.balancer.wait_for_updates()
        if self.cfg.receivers.grpc is not None:
            self.grpc = GRPCReceiver(self.intake, self.cfg.receivers.grpc)
            await self.grpc.start()
        if self.cfg.receivers.http is not None:
            self.http = HTTPReceiver(self.intake, self.cfg.receivers.http, self.cfg.shutdown.drain_timeout)
            await self.http.start()
        self._listening = True
        route = self.balancer.route
        log.info(
            "ringleader data plane ready: grpc=%s http=%s telemetry=%s signals=%s backends=%d worker_threads=%d",
            self.grpc.port if self.grpc else "-",
            self.http.port if self.http else "-",
            self.admin.port if self.admin else "-",
            ",".join(self.cfg.signals),
            len(route.ring.endpoints) if route else 0,
            self.worker_threads,
        )

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        flusher = asyncio.create_task(self._flush_logs_periodically())
        await self._stop.wait()
        flusher.cancel()
        await self.shutdown()
        self.telemetry.flush_logs()

    async def _flush_logs_periodically(self) -> None:
        while True:
            await asyncio.sleep(LOG_INTERVAL)
            self.telemetry.flush_logs()

    async def shutdown(self) -> None:
        drain = self.cfg.shutdown.drain_timeout
        deadline = time.monotonic() + drain
        log.info("shutting down: refusing new data, draining queues (deadline %.1fs)", drain)
        self._listening = False
        self.balancer.stop_accepting()
        receivers = []
        if self.grpc is not None:
            receivers.append(self.grpc.stop(grace=drain))
        if self.http is not None:
            receivers.append(self.http.stop())  # its shutdown_timeout is the drain timeout
        try:
            # Both receivers stop at once, each giving in-flight requests at most the deadline.
            await asyncio.wait_for(asyncio.gather(*receivers), max(0.0, deadline - time.monotonic()) + 0.5)
        except TimeoutError:
            log.warning("the receivers did not stop within the drain deadline")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.resolver.stop(), max(0.1, deadline - time.monotonic()))
        await self.balancer.shutdown(max(0.0, deadline - time.monotonic()))
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await self.admin.stop()
        if self.health is not None:
            with contextlib.suppress(Exception):
                await self.health.stop()
        log.info("stopped")
