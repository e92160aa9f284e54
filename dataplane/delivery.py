"""Delivery to one backend: export a part, retry it, account for its outcome.

The last step of the flow. Each part (the items of one request that one backend
owns) is exported with that backend's retry policy
(``protocol.otlp.retry_on_failure``, delays from :mod:`dataplane.backoff`):

- :meth:`BackendDelivery.consume` is the handler of a backend's queue
  consumers. The client was answered already, so every outcome is final here:
  delivered (``ringleader_items_exported_total``), or lost with a reason
  (``ringleader_items_failed_total{reason}``, logged). If the backend leaves
  the ring meanwhile, the part is re-routed instead (:mod:`dataplane.rerouting`).
- :meth:`BackendDelivery.export_direct` is used without backend queues: the
  client waits, and a failure is returned as a :class:`PartFailure` for the
  caller to report (or retry at the exporter level).

Items a backend rejects in a partial-success response are counted as failed
with reason ``rejected_by_backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .backends import Backend
from .backoff import backoff_for
from .config_model import RetryConfig
from .exporter import ExportError
from .queue import Batch
from .telemetry import Telemetry

log = logging.getLogger("ringleader.delivery")


@dataclass(slots=True)
class PartFailure:
    """A part that could not be delivered (or admitted), and whether trying again may help."""

    batch: Batch
    retryable: bool
    code: str
    message: str


class BackendDelivery:
    """Exports parts to backends with the backend-level retry policy."""

    def __init__(
        self,
        retry: RetryConfig,
        telemetry: Telemetry,
        reroute: Callable[[list[Batch]], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._retry = retry
        self._telemetry = telemetry
        self._reroute = reroute
        self._stopping = stopping

    async def consume(self, backend: Backend, batch: Batch) -> None:
        """Queue consumer: export one batch with retries; re-route it if the backend leaves."""
        delays = backoff_for(self._retry)
        try:
            while True:
                if backend.retiring.is_set():
                    self._reroute([batch])
                    return
                try:
                    result = await backend.client.export(batch.signal, batch.payload, batch.items)
                except ExportError as exc:
                    if backend.retiring.is_set():
                        self._reroute([batch])
                        return
                    if not exc.retryable:
                        self._telemetry.record_failed(backend.endpoint, batch.signal, exc.code, batch.items, str(exc))
                        return
                    delay = next(delays, None)
                    if delay is None:
                        self._telemetry.record_failed(
                            backend.endpoint, batch.signal, "retries_exhausted", batch.items, str(exc)
                        )
                        return
                    # Sleep, but wake at once if the backend leaves the ring.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(backend.retiring.wait(), delay)
                    continue
                self.record_result(backend, batch, result.accepted, result.rejected, result.message)
                return
        except asyncio.CancelledError:
            self._telemetry.record_failed(backend.endpoint, batch.signal, "shutdown", batch.items, "drain deadline")
            raise

    async def export_direct(self, backend: Backend, batch: Batch) -> PartFailure | None:
        """Export without a backend queue, with the backend retry policy; the caller waits."""
        delays = backoff_for(self._retry)
        while True:
            try:
                result = await backend.client.export(batch.signal, batch.payload, batch.items)
            except ExportError as exc:
                if not exc.retryable:
                    return PartFailure(batch, False, exc.code, f"{backend.endpoint}: {exc}")
                delay = next(delays, None)
                if delay is None or self._stopping() or backend.retiring.is_set():
                    return PartFailure(batch, True, exc.code, f"{backend.endpoint}: {exc}")
                await asyncio.sleep(delay)
                continue
            self.record_result(backend, batch, result.accepted, result.rejected, result.message)
            return None

    def record_result(self, backend: Backend, batch: Batch, accepted: int, rejected: int, message: str) -> None:
        if accepted:
            self._telemetry.items_exported.labels(endpoint=backend.endpoint, signal=batch.signal).inc(accepted)
        if rejected:
            self._telemetry.record_failed(backend.endpoint, batch.signal, "rejected_by_backend", rejected, message)
