"""The export size limit: cut a part into requests its backend will take.

A tier-2 collector refuses gRPC messages over 4 MiB (``max_recv_msg_size_mib``),
while the HTTP receiver here takes up to 20 MiB. A part larger than the backend's
limit would be accepted from the client and then refused for good. So before a
part is queued (or exported directly) :meth:`SizeLimit.fit` cuts it at item
boundaries into requests of at most ``protocol.otlp.max_request_size`` bytes
(default 4 MiB, serialized and uncompressed, which is what gRPC's limit counts).

The cut works on the wire format, like the splitter: a request's resource
entries, their scope entries and their items (spans, log records, metrics, and
a metric's data points) are packed greedily; every piece keeps its resource,
scope and metric headers, so each chunk is a complete, valid request. Nothing is
decoded unless a part is over the limit.

A single item that cannot fit (one span larger than the limit with its headers)
cannot be delivered at all: :class:`ItemTooLargeError` is raised and the whole
request is refused before anything of it is accepted.
"""

from __future__ import annotations

from .queue import Batch
from .routing import count_items
from .wire import frame, iter_len_fields

# Repeated fields to cut along, from the request down: ResourceX (1), ScopeX (2), items (2).
_LEVELS: dict[str, tuple[int, ...]] = {
    "traces": (0x0A, 0x12, 0x12),
    "logs": (0x0A, 0x12, 0x12),
    "metrics": (0x0A, 0x12, 0x12, 0),  # 0: descend into the Metric's data points
}
# Metric.data: gauge (5), sum (7), histogram (9), exponential_histogram (10), summary (11).
_METRIC_DATA_TAGS = frozenset({0x2A, 0x3A, 0x4A, 0x52, 0x5A})
_DATA_POINTS = 0x0A
_FRAME_MAX = 6  # a one-byte tag and a length varint of at most 5 bytes


class ItemTooLargeError(ValueError):
    """A single item is larger than the export size limit: no backend would take it."""


class SizeLimit:
    """Cuts parts larger than ``max_bytes`` into several requests for the same backend."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def fit(self, part: Batch) -> list[Batch]:
        """``part`` itself when it fits, else its items in requests of at most ``max_bytes``."""
        if len(part.payload) <= self.max_bytes:
            return [part]
        data = part.payload
        chunks = _cut(data, 0, len(data), _LEVELS[part.signal], self.max_bytes)
        return [Batch(part.signal, chunk, count_items(part.signal, chunk)) for chunk in chunks]

    def check(self, signal: str, data: bytes) -> None:
        """Raise :class:`ItemTooLargeError` if some item of ``data`` can never fit."""
        if len(data) > self.max_bytes:
            _cut(data, 0, len(data), _LEVELS[signal], self.max_bytes)


def _cut(data: bytes, start: int, end: int, levels: tuple[int, ...], budget: int) -> list[bytes]:
    """Message bodies of at most ``budget`` bytes holding every item of ``data[start:end]``."""
    if end - start <= budget:
        return [data[start:end]]
    if not levels:
        raise ItemTooLargeError(f"an item of {end - start} bytes exceeds the export size limit of {budget} bytes")
    tag = levels[0]
    fields = iter_len_fields(data, start, end)
    if tag == 0:  # a Metric: cut its data message along the data points
        return _cut_metric(data, fields, budget)
    header = b"".join(data[fs:fe] for t, fs, _, fe in fields if t != tag)
    child_budget = budget - len(header) - _FRAME_MAX
    if child_budget <= 0:
        raise ItemTooLargeError(f"a header of {len(header)} bytes leaves no room under the limit of {budget} bytes")
    out: list[bytes] = []
    current = [header]
    size = len(header)
    has_child = False
    for t, _, ps, pe in fields:
        if t != tag:
            continue
        for piece in _cut(data, ps, pe, levels[1:], child_budget):
            encoded = frame(tag, len(piece)) + piece
            if has_child and size + len(encoded) > budget:
                out.append(b"".join(current))
                current, size = [header], len(header)
            current.append(encoded)
            size += len(encoded)
            has_child = True
    if has_child:
        out.append(b"".join(current))
    return out


def _cut_metric(data: bytes, fields: list[tuple[int, int, int, int]], budget: int) -> list[bytes]:
    header = b"".join(data[fs:fe] for t, fs, _, fe in fields if t not in _METRIC_DATA_TAGS)
    body = next(((t, ps, pe) for t, _, ps, pe in fields if t in _METRIC_DATA_TAGS), None)
    if body is None:
        raise ItemTooLargeError(f"a metric without data points exceeds the export size limit of {budget} bytes")
    data_tag, ps, pe = body
    pieces = _cut(data, ps, pe, (_DATA_POINTS,), budget - len(header) - _FRAME_MAX)
    return [header + frame(data_tag, len(piece)) + piece for piece in pieces]
