"""The exporter-level queue, timeout and retry (``exporters.loadbalancing.*``).

Upstream's ``loadbalancing`` exporter has its own ``sending_queue``,
``retry_on_failure`` and ``timeout`` in front of routing, besides the ones of
each backend (``protocol.otlp``). Ringleader keeps that shape:

- ``sending_queue``: an optional queue of whole requests; the client is answered
  once the request is queued, and the consumers run the retry loop below;
- ``retry_on_failure``: a loop that re-splits and retries **only the parts that
  failed**, with the current ring; parts already delivered or admitted are never
  sent again (upstream #47600 re-sends the whole request);
- ``timeout``: the limit of one attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .admission import Admission
from .backends import Route
from .backoff import backoff_for
from .config_model import LoadBalancingConfig
from .delivery import PartFailure
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
    ) -> None:
        self._cfg = cfg
        self._splitters = splitters
        self._telemetry = telemetry
        self._admission = admission
        self._route = route
        self._stopping = stopping
        self.queue: SendingQueue | None = None
        if cfg.sending_queue.enabled:
            self.queue = SendingQueue("loadbalancer", cfg.sending_queue, self._deliver_queued)

    def start(self) -> None:
        if self.queue is not None:
            self.queue.start()

    async def _deliver_queued(self, batch: Batch) -> None:
        failures = await self.deliver(batch, None, None)
        for f in failures:
            reason = "retries_exhausted" if f.retryable else f.code
            self._telemetry.record_failed("loadbalancer", f.batch.signal, reason, f.batch.items, f.message)

    async def deliver(self, batch: Batch, route: Route | None, split: Split | None) -> list[PartFailure]:
        """The exporter-level retry loop: only the parts that failed are re-routed and retried."""
        delays = backoff_for(self._cfg.retry_on_failure)
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
                    s = self._splitters[b.signal].split(b.payload, r.ring.lookup)
                attempt = self._admission.dispatch(b.signal, r, s, b)
                if self._cfg.timeout:
                    try:
                        failures.extend(await asyncio.wait_for(attempt, self._cfg.timeout))
                    except TimeoutError:
                        failures.append(PartFailure(b, True, "DEADLINE_EXCEEDED", "exporter timeout"))
                else:
                    failures.extend(await attempt)
            final.extend(f for f in failures if not f.retryable)
            retry = [f for f in failures if f.retryable]
            if not retry:
                return final
            delay = None if self._stopping() else next(delays, None)
            if delay is None:
                return final + retry
            log.debug("retrying %d failed part(s) in %.2fs", len(retry), delay)
            await asyncio.sleep(delay)
            pending = [(f.batch, None, None) for f in retry]
