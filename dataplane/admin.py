"""The operations endpoint (``telemetry.endpoint``, default :8888).

- ``GET /metrics``: Prometheus metrics (see :mod:`dataplane.telemetry`).
- ``GET /healthz``: 200 while the process runs (liveness).
- ``GET /readyz``: 200 when the receivers listen and at least one backend is in
  the ring; 503 otherwise, with a JSON body that says why (readiness).
- ``GET /debug/ring``: the current ring as JSON: algorithm, endpoints, each
  endpoint's share of the hash space, queue sizes and the resolver's state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .balancer import LoadBalancer
from .hostport import listen_address
from .resolvers.base import Resolver
from .telemetry import Telemetry


class AdminServer:
    def __init__(
        self,
        endpoint: str,
        telemetry: Telemetry,
        balancer: LoadBalancer,
        resolver: Resolver,
        listening: Callable[[], bool],
    ) -> None:
        self._endpoint = endpoint
        self._telemetry = telemetry
        self._balancer = balancer
        self._resolver = resolver
        self._listening = listening
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/debug/ring", self._ring)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        host, port = listen_address(self._endpoint)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self._telemetry.render(), content_type="text/plain", charset="utf-8")

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        route = self._balancer.route
        listening = self._listening()
        backends = len(route.ring.endpoints) if route else 0
        ready = listening and backends > 0
        body: dict[str, Any] = {
            "ready": ready,
            "listening": listening,
            "backends": backends,
            "resolver": self._resolver.kind,
        }
        if self._resolver.last_error:
            body["resolver_error"] = self._resolver.last_error
        if not ready:
            body["reason"] = "not listening yet" if not listening else "no backends in the ring"
        return ready, body

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, body = self.readiness()
        return web.json_response(body, status=200 if ready else 503)

    async def _ring(self, _: web.Request) -> web.Response:
        route = self._balancer.route
        body: dict[str, Any] = {"version": route.version if route else 0}
        if route is not None:
            body.update(route.ring.describe())
        body["queues"] = self._balancer.queue_sizes()
        body["orphaned_batches"] = self._balancer.orphans
        body["resolver"] = {
            "kind": self._resolver.kind,
            "endpoints": list(self._resolver.endpoints),
            "error": self._resolver.last_error,
        }
        return web.Response(text=json.dumps(body, indent=2, default=str), content_type="application/json")
