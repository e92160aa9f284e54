"""Counting items (spans, log records, metric data points) on the wire, and checking their trace IDs."""

from __future__ import annotations

from collections.abc import Callable

from ..wire import (
    LEN,
    MalformedError,
    find_len_field,
    iter_len_fields,
)
from ._keys import span_key
from ._split import InvalidRequestError

# Metric data fields (gauge, sum, histogram, exponential_histogram, summary): each holds
# `repeated DataPoint data_points = 1`.
METRIC_DATA_TAGS = frozenset({(5 << 3) | LEN, (7 << 3) | LEN, (9 << 3) | LEN, (10 << 3) | LEN, (11 << 3) | LEN})
_METRIC_DATA_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
LOG_TRACE_ID_TAG = (9 << 3) | LEN
SPAN_TRACE_ID_TAG = (1 << 3) | LEN
METRIC_NAME_TAG = (1 << 3) | LEN


def count_span(data: bytes, pos: int, end: int) -> int:
    """One span; its trace ID must be empty or 16 bytes whatever the routing key."""
    if end - pos >= 18 and data[pos] == 0x0A and data[pos + 1] == 0x10:
        return 1  # the common layout: a 16-byte trace_id first
    found = find_len_field(data, pos, end, SPAN_TRACE_ID_TAG)
    if found is not None:
        span_key(data[found[0] : found[1]])  # raises on a bad length
    return 1


def count_log(data: bytes, pos: int, end: int) -> int:
    """One log record; its trace ID must be empty or 16 bytes whatever the routing key."""
    found = find_len_field(data, pos, end, LOG_TRACE_ID_TAG)
    if found is not None and found[1] - found[0] not in (0, 16):
        raise InvalidRequestError(
            "invalid_trace_id", f"log record trace_id has {found[1] - found[0]} bytes, expected 16"
        )
    return 1


def count_metric_points(data: bytes, pos: int, end: int) -> int:
    """Number of data points in one Metric message (its items for counting).

    The data fields form a oneof: like the runtime, a field of another kind than the one
    before it replaces it, one of the same kind merges into it (its points add up).
    """
    points = 0
    kind = -1
    for tag, _fs, ps, pe in iter_len_fields(data, pos, end):
        if tag in METRIC_DATA_TAGS:
            if tag != kind:
                kind = tag
                points = 0
            for t, _s, _p, _e in iter_len_fields(data, ps, pe):
                if t == 0x0A:
                    points += 1
    return points


ITEM_COUNTERS: dict[str, Callable[[bytes, int, int], int]] = {
    "traces": count_span,
    "logs": count_log,
    "metrics": count_metric_points,
}

COUNT_ONLY: dict[str, Callable[[bytes, int, int], int]] = {
    "traces": lambda data, pos, end: 1,
    "logs": lambda data, pos, end: 1,
    "metrics": count_metric_points,
}


def count_items(signal: str, data: bytes) -> int:
    """Items in a request, best effort (0 when it is malformed): for counting refusals."""
    counter = COUNT_ONLY[signal]
    total = 0
    try:
        for tag, _fs, ps, pe in iter_len_fields(data, 0, len(data)):
            if tag != 0x0A:
                continue
            for t, _s, sps, spe in iter_len_fields(data, ps, pe):
                if t != 0x12:
                    continue
                for it, _i, ips, ipe in iter_len_fields(data, sps, spe):
                    if it == 0x12:
                        total += counter(data, ips, ipe)
    except MalformedError:
        return 0
    return total
