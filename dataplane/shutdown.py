"""Shutdown: deliver what was accepted within ``shutdown.drain_timeout``, count the rest.

:func:`drain` waits until every queue is empty and idle and every background
task (retirements, re-routed exports) has finished, or until the deadline. What
is still queued then, and what is orphaned, is counted as dropped with reason
``shutdown`` and logged; in-flight exports are cancelled and counted by their
consumer. Then the backend channels and the ring worker are closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from .backends import Backend
from .queue import SendingQueue
from .rerouting import Rerouter
from .ring_worker import RingBuilder
from .tasks import Background
from .telemetry import Telemetry

log = logging.getLogger("ringleader.shutdown")


async def drain(
    queues: Sequence[SendingQueue],
    tasks: Background,
    rerouter: Rerouter,
    backends: Sequence[Backend],
    ring_builder: RingBuilder,
    telemetry: Telemetry,
    drain_timeout: float,
) -> None:
    """Flush every queue within ``drain_timeout``, count what is left, close everything."""
    deadline = time.monotonic() + drain_timeout

    async def drained() -> None:
        for q in queues:
            await q.wait_idle()
        await tasks.wait()

    try:
        await asyncio.wait_for(drained(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        log.warning("drain deadline of %.1fs passed with data still queued", drain_timeout)
    for q in queues:
        for batch in q.take_all():
            telemetry.record_failed(q.name, batch.signal, "shutdown", batch.items, "drain deadline")
        await q.stop()  # in-flight batches are counted by their consumer on cancellation
    for batch in rerouter.take_orphans():
        telemetry.record_failed("none", batch.signal, "shutdown", batch.items, "no backend before shutdown")
    await tasks.cancel()
    await asyncio.gather(*(b.client.close(grace=0.5) for b in backends), return_exceptions=True)
    ring_builder.close()
