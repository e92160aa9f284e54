"""Passive ejection: a backend that keeps failing leaves the ring until it answers again.

Admission is all-or-nothing (:mod:`dataplane.admission`): with trace-ID routing
nearly every request has a part for every backend, so once one backend's queue
is full every request is refused. A dead or hung backend would stop all intake,
for good with a static resolver. :class:`Ejector` watches what the data path
already sees and takes such a backend out:

- it *ejects* a backend that has made no progress (no successful export) for
  ``window`` while either its last ``consecutive_failures`` exports failed
  (with a retryable error: unavailable, timed out, ...; a permanent error is an
  answer about the data, not about the backend), or
  its queue is full and refusing data. A slow backend that still delivers is
  never ejected (its full queue is ordinary back-pressure), nor is one that
  failed only briefly (a restarting pod), nor one that merely receives nothing;
- an ejected backend leaves the ring like a backend the resolver dropped: its
  queued batches are re-routed to the new owners and its in-flight exports are
  re-routed when they fail or time out (:mod:`dataplane.rerouting`);
- after ``cooldown`` it is *probed*: an empty trace export request (a valid
  OTLP request with no data, which a collector answers with OK; any answer
  counts, UNIMPLEMENTED included, only none does not) every
  ``probe_interval``, each bounded by ``probe_timeout``. The first probe that
  succeeds puts it back in the ring, and its traces go back to it;
- at most ``max_ejected_percent`` of the resolved backends are ejected at once,
  and never the last one: with nothing to fail over to, refusing is right.

Each ejection and return is logged (WARNING / INFO) and counted
(``ringleader_backend_ejections_total{endpoint,reason}``,
``ringleader_backend_returns_total{endpoint}``); ``ringleader_backend_ejected{endpoint}``
is 1 while a backend is out, and ``/debug/ring`` lists the ejected backends with
their reason and age.

Delivery: an export that timed out may have been processed by the hung backend
anyway; when it is re-routed, its items can arrive twice. That is the one
duplicate ejection can cause; it is counted in
``ringleader_items_at_least_once_total{reason="unknown_outcome"}`` (see
docs/operations.md). ``ejection.enabled: false`` turns all of this off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config_model import EjectionConfig, OTLPExporterConfig
from .exporter import METHODS, call, open_channel, status_name
from .telemetry import Telemetry

log = logging.getLogger("ringleader.ejection")

Probe = Callable[[str, float], Awaitable[bool]]
"""Asks ``endpoint`` whether it answers, within a timeout; True when it does."""


_NO_ANSWER = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"})


def grpc_probe(cfg: OTLPExporterConfig) -> Probe:
    """A probe that sends an empty trace export request on a fresh channel (TLS etc. as configured)."""

    async def probe(endpoint: str, timeout: float) -> bool:
        channel = open_channel(endpoint, cfg)
        try:
            code, _, _, _ = await call(channel, METHODS["traces"], b"", timeout)
        finally:
            channel.close()
        # Any answer proves the backend serves again (UNIMPLEMENTED: a collector without a traces
        # pipeline); only no answer at all keeps it out.
        name = status_name(code)
        log.debug("probe of %s: %s", endpoint, name)
        return name not in _NO_ANSWER

    return probe


@dataclass(slots=True)
class _Health:
    last_progress: float
    failures: int = 0


@dataclass(slots=True)
class _Ejected:
    since: float
    reason: str
    prober: asyncio.Task[None] | None = field(default=None)


class Ejector:
    """Tracks each backend's health from the data path; ejects and readmits backends.

    The data path reports through :meth:`export_succeeded`, :meth:`export_failed`
    and :meth:`queue_full`; the backend set asks :meth:`eligible` which resolved
    endpoints belong in the ring, and is told to re-apply through ``on_change``.
    """

    def __init__(self, cfg: EjectionConfig, telemetry: Telemetry, probe: Probe, on_change: Callable[[], None]) -> None:
        self._cfg = cfg
        self._telemetry = telemetry
        self._probe = probe
        self._on_change = on_change
        self._health: dict[str, _Health] = {}
        self._ejected: dict[str, _Ejected] = {}
        self._resolved: tuple[str, ...] = ()
        self._closed = False

    # -- what the backend set asks ------------------------------------------------------
    def eligible(self, resolved: Sequence[str]) -> tuple[str, ...]:
        """The resolved endpoints that belong in the ring (the ejected ones left out).

        Endpoints that left the resolved set are forgotten, ejected or not.
        """
        self._resolved = tuple(resolved)
        current = set(resolved)
        for endpoint in [ep for ep in self._ejected if ep not in current]:
            self._readmit(endpoint, returned=False)
        for endpoint in [ep for ep in self._health if ep not in current]:
            del self._health[endpoint]
        now = time.monotonic()
        for endpoint in resolved:
            if endpoint not in self._health:
                self._health[endpoint] = _Health(now)
        return tuple(ep for ep in resolved if ep not in self._ejected)

    @property
    def ejected(self) -> dict[str, dict[str, Any]]:
        """For /debug/ring: each ejected endpoint's reason and seconds out."""
        now = time.monotonic()
        return {ep: {"reason": e.reason, "seconds": round(now - e.since, 1)} for ep, e in self._ejected.items()}

    # -- what the data path reports -------------------------------------------------------
    def export_succeeded(self, endpoint: str) -> None:
        health = self._health.get(endpoint)
        if health is not None:
            health.last_progress = time.monotonic()
            health.failures = 0

    def export_failed(self, endpoint: str) -> None:
        health = self._health.get(endpoint)
        if health is None:
            return
        health.failures += 1
        if health.failures >= self._cfg.consecutive_failures:
            self._consider(endpoint, health, "export_failures")

    def queue_full(self, endpoint: str) -> None:
        """Admission refused a request because this backend's queue had no room."""
        health = self._health.get(endpoint)
        if health is not None:
            self._consider(endpoint, health, "queue_full")

    def unhealthy(self, endpoint: str, reason: str, stalled: float, failures: int) -> None:
        """The native pipeline found ``endpoint`` without progress for the window (it tracks
        the health of its backends itself): eject it if the limits allow."""
        if endpoint in self._health:
            self._decide(endpoint, reason, stalled, failures)

    # -- decisions --------------------------------------------------------------------------
    def _consider(self, endpoint: str, health: _Health, reason: str) -> None:
        stalled = time.monotonic() - health.last_progress
        if stalled < self._cfg.window:
            return
        self._decide(endpoint, reason, stalled, health.failures)

    def _decide(self, endpoint: str, reason: str, stalled: float, failures: int) -> None:
        if not self._cfg.enabled or self._closed or endpoint in self._ejected:
            return
        now = time.monotonic()
        resolved = len(self._resolved)
        allowed = max(1, math.floor(resolved * self._cfg.max_ejected_percent / 100))
        if len(self._ejected) >= allowed or resolved - len(self._ejected) <= 1:
            self._telemetry.record_ejection_skipped(endpoint)
            return
        log.warning(
            "ejecting backend %s for at least %.0fs: no successful export for %.1fs (%s, %d failed in a row); "
            "its data goes to the other backends",
            endpoint,
            self._cfg.cooldown,
            stalled,
            reason,
            failures,
        )
        ejected = _Ejected(now, reason)
        self._ejected[endpoint] = ejected
        self._telemetry.record_ejection(endpoint, reason)
        ejected.prober = asyncio.get_running_loop().create_task(self._probe_until_back(endpoint))
        self._on_change()

    async def _probe_until_back(self, endpoint: str) -> None:
        await asyncio.sleep(self._cfg.cooldown)
        while True:
            try:
                ok = await self._probe(endpoint, self._cfg.probe_timeout)
            except Exception as exc:  # a probe must never end the prober
                log.debug("probe of %s failed: %r", endpoint, exc)
                ok = False
            if ok:
                break
            log.debug("ejected backend %s still does not answer", endpoint)
            await asyncio.sleep(self._cfg.probe_interval)
        entry = self._ejected.get(endpoint)
        if entry is not None:
            entry.prober = None  # this task is ending by itself: _readmit must not cancel it
            out = time.monotonic() - entry.since
            log.info("backend %s answers again after %.1fs out: back in the ring", endpoint, out)
            self._readmit(endpoint, returned=True)
            self._on_change()

    def _readmit(self, endpoint: str, returned: bool) -> None:
        entry = self._ejected.pop(endpoint, None)
        if entry is None:
            return
        if entry.prober is not None:
            entry.prober.cancel()
        self._health[endpoint] = _Health(time.monotonic())
        self._telemetry.record_return(endpoint, returned)

    async def close(self) -> None:
        """Stop probing (shutdown)."""
        self._closed = True
        tasks = [e.prober for e in self._ejected.values() if e.prober is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
