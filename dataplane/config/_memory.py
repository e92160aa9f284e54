"""The top-level ``memory`` block (Ringleader): the process's total memory budget."""

from __future__ import annotations

from ..config_model import MemoryConfig
from ._values import Val

MIN_LIMIT = 64 << 20


def parse_memory(value: Val | None) -> MemoryConfig:
    if value is None:
        return MemoryConfig()
    block = value.mapping()
    limit = block.get("limit")
    block.done()
    if limit is None:
        return MemoryConfig()
    size = limit.size(positive=True)
    if size < MIN_LIMIT:
        limit.fail(f"must be at least 64MiB (the process alone needs about that), got {size} bytes")
    return MemoryConfig(limit=size)
