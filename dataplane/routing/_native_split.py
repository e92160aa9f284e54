"""The native wire splitter: the Rust port of :class:`WireSplitter`, the data path's splitter.

:func:`~dataplane.routing.make_splitter` hands it out for every key the wire path serves;
the data path calls :meth:`NativeSplitter.split_ring` with the current ring, whose table
it builds once per ring (:meth:`~dataplane.ring.Ring.native_table`). It serves the same keys as the Python wire path
(``traceID`` for traces and logs, ``metric``, and ``service``/``resource`` for every
signal), validates the same things in the same order, writes the same bytes and raises
the same errors; tests/test_native_split.py proves it against the Python wire path and
the decode path (the reference). Instead of a lookup function it takes the ring's table
as bytes, so the split runs without the interpreter lock::

    table = ring_table(build_ring("ringleader", endpoints))   # once per ring change
    splitter = NativeSplitter("traces", "traceID")             # one per thread
    split = splitter.split(request_bytes, table)               # a routing.Split

Swapping rings is swapping the ``RingTable`` object a caller passes (it is immutable).
Log records without a trace ID go to a random backend drawn from a splitmix64
generator seeded with ``seed`` (random when not given).
"""

from __future__ import annotations

import random

from .. import _native
from ..ring import Ring
from ..wire import MalformedError
from ._split import InvalidRequestError, Lookup, Split
from ._wire_split import WireSplitter

RingTable = _native.RingTable


def ring_table(ring: Ring) -> _native.RingTable:
    """The native form of a ring's table (build it once per ring, share it between splitters)."""
    cells, itemsize = ring.table_bytes()
    return _native.RingTable(ring.algorithm, cells, itemsize)


class NativeSplitter:
    """Split requests on the wire in native code; same results as :class:`WireSplitter`."""

    ITEM_KEYS = {("traces", "traceID"), ("logs", "traceID"), ("metrics", "metric")}
    RESOURCE_KEYS = {"service", "resource"}

    def __init__(self, signal: str, key: str, seed: int | None = None) -> None:
        self.signal = signal
        self.key = key
        self._native = _native.WireSplitter(signal, key, random.getrandbits(64) if seed is None else seed)
        self._python: WireSplitter | None = None

    def split_ring(self, data: bytes, ring: Ring | None) -> Split:
        """Split by a ring (the data path); without a ring only validate (every part is 0)."""
        return self.split(data, _validate_table() if ring is None else ring.native_table())

    def split(self, data: bytes, lookup: Lookup | _native.RingTable) -> Split:
        """Split by a ring table natively, or by any lookup function on the Python wire path."""
        if not isinstance(lookup, _native.RingTable):
            if self._python is None:
                self._python = WireSplitter(self.signal, self.key)
            return self._python.split(data, lookup)
        table = lookup
        try:
            parts, items, missing = self._native.split(data, table)
        except _native.MalformedInput as exc:
            raise MalformedError(str(exc)) from None
        except _native.InvalidInput as exc:
            reason, message = exc.args
            raise InvalidRequestError(reason, message) from None
        return Split({idx: (part, count) for idx, part, count in parts}, items, missing)


_VALIDATE_TABLE: list[_native.RingTable] = []


def _validate_table() -> _native.RingTable:
    """A one-backend table: with no ring yet, a split only validates the request."""
    if not _VALIDATE_TABLE:
        _VALIDATE_TABLE.append(_native.RingTable("ringleader", bytes(2 << 20), 2))  # 2**20 cells, all 0
    return _VALIDATE_TABLE[0]
