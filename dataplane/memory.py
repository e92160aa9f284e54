"""The memory budget: one byte account for everything the data plane holds.

A tier-1 pod has a memory limit, and load must never push the data plane over
it (the kernel would OOM-kill it and every queued span would be lost). So every
byte the data plane buffers is charged to one :class:`MemoryBudget`:

- requests being received and split (the native receivers charge them on
  their own threads: an HTTP body before it is read, a gRPC message once read;
  the request and its parts exist together until the parts are queued);
- batches in every sending queue, waiting or being exported;
- batches re-routed after their backend left, and orphans waiting for a backend.

Admission checks the budget together with the queues: a request whose parts do
not fit is refused whole (``memory_limit``: gRPC UNAVAILABLE, HTTP 503), so the
client retries later; nothing of it is kept. Data that was already accepted
(re-routes, orphans) is charged without a check: it is only moved, never added,
so the total stays bounded by what admission let in.

The one setting is the process's total, ``memory.limit`` (a size). Ringleader
subtracts what the process already uses when it starts (the interpreter, the
native runtime) and what building a ring needs, and divides the rest by
:data:`OVERHEAD` (the transport and the allocator hold extra copies of data in
flight), which gives the bytes of data
that may be buffered: ``data_limit``. Without a setting the limit is 80% of the
container's memory limit (cgroup v2 ``memory.max`` or v1
``memory.limit_in_bytes``) or, outside a container, 1 GiB.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from pathlib import Path

from . import _native

log = logging.getLogger("ringleader.memory")

OVERHEAD = 3.0
"""Resident bytes per byte of buffered data, with a margin: about 1.7 measured with a stalled
backend and the native transport (tests/test_memory_budget.py; 2.3 to 2.6 with grpcio): a
request exists as its bytes and its parts until the parts are queued, and the allocator keeps
freed blocks of big requests."""

RING_BUILD_ALLOWANCE = 16 << 20
"""Set aside for building a ring (the native builder's transient buffers: ~12 MiB for 300 backends)."""

DEFAULT_LIMIT = 1 << 30
"""The total when no limit is set and no container limit is found."""

MIN_DATA_LIMIT = 8 << 20

_CGROUP_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


MMAP_THRESHOLD = 128 << 10
"""Blocks at least this big are mapped and unmapped on their own (see :func:`tune_allocator`)."""


def tune_allocator() -> None:
    """Make glibc return big freed blocks to the system at once.

    glibc raises its mmap threshold as big blocks are freed, after which requests and
    parts of hundreds of KiB come from the heap, where freed space is kept: peak RSS
    then runs ~40 MiB above the data actually held. A fixed threshold keeps each big
    buffer in its own mapping (one mmap/munmap pair per request, microseconds). Call it
    before threads start. Elsewhere than glibc it does nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_mmap_threshold = -3
        if libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) != 1:
            log.debug("mallopt(M_MMAP_THRESHOLD) was refused")


def container_limit() -> int | None:
    """The container's memory limit in bytes, or None when there is none."""
    for path in _CGROUP_FILES:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # cgroup v1 reports "no limit" as a huge number
            return int(text)
    return None


def default_limit() -> int:
    limit = container_limit()
    return int(limit * 0.8) if limit else DEFAULT_LIMIT


def resident_bytes() -> int:
    """This process's resident set size now (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemoryBudget:
    """Bytes of buffered data: charged on admission, released when delivered or dropped.

    The account itself is native and atomic (``dataplane._native.Budget``): the receivers
    charge requests on the data path's threads without the interpreter lock, Python's
    admission and queues through this class.
    """

    def __init__(self, data_limit: int, total: int = 0) -> None:
        self.native = _native.Budget(max(1, data_limit))
        self.data_limit = self.native.data_limit
        self.total = total

    @classmethod
    def for_process(cls, total: int) -> MemoryBudget:
        """The data budget left of ``total`` bytes after what the process uses already."""
        baseline = resident_bytes() + RING_BUILD_ALLOWANCE
        data = int((total - baseline) / OVERHEAD)
        if data < MIN_DATA_LIMIT:
            log.warning(
                "memory.limit %d MiB leaves only %d MiB for data after the process's own %d MiB; using %d MiB",
                total >> 20,
                max(0, data) >> 20,
                baseline >> 20,
                MIN_DATA_LIMIT >> 20,
            )
            data = MIN_DATA_LIMIT
        log.info(
            "memory budget: %d MiB in total, %d MiB of it for buffered data (process baseline %d MiB)",
            total >> 20,
            data >> 20,
            baseline >> 20,
        )
        return cls(data, total)

    @classmethod
    def unlimited(cls) -> MemoryBudget:
        """For components used on their own (tools, unit tests): a budget that never refuses."""
        return cls(1 << 62)

    @property
    def used(self) -> int:
        return self.native.used

    @property
    def peak(self) -> int:
        return self.native.peak

    def has_room(self, nbytes: int) -> bool:
        return self.native.has_room(nbytes)

    def try_charge(self, nbytes: int) -> bool:
        """Charge ``nbytes`` if they fit; False (nothing charged) when they do not."""
        return self.native.try_charge(nbytes)

    def charge(self, nbytes: int) -> None:
        """Charge without a check: for data already accepted that only moves."""
        self.native.charge(nbytes)

    def release(self, nbytes: int) -> None:
        excess = self.native.release(nbytes)
        if excess:  # an accounting bug must not make the budget grow: the account stops at 0
            log.error("memory budget released %d bytes more than it held", excess)
