"""The exporter-level queue, timeout and retry (``exporters.loadbalancing.*``).

Upstream's ``loadbalancing`` exporter has its own ``sending_queue``,
``retry_on_failure`` and ``timeout`` in front of routing, besides the ones of
each backend (``protocol.otlp``). Ringleader keeps that shape:

- ``sending_queue``: an optional queue of whole requests; the client is answered
  once the request is queued, and the consumers run the retry loop below;
- ``retry_on_failure``: a loop that re-splits and retries **only the parts that
  failed**, with the current ring; parts already delivered or admitted are never
  sent again (upstream #47600 re-sends the whole request);
- ``timeout``: the limit of one attempt of one part: a slow backend's part times
  out and is retried alone, the parts other backends accepted are done with.

A part retried after an attempt with an unknown outcome (a timeout: the backend
may have processed it) is counted in
``ringleader_items_at_least_once_total{reason="unknown_outcome"}``. Retries stop
at the client's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .admission import Admission
from .backends import Route
from .backoff import backoff_for
from .config_model import LoadBalancingConfig
from .delivery import UNKNOWN_OUTCOME, PartFailure, Progress
from .memory import MemoryBudget
from .queue import Batch, SendingQueue
from .routing import Split, Splitter
from .telemetry import Telemetry

log = logging.getLogger("ringleader.request_retry")


class RequestRetry:
    """Delivers whole requests with the exporter-level retry policy (and optional queue)."""

    def __init__(
        self,
        cfg: LoadBalancingConfig,
        splitters: dict[str, Splitter],
        telemetry: Telemetry,
        admission: Admission,
        route: Callable[[], Route | None],
        stopping: Callable[[], bool],
        budget: MemoryBudget | None = None,
    ) -> None:
        self._cfg = cfg
        self._splitters = splitters
        self._telemetry = telemetry
        self._admission = admission
        self._route = route
        self._stopping = stopping
        self.queue: SendingQueue | None = None
        if cfg.sending_queue.enabled:
            self.queue = SendingQueue("loadbalancer", cfg.sending_queue, self._deliver_queued, budget=budget)

    def start(self) -> None:
        if self.queue is not None:
            self.queue.start()

    async def _deliver_queued(self, batch: Batch) -> None:
        failures = await self.deliver(batch, None, None)
        for f in failures:
            reason = "retries_exhausted" if f.retryable else f.code
            self._telemetry.record_failed("loadbalancer", f.batch.signal, reason, f.batch.items, f.message)

    async def deliver(
        self,
        batch: Batch,
        route: Route | None,
        split: Split | None,
        deadline: float | None = None,
        progress: Progress | None = None,
    ) -> list[PartFailure]:
        """The exporter-level retry loop: only the parts that failed are re-routed and retried.

        ``deadline``: the client's (``time.monotonic()``); no retry starts after it.
        """
        delays = backoff_for(self._cfg.retry_on_failure)
        timeout = self._cfg.timeout or None
        pending: list[tuple[Batch, Route | None, Split | None]] = [(batch, route, split)]
        final: list[PartFailure] = []
        while True:
            failures: list[PartFailure] = []
            for b, r, s in pending:
                if r is None or s is None:
                    r = self._route()
                    if r is None:
                        failures.append(PartFailure(b, True, "no_backends", "no backends are available"))
                        continue
                    s = self._splitters[b.signal].split_ring(b.payload, r.ring)
                failures.extend(await self._admission.dispatch(b.signal, r, s, b, timeout, deadline, progress))
            final.extend(f for f in failures if not f.retryable)
            retry = [f for f in failures if f.retryable]
            if not retry:
                return final
            delay = None if self._stopping() else next(delays, None)
            if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
                return final + retry
            log.debug("retrying %d failed part(s) in %.2fs", len(retry), delay)
            await asyncio.sleep(delay)
            for f in retry:
                if f.code in UNKNOWN_OUTCOME:
                    self._telemetry.record_at_least_once(f.batch.signal, "unknown_outcome", f.batch.items, f.message)
            pending = [(f.batch, None, None) for f in retry]
