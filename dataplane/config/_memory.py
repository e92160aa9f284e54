"""The top-level ``memory`` block (Ringleader): the process's total memory budget.

A collector config's ``memory_limiter`` processor sets the same budget
(:mod:`._collector`); with both, the smaller limit applies.
"""

from __future__ import annotations

from ..config_model import MemoryConfig
from ._values import Val

MIN_LIMIT = 64 << 20


def parse_memory(value: Val | None, limiter: int | None = None) -> MemoryConfig:
    """``limiter``: the limit a ``memory_limiter`` processor sets, if any."""
    if value is None:
        return MemoryConfig(limit=limiter)
    block = value.mapping()
    limit = block.get("limit")
    block.done()
    if limit is None:
        return MemoryConfig(limit=limiter)
    size = limit.size(positive=True)
    if size < MIN_LIMIT:
        limit.fail(f"must be at least 64MiB (the process alone needs about that), got {size} bytes")
    return MemoryConfig(limit=size if limiter is None else min(size, limiter))
