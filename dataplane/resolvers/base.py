"""The resolver interface: where the set of tier-2 backends comes from.

A resolver turns some source of truth (a static list, DNS, Kubernetes
EndpointSlices, AWS Cloud Map) into a set of endpoint strings and pushes every
*change* of that set to the data plane through one callback. Two shapes exist:

- watch-based resolvers (Kubernetes) subclass :class:`Resolver` directly, run
  their own task in :meth:`Resolver._run` and call :meth:`Resolver._publish`
  whenever the watched state changes;
- polling resolvers (DNS, Cloud Map) subclass :class:`PollingResolver` and only
  implement :meth:`PollingResolver.resolve_once`; the base class handles the
  interval, the timeout, keeping the last good set on failure and the metrics.

Endpoint strings are what the upstream exporter would put in its ring: the
resolver's raw form (``10.0.0.1:4317``, ``backend-1``), before any default port
is added, so the ``upstream`` ring algorithm places them exactly as upstream does.

The callback is synchronous and cheap: the data plane swaps in a new ring
without blocking the data path. ``_publish`` sorts and de-duplicates, and calls
the callback only when the set actually changed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from ..telemetry import Telemetry

BackendsCallback = Callable[[Sequence[str]], None]

log = logging.getLogger("ringleader.resolver")


class ResolverError(Exception):
    """A resolution failed; the message says why in one line."""


class Resolver(abc.ABC):
    """Base of every resolver. Subclasses set ``kind`` to upstream's metric label."""

    kind: ClassVar[str] = ""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._callback: BackendsCallback | None = None
        self._endpoints: tuple[str, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        """Why the last resolution or watch failed, or None when healthy (shown on /readyz)."""

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The last published set (empty before the first success)."""
        return self._endpoints or ()

    @property
    def has_resolved(self) -> bool:
        return self._endpoints is not None

    async def start(self, on_change: BackendsCallback) -> None:
        """Begin resolving. Returns after the first attempt (successful or not), then
        keeps following changes in a background task until :meth:`stop`."""
        self._callback = on_change
        await self._first_resolution()
        self._task = asyncio.create_task(self._run(), name=f"resolver-{self.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _first_resolution(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Hook for resolvers that can produce a set before the background task starts."""

    @abc.abstractmethod
    async def _run(self) -> None:
        """Follow the source until cancelled, calling :meth:`_publish` on changes."""

    def _publish(self, endpoints: Iterable[str]) -> bool:
        """Hand a freshly resolved set to the data plane. Returns True if it changed."""
        new = tuple(sorted(set(endpoints)))
        changed = new != self._endpoints
        self._telemetry.record_backends(self.kind, len(new), changed)
        if changed:
            log.info("%s resolver: %d backend(s): %s", self.kind, len(new), ", ".join(new) or "-")
            self._endpoints = new
            if self._callback is not None:
                self._callback(new)
        return changed

    def _record_success(self) -> None:
        self.last_error = None
        self._telemetry.record_resolution(self.kind, True)

    def _record_failure(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning(
                "%s resolver: resolution failed, keeping %d backend(s): %s", self.kind, len(self.endpoints), reason
            )
        self.last_error = reason
        self._telemetry.record_resolution(self.kind, False)


class PollingResolver(Resolver):
    """A resolver that asks its source every ``interval`` seconds.

    A failed, timed-out or empty answer keeps the last good set, is counted in
    ``otelcol_loadbalancer_num_resolutions{success="false"}`` and logged once per
    distinct reason.
    """

    def __init__(self, telemetry: Telemetry, interval: float, timeout: float) -> None:
        super().__init__(telemetry)
        self.interval = interval
        self.timeout = timeout

    @abc.abstractmethod
    async def resolve_once(self) -> list[str]:
        """Ask the source once. Raise :class:`ResolverError` (or any exception) on failure."""

    async def poll(self) -> bool:
        """One resolution cycle; returns True if the set changed."""
        try:
            endpoints = await asyncio.wait_for(self.resolve_once(), timeout=self.timeout or None)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._record_failure(f"timed out after {self.timeout:g}s")
            return False
        except Exception as exc:  # any failure keeps the last good set
            self._record_failure(str(exc) or type(exc).__name__)
            return False
        if not endpoints:
            self._record_failure("resolution returned no endpoints")
            return False
        self._record_success()
        return self._publish(endpoints)

    async def _first_resolution(self) -> None:
        await self.poll()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.poll()
