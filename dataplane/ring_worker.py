"""The ring worker: builds hash rings in a separate process.

A ring for hundreds of backends takes about half a second of CPU, and part of it
is single C calls (sorting ~600k points) that hold the GIL: in a thread they would
stall the event loop, and with it every request, for over 100 ms (upstream #8843
is the same problem with a lock). :class:`RingBuilder` keeps one spawned worker
process, started on first use, that builds the ring and sends back its table (a
couple of MiB, unpickled in about a millisecond). The worker dies with the data
plane, even when that is killed with SIGKILL. If the worker cannot be used, the
ring is built in a thread instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence

from .ring import Ring, build_ring

log = logging.getLogger("ringleader.ring_worker")


class RingBuilder:
    """Builds rings in one worker process (see the module documentation)."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def build(self, algorithm: str, endpoints: Sequence[str]) -> tuple[Ring, dict[str, float]]:
        """The ring and its exact shares (computing those scans the whole table too)."""
        loop = asyncio.get_running_loop()
        try:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_die_with_parent,
                    initargs=(os.getpid(),),
                )
            return await loop.run_in_executor(self._pool, _build_with_shares, algorithm, tuple(endpoints))
        except (concurrent.futures.process.BrokenProcessPool, OSError, RuntimeError) as exc:
            log.warning("ring builder process unavailable (%s); building in a thread", exc)
            self.close()
            return await asyncio.to_thread(_build_with_shares, algorithm, tuple(endpoints))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _die_with_parent(parent: int) -> None:
    """Ring-builder worker start-up: exit when the data plane dies, even by SIGKILL.

    Linux delivers SIGKILL to the worker when its parent dies (PR_SET_PDEATHSIG);
    elsewhere a daemon thread notices the parent is gone within a second.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(0)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(0)


def _build_with_shares(algorithm: str, endpoints: tuple[str, ...]) -> tuple[Ring, dict[str, float]]:
    ring = build_ring(algorithm, endpoints)
    return ring, ring.shares()
