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

An attempt that ends without a definite answer (``DEADLINE_EXCEEDED``,
``CANCELLED``: the backend may have processed the request and its answer was
lost) and is then sent again, here or after re-routing, is counted in
``ringleader_items_at_least_once_total{reason="unknown_outcome"}``.

Every outcome is also reported to the :class:`~dataplane.ejection.Ejector`, which
ejects a backend that keeps failing (its in-flight parts are then re-routed, the
unknown-outcome case above).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends import Backend
from .backoff import backoff_for
from .config_model import RetryConfig
from .ejection import Ejector
from .exporter import ExportError
from .queue import Batch
from .telemetry import Telemetry

log = logging.getLogger("ringleader.delivery")

UNKNOWN_OUTCOME = frozenset({"DEADLINE_EXCEEDED", "CANCELLED"})
"""Failure codes after which the backend may still have processed the request."""


@dataclass(slots=True)
class Progress:
    """Items of one client request delivered so far (without backend queues)."""

    delivered: int = 0


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
        ejector: Ejector | None = None,
    ) -> None:
        self.ejector = ejector
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
                    self._failed(backend, exc)
                    if backend.retiring.is_set():
                        self.count_resend(batch, exc.code, f"{backend.endpoint} left: re-routed after {exc}")
                        self._reroute([batch])
                        return
                    if not exc.retryable:
                        self._telemetry.record_failed(backend.endpoint, batch.signal, exc.code, batch.items, str(exc))
                        return
                    delay = _honour_retry_info(next(delays, None), exc)
                    if delay is None:
                        self._telemetry.record_failed(
                            backend.endpoint, batch.signal, "retries_exhausted", batch.items, str(exc)
                        )
                        return
                    # Sleep, but wake at once if the backend leaves the ring.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(backend.retiring.wait(), delay)
                    self.count_resend(batch, exc.code, f"{backend.endpoint}: sent again after {exc}")
                    continue
                self._succeeded(backend)
                self.record_result(backend, batch, result.accepted, result.rejected, result.message)
                return
        except asyncio.CancelledError:
            self._telemetry.record_failed(backend.endpoint, batch.signal, "shutdown", batch.items, "drain deadline")
            raise

    def _succeeded(self, backend: Backend) -> None:
        if self.ejector is not None:
            self.ejector.export_succeeded(backend.endpoint)

    def _failed(self, backend: Backend, exc: ExportError) -> None:
        # A permanent error is an answer about the data (the backend works); only failures that
        # retrying could cure say something about the backend's health.
        if self.ejector is not None and exc.retryable:
            self.ejector.export_failed(backend.endpoint)

    async def export_direct(
        self, backend: Backend, batch: Batch, deadline: float | None = None, progress: Progress | None = None
    ) -> PartFailure | None:
        """Export without a backend queue, with the backend retry policy; the caller waits.

        ``deadline`` is the client's (``time.monotonic()``): no attempt outlives it.
        """
        delays = backoff_for(self._retry)
        while True:
            try:
                result = await backend.client.export(batch.signal, batch.payload, batch.items, deadline)
            except ExportError as exc:
                self._failed(backend, exc)
                if not exc.retryable:
                    return PartFailure(batch, False, exc.code, f"{backend.endpoint}: {exc}")
                delay = _honour_retry_info(next(delays, None), exc)
                if (
                    delay is None
                    or self._stopping()
                    or backend.retiring.is_set()
                    or (deadline is not None and time.monotonic() + delay >= deadline)
                ):
                    return PartFailure(batch, True, exc.code, f"{backend.endpoint}: {exc}")
                await asyncio.sleep(delay)
                self.count_resend(batch, exc.code, f"{backend.endpoint}: retried after {exc}")
                continue
            self._succeeded(backend)
            self.record_result(backend, batch, result.accepted, result.rejected, result.message)
            if progress is not None:
                progress.delivered += result.accepted
            return None

    def count_resend(self, batch: Batch, code: str, detail: str) -> None:
        """A batch is sent again: if its last attempt's outcome is unknown, it may arrive twice."""
        if code in UNKNOWN_OUTCOME:
            self._telemetry.record_at_least_once(batch.signal, "unknown_outcome", batch.items, detail)

    def record_result(self, backend: Backend, batch: Batch, accepted: int, rejected: int, message: str) -> None:
        if accepted:
            self._telemetry.items_exported.labels(endpoint=backend.endpoint, signal=batch.signal).inc(accepted)
        if rejected:
            self._telemetry.record_failed(backend.endpoint, batch.signal, "rejected_by_backend", rejected, message)


def _honour_retry_info(delay: float | None, exc: ExportError) -> float | None:
    """The backoff delay, at least the backend's RetryInfo delay; None once backoff gives up."""
    if delay is None or exc.retry_after is None:
        return delay
    return max(delay, exc.retry_after)
