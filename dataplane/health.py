"""The collector's ``health_check`` endpoint, for configs (and probes) written for a collector.

When a collector config enables the ``health_check`` extension, Ringleader serves
its endpoint and path as the collector does, so the Kubernetes probes written for
the collector keep working unchanged::

    GET http://<endpoint><path>   ->  200 {"status": "Server available", ...}
                                  ->  503 {"status": "Server not available", ...}

It answers 200 from the moment the receivers listen until shutdown begins, and
503 before and after, like the collector's extension (which follows the
collector's own status, not its exporters'). A path of ``/`` answers on every
path, as Go's ``http.ServeMux`` does; so ``/health`` works with the default.

For readiness that also requires a backend in the ring, probe ``/readyz`` on the
telemetry endpoint instead (see :mod:`dataplane.admin`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from .config_model import HealthCheckConfig
from .hostport import listen_address


class HealthServer:
    def __init__(self, cfg: HealthCheckConfig, serving: Callable[[], bool]) -> None:
        self._cfg = cfg
        self._serving = serving
        self._started = time.monotonic()
        self._since = datetime.now(UTC).isoformat()
        self.app = web.Application()
        if cfg.path == "/":
            self.app.router.add_get("/{tail:.*}", self._health)
        else:
            self.app.router.add_get(cfg.path, self._health)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        host, port = listen_address(self._cfg.endpoint)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _: web.Request) -> web.Response:
        serving = self._serving()
        body = {
            "status": "Server available" if serving else "Server not available",
            "upSince": self._since,
            "uptime": f"{time.monotonic() - self._started:.3f}s",
        }
        return web.json_response(body, status=200 if serving else 503)
