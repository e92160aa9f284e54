"""The consistent hash ring: which backend owns a routing key.

Every tier-1 instance builds the same ring from the same *set* of backend
endpoints (input order and duplicates do not matter), so a trace ID is routed to
the same tier-2 backend whichever instance receives its spans.

Two algorithms, chosen with ``ring_algorithm`` in the exporter config:

``ringleader`` (default)
    A *nearest-point* ring with a small capacity correction, flattened into a
    table of 2**20 cells:

    1. every backend gets 2048 pseudo-random points on a 32-bit circle, taken
       from SHAKE-128 of its endpoint string (so the points depend on nothing
       but the endpoint);
    2. each cell of the circle belongs to the backend with the *nearest* point
       (either direction).  Nearest-point halves the variance of a backend's
       share compared with upstream's next-point rule, and it keeps consistent
       hashing's guarantee: adding a backend only moves cells *to* it, removing
       one only moves *its* cells;
    3. a backend whose share still exceeds 1.02x the average gives the cells at
       the edges of its regions to the neighbouring backend, until it is at the
       cap.  Only a few percent of backends need this, for a fraction of a
       percent of the space, so it costs almost nothing in disruption.

    Keys are hashed with 32-bit MurmurHash3 (seed 0); the top 20 bits pick the
    cell.  Result for 3..300 backends: max/avg share <= 1.02, and adding or
    removing one backend moves at most ~1.06x the ideal (see docs/ring.md).

``upstream`` (= ``upstream-v0.161``), ``upstream-v0.152``, ``upstream-v0.129``
    Byte-for-byte the ring of the OpenTelemetry Collector ``loadbalancing``
    exporter, in each of its three historical forms (:data:`UPSTREAM_VARIANTS`,
    each named after the newest release checked to use it; docs/ring.md has the
    release ranges). ``upstream`` is the ring of current releases (PR #49585):
    200 points per endpoint at ``crc32(endpoint + uint32le(i)) % 131071``, all
    points ordered by (position, hash, endpoint) and then placed, a collision
    linearly probed up to 9 positions on; key owner = first point at or after
    ``crc32(key) % 131071``. Upstream's resolvers sort the endpoint list before
    building (Go ``sort.Strings``), and so does this module; a duplicated static
    hostname is kept like upstream keeps it. Use the variant your upstream
    collectors run while tier 1 is a mix of them and Ringleader, so both route
    every trace to the same backend (tests/test_upstream_side_by_side.py checks
    ``upstream`` against the real collector).

Use::

    ring = build_ring("ringleader", ["10.0.0.1:4317", "10.0.0.2:4317"])
    idx = ring.lookup(trace_id)          # hot path: index into ring.endpoints
    ring.owner_of(b"checkout")           # the endpoint string
    ring.shares()                        # exact share of the hash space
    moved_fraction(old_ring, new_ring)   # share of keys that change owner

Shares and moved fractions are exact: every cell covers a known number of
32-bit hash values, so nothing is sampled.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final

import mmh3

from . import _native

__all__ = [
    "ALGORITHMS",
    "UPSTREAM_VARIANTS",
    "NoBackendsError",
    "Ring",
    "UpstreamVariant",
    "build_ring",
    "canonical_algorithm",
    "moved_fraction",
    "upstream_positions",
]

ALGORITHMS: Final = ("ringleader", "upstream", "upstream-v0.161", "upstream-v0.152", "upstream-v0.129")

HASH_SPACE: Final = 1 << 32

# ringleader parameters (changing any of them changes every owner: bump the
# point domain tag below if you do, and document it as a routing change).
POINTS_PER_BACKEND: Final = 2048
TABLE_BITS: Final = 20
TABLE_SIZE: Final = 1 << TABLE_BITS
CELL_SHIFT: Final = 32 - TABLE_BITS
CAP_FACTOR: Final = 1.02
KEY_SEED: Final = 0
_POINT_DOMAIN: Final = b"ringleader/v1\x00"

Lookup = Callable[[bytes], int]


def _mmh3_fallback(key: bytes, seed: int) -> int:
    return int(mmh3.hash(key, seed, signed=False))


# mmh3 >= 5 has a positional-only fast path (~65 ns against ~140 ns for hash()).
_hash32: Callable[[bytes, int], int] = getattr(mmh3, "mmh3_32_uintdigest", None) or _mmh3_fallback


class NoBackendsError(Exception):
    """A ring needs at least one backend endpoint."""


class Ring:
    """An immutable ring: a table of cells, each owned by one endpoint.

    ``lookup(key)`` returns the index of the key's owner in ``endpoints``; it
    is a plain function with everything it needs bound, for the data path.
    """

    __slots__ = ("_cells", "_native_table", "algorithm", "endpoints", "hash_name", "lookup")

    algorithm: str
    endpoints: tuple[str, ...]
    lookup: Lookup
    hash_name: str

    def __init__(
        self,
        algorithm: str,
        endpoints: tuple[str, ...],
        cells: array[int],
        hash_name: str,
        lookup: Lookup,
    ) -> None:
        self.algorithm = algorithm
        self.endpoints = endpoints
        # Cell x covers the 32-bit hash values h with h % len(cells) == x (upstream) or
        # h >> 12 == x (ringleader); either way each cell covers 2**32 // len(cells) values and
        # the first 2**32 % len(cells) cells one more (none for ringleader's 2**20 cells).
        self._cells = cells
        self.hash_name = hash_name
        self.lookup = lookup
        self._native_table: Any = None

    def native_table(self) -> Any:
        """The table in the native data path's form (``dataplane._native.RingTable``), built once."""
        if self._native_table is None:
            cells, itemsize = self.table_bytes()
            self._native_table = _native.RingTable(self.algorithm, cells, itemsize)
        return self._native_table

    def owner_of(self, key: bytes) -> str:
        return self.endpoints[self.lookup(key)]

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, so a ring can be built in another process (see dataplane.balancer): the
        # lookup closure is rebuilt around the table on the receiving side.
        return (_restore_ring, (self.algorithm, self.endpoints, self._cells, self.hash_name))

    def _owned(self) -> list[int]:
        """Hash values owned per endpoint index (sums to 2**32)."""
        per_cell, extra = divmod(HASH_SPACE, len(self._cells))
        counts = _native.ring_cell_counts(self.native_table(), len(self.endpoints))
        owned = [count * per_cell for count in counts]
        for idx, count in Counter(self._cells[:extra]).items():
            owned[idx] += count
        return owned

    def shares(self) -> dict[str, float]:
        """Exact share of the key hash space per endpoint; sums to 1."""
        return {ep: n / HASH_SPACE for ep, n in zip(self.endpoints, self._owned(), strict=True)}

    def table_bytes(self) -> tuple[bytes, int]:
        """The cells as little-endian unsigned integers, and their size in bytes.

        This is how the table is handed to the native data path (``dataplane._native``),
        which hashes keys exactly as :attr:`lookup` does and indexes these cells.
        """
        cells = self._cells
        if sys.byteorder == "big":  # pragma: no cover - cells travel little-endian
            cells = array(cells.typecode, cells)
            cells.byteswap()
        return cells.tobytes(), cells.itemsize

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for /debug/ring and the ``ring`` subcommand."""
        shares = self.shares()
        avg = 1 / len(self.endpoints)
        return {
            "algorithm": self.algorithm,
            "hash": self.hash_name,
            "endpoints": list(self.endpoints),
            "backends": len(self.endpoints),
            "table_size": len(self._cells),
            "shares": shares,
            "max_over_avg": max(shares.values()) / avg,
            "min_over_avg": min(shares.values()) / avg,
        }


def build_ring(algorithm: str, endpoints: Sequence[str]) -> Ring:
    """Build the ring for a backend set; raises NoBackendsError if it is empty.

    The cells are computed natively (``dataplane._native.build_ring_cells``, without the
    interpreter lock, in milliseconds); :func:`build_ring_reference` is the Python
    implementation the tests prove it equal to.
    """
    unique = _unique_endpoints(endpoints)
    name = canonical_algorithm(algorithm)
    if algorithm != "ringleader" and name not in UPSTREAM_VARIANTS:
        raise ValueError(f"unknown ring algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    ordered = sorted(endpoints)
    raw, itemsize = _native.build_ring_cells(name, list(unique), ordered)
    cells = array("H" if itemsize == 2 else "I")
    cells.frombytes(raw)
    if sys.byteorder == "big":  # pragma: no cover - cells travel little-endian
        cells.byteswap()
    if algorithm == "ringleader":
        return Ring("ringleader", unique, cells, "murmur3_32(seed=0) >> 12", _ringleader_lookup(cells))
    v = UPSTREAM_VARIANTS[name]
    return Ring(algorithm, unique, cells, f"crc32 % {v.max_positions}", _upstream_lookup(cells))


def _unique_endpoints(endpoints: Sequence[str]) -> tuple[str, ...]:
    if isinstance(endpoints, str):
        raise TypeError("endpoints must be a sequence of strings, not one string")
    if not endpoints:
        raise NoBackendsError("no backend endpoints to build a ring from")
    return tuple(sorted(set(endpoints)))


def build_ring_reference(algorithm: str, endpoints: Sequence[str]) -> Ring:
    """:func:`build_ring` in pure Python: the reference implementation (slow: ~0.3-0.8 s for a ringleader ring)."""
    unique = _unique_endpoints(endpoints)
    if algorithm == "ringleader":
        return _build_ringleader(unique)
    if canonical_algorithm(algorithm) in UPSTREAM_VARIANTS:
        return _build_upstream(algorithm, unique, sorted(endpoints))
    raise ValueError(f"unknown ring algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")


def moved_fraction(old: Ring, new: Ring) -> float:
    """Exact share of the hash space whose owner (by endpoint string) differs.

    Both rings must use the same algorithm: the two algorithms hash keys
    differently, so their cells do not describe the same keys.
    """
    same = canonical_algorithm(old.algorithm) == canonical_algorithm(new.algorithm)
    if not same or len(old._cells) != len(new._cells):
        raise ValueError(
            f"cannot compare a {old.algorithm!r} ring with a {new.algorithm!r} ring: they hash keys differently"
        )
    a_names, b_names = old.endpoints, new.endpoints
    # Translate both index spaces into one so the comparison is integer-only.
    names = sorted(set(a_names) | set(b_names))
    gid = {name: i for i, name in enumerate(names)}
    a_map = [gid[n] for n in a_names]
    b_map = [gid[n] for n in b_names]
    per_cell, extra = divmod(HASH_SPACE, len(old._cells))
    moved = [a_map[x] != b_map[y] for x, y in zip(old._cells, new._cells, strict=True)]
    return (sum(moved) * per_cell + sum(moved[:extra])) / HASH_SPACE


# ---------------------------------------------------------------- ringleader


def _points(endpoint: str) -> array[int]:
    """The endpoint's points: 2048 little-endian uint32 from SHAKE-128."""
    pts = array("I")
    if pts.itemsize != 4:  # pragma: no cover - every CPython platform we run on
        raise RuntimeError("array('I') is not 32-bit on this platform")
    pts.frombytes(hashlib.shake_128(_POINT_DOMAIN + endpoint.encode()).digest(4 * POINTS_PER_BACKEND))
    if sys.byteorder == "big":  # pragma: no cover - points are defined little-endian
        pts.byteswap()
    return pts


def _build_ringleader(endpoints: tuple[str, ...]) -> Ring:
    n = len(endpoints)
    bits = max(1, (n - 1).bit_length())
    mask = (1 << bits) - 1
    gen: list[array[int]] = []
    # Pack (position, endpoint rank) into one int so a single C-level sort
    # orders the whole circle; equal positions fall back to endpoint order,
    # which does not depend on which other endpoints are present.
    packed: list[int] = []
    for rank, endpoint in enumerate(endpoints):
        pts = _points(endpoint)
        gen.append(pts)
        packed.extend([(p << bits) | rank for p in pts])
    packed.sort()
    pos = [k >> bits for k in packed]
    owner = [k & mask for k in packed]
    # Region of point j (nearest-point rule) starts halfway from point j-1;
    # a tie goes to the later point. Point 0's predecessor is the last point,
    # one circle back.
    starts = [(a + b + 1) >> 1 for a, b in zip([pos[-1] - HASH_SPACE, *pos[:-1]], pos, strict=True)]
    # Cell c (hash values c<<12 .. (c+1)<<12 - 1) belongs to the point whose
    # region holds its first hash value. Index 0 of owner_wrapped is the last
    # point, whose region wraps past 2**32.
    owner_wrapped = [owner[-1], *owner]
    region = map(bisect.bisect_right, repeat(starts), range(0, HASH_SPACE, 1 << CELL_SHIFT))
    code = "H" if n <= 0xFFFF else "I"
    cells = array(code, map(owner_wrapped.__getitem__, region))
    _apply_cap(cells, gen, n)

    return Ring("ringleader", endpoints, cells, "murmur3_32(seed=0) >> 12", _ringleader_lookup(cells))


def _ringleader_lookup(cells: array[int]) -> Lookup:
    def lookup(key: bytes, _c: array[int] = cells, _h: Callable[[bytes, int], int] = _hash32) -> int:
        return _c[_h(key, 0) >> 12]

    return lookup


def _apply_cap(cells: array[int], gen: list[array[int]], n: int) -> None:
    """Trim every backend to CAP_FACTOR x the average share, in place.

    An over-full backend hands the last cell of its regions to the backend
    that owns the next cell, one cell per region per pass, visiting its
    regions in the order its points were generated. The choice depends only
    on the backend's own points and the current table, so it is the same on
    every instance; and since it only shaves region edges, the extra keys
    that move when the set changes stay a small fraction of the ideal.
    """
    size = len(cells)
    last = size - 1
    cap = int(CAP_FACTOR * size / n)
    counts = [0] * n
    for idx, count in Counter(cells).items():
        counts[idx] = count
    for b in range(n):
        excess = counts[b] - cap
        while excess > 0:
            progress = False
            for p in gen[b]:
                if excess <= 0:
                    break
                c = p >> CELL_SHIFT
                if cells[c] != b:
                    # The point's own cell went to a neighbour (it sits near the
                    # cell's end): its region continues in the next cell, if any.
                    c = (c + 1) & last
                    if cells[c] != b:
                        continue
                # Walk to the right edge of this region.
                steps = 0
                while cells[(c + 1) & last] == b and steps < size:
                    c = (c + 1) & last
                    steps += 1
                neighbour = cells[(c + 1) & last]
                if neighbour == b or counts[neighbour] >= cap:
                    continue
                if c == (p >> CELL_SHIFT):
                    # Never give away the cell holding the point itself, so
                    # every region keeps an anchor for later passes.
                    continue
                cells[c] = neighbour
                counts[neighbour] += 1
                counts[b] -= 1
                excess -= 1
                progress = True
            if not progress:
                break


# ------------------------------------------------------------------ upstream


@dataclass(frozen=True, slots=True)
class UpstreamVariant:
    """The hash ring of one line of upstream releases (exporter/loadbalancingexporter/consistent_hashing.go).

    Point ``i`` of endpoint ``e`` hashes ``crc32(utf8(e) + suffix(i))``; its position is that hash modulo
    ``max_positions``; a key's owner is the first point at or after ``crc32(key) % max_positions``,
    wrapping to the first point.
    """

    name: str
    releases: str
    max_positions: int
    weight: int
    # "byte": suffix is one byte i; "uint32le": four bytes, little-endian.
    suffix: str
    # "skip": a colliding point is dropped; "probe": it moves to the next free position (up to 9 steps),
    # in endpoint order; "sorted-probe": all points are generated first, ordered by (position, hash,
    # endpoint), then probed in that order, so the ring does not depend on the endpoints' order.
    placement: str


UPSTREAM_VARIANTS: Final = {
    v.name: v
    for v in (
        UpstreamVariant("upstream-v0.161", "v0.157 to v0.161 (PR #49585)", 131071, 200, "uint32le", "sorted-probe"),
        UpstreamVariant("upstream-v0.152", "v0.130 to v0.152 (PR #41271)", 36000, 100, "uint32le", "probe"),
        UpstreamVariant("upstream-v0.129", "up to v0.129 (the original ring)", 36000, 100, "byte", "skip"),
    )
}
# ``upstream`` is the ring of the upstream release users run today.
UPSTREAM_CURRENT: Final = "upstream-v0.161"
UPSTREAM_PROBE_LIMIT: Final = 10


def canonical_algorithm(algorithm: str) -> str:
    """The algorithm's own name: ``upstream`` is an alias of the current upstream ring."""
    return UPSTREAM_CURRENT if algorithm == "upstream" else algorithm


def upstream_positions(
    endpoints: Sequence[str], weight: int | None = None, variant: str = "upstream"
) -> list[tuple[int, str]]:
    """Upstream's ring items ``(position, endpoint)``, sorted by position, for endpoints in the given
    order (upstream's resolvers sort them first; :func:`build_ring` does too)."""
    v = UPSTREAM_VARIANTS[canonical_algorithm(variant)]
    n = v.weight if weight is None else weight
    modulus = v.max_positions
    suffix: Callable[[int], bytes] = _byte_suffix if v.suffix == "byte" else _uint32le_suffix
    candidates: list[tuple[int, int, str]] = []
    for endpoint in endpoints:
        prefix = zlib.crc32(endpoint.encode())
        for i in range(n):
            h = zlib.crc32(suffix(i), prefix)
            candidates.append((h % modulus, h, endpoint))
    if v.placement == "sorted-probe":
        # Go compares strings bytewise; for UTF-8 that is code-point order, as Python compares str.
        candidates.sort()
    taken: dict[int, str] = {}
    for pos, _, endpoint in candidates:
        if v.placement == "skip":
            taken.setdefault(pos, endpoint)
            continue
        probed = 0
        while pos in taken and probed < UPSTREAM_PROBE_LIMIT:
            pos = (pos + 1) % modulus
            probed += 1
        if probed < UPSTREAM_PROBE_LIMIT:
            taken[pos] = endpoint
    return sorted(taken.items())


def _byte_suffix(i: int) -> bytes:
    return bytes((i & 0xFF,))


def _uint32le_suffix(i: int) -> bytes:
    return struct.pack("<I", i)


def _build_upstream(algorithm: str, unique: tuple[str, ...], ordered: list[str]) -> Ring:
    v = UPSTREAM_VARIANTS[canonical_algorithm(algorithm)]
    items = upstream_positions(ordered, variant=v.name)
    index = {ep: i for i, ep in enumerate(unique)}
    # Flatten the ring into one cell per position: the owner is the first
    # item at or after it, wrapping to the first item.
    cells = array("H" if len(unique) <= 0xFFFF else "I", bytes(0))
    item_pos = [p for p, _ in items]
    item_owner = [index[ep] for _, ep in items]
    item_owner.append(item_owner[0])
    cells.extend(item_owner[bisect.bisect_left(item_pos, x)] for x in range(v.max_positions))
    return Ring(algorithm, unique, cells, f"crc32 % {v.max_positions}", _upstream_lookup(cells))


def _upstream_lookup(cells: array[int]) -> Lookup:
    modulus = len(cells)

    def lookup(key: bytes, _c: array[int] = cells, _h: Callable[..., int] = zlib.crc32, _m: int = modulus) -> int:
        return _c[_h(key) % _m]

    return lookup


def _restore_ring(algorithm: str, endpoints: tuple[str, ...], cells: array[int], hash_name: str) -> Ring:
    """Unpickle a ring: the table travels, the lookup function is rebuilt around it."""
    lookup = _ringleader_lookup(cells) if algorithm == "ringleader" else _upstream_lookup(cells)
    return Ring(algorithm, endpoints, cells, hash_name, lookup)
