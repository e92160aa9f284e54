"""The ring builder: new rings are built off the event loop, without its lock.

Building a ring is pure computation on the backend set: the native builder
(:func:`dataplane.ring.build_ring`) computes the cells, and the exact shares, in
milliseconds without holding the interpreter lock, on a thread. Neither the event loop
nor the native data path waits for it, and no helper process is needed (the Python
reference took most of a second for hundreds of backends, which is why this used to be
a separate process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .ring import Ring, build_ring


class RingBuilder:
    """Builds rings on a thread (see the module documentation)."""

    async def build(self, algorithm: str, endpoints: Sequence[str]) -> tuple[Ring, dict[str, float]]:
        """The ring and its exact shares."""
        return await asyncio.to_thread(_build_with_shares, algorithm, tuple(endpoints))

    def close(self) -> None:
        """Nothing to release (kept for the shutdown sequence)."""


def _build_with_shares(algorithm: str, endpoints: tuple[str, ...]) -> tuple[Ring, dict[str, float]]:
    ring = build_ring(algorithm, endpoints)
    ring.native_table()  # built here too, so the event loop's first split does not build it
    return ring, ring.shares()
