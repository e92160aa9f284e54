"""The wire path: split requests on the protobuf bytes, copying item bytes (see the package docs)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ..wire import (
    MalformedError,
    find_len_field,
    frame,
    iter_len_fields,
    read_tag,
    read_varint,
    skip_field,
)
from ._items import ITEM_COUNTERS, LOG_TRACE_ID_TAG, METRIC_NAME_TAG, SPAN_TRACE_ID_TAG, count_metric_points
from ._keys import log_key, resource_key_bytes, span_key
from ._split import Lookup, Split, validate_only

if TYPE_CHECKING:
    from ..ring import Ring


class WireSplitter:
    """Split requests on the wire format, copying item bytes (see module docs)."""

    ITEM_KEYS = {("traces", "traceID"), ("logs", "traceID"), ("metrics", "metric")}
    RESOURCE_KEYS = {"service", "resource"}

    def __init__(self, signal: str, key: str, rng: random.Random | None = None) -> None:
        if (signal, key) not in self.ITEM_KEYS and key not in self.RESOURCE_KEYS:
            raise ValueError(f"the wire path cannot route {signal} by {key}")
        self.signal = signal
        self.key = key
        self._rng = rng or random.Random()
        self._count_items: Callable[[bytes, int, int], int] = ITEM_COUNTERS[signal]

    def split_ring(self, data: bytes, ring: Ring | None) -> Split:
        return self.split(data, validate_only if ring is None else ring.lookup)

    def split(self, data: bytes, lookup: Lookup) -> Split:
        out: dict[int, list[bytes]] = {}
        counts: dict[int, int] = {}
        missing = 0
        by_resource = self.key in self.RESOURCE_KEYS
        unknown: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            field_start = pos
            tag = data[pos]
            if tag == 0x0A:
                length, start = read_varint(data, pos + 1, end)
            else:
                if tag < 0x80:
                    pos += 1
                    if tag >> 3 == 0:
                        raise MalformedError("field number 0")
                else:
                    # A padded tag can still be a resource group: the runtime reads it as one.
                    tag, pos = read_tag(data, pos, end)
                if tag != 0x0A:
                    # An unknown request field: kept for every part, like unknown fields at every level.
                    pos = skip_field(data, tag & 7, pos, end)
                    unknown.append(data[field_start:pos])
                    continue
                length, start = read_varint(data, pos, end)
            stop = start + length
            if stop > end:
                raise MalformedError("resource group overruns the request")
            if by_resource:
                missing += self._route_resource_group(data, start, stop, field_start, lookup, out, counts)
            else:
                missing += self._split_resource_group(data, start, stop, lookup, out, counts)
            pos = stop
        if unknown:
            tail = b"".join(unknown)
            for chunks in out.values():
                chunks.append(tail)
        parts = {idx: (b"".join(chunks), counts[idx]) for idx, chunks in out.items()}
        return Split(parts, sum(counts.values()), missing)

    # -- resource-level keys: the whole group goes to one backend ----------------------------
    def _route_resource_group(
        self,
        data: bytes,
        start: int,
        stop: int,
        field_start: int,
        lookup: Lookup,
        out: dict[int, list[bytes]],
        counts: dict[int, int],
    ) -> int:
        resource = Resource()
        items = 0
        count_items = self._count_items
        for tag, _fs, ps, pe in iter_len_fields(data, start, stop):
            if tag == 0x0A:
                try:
                    resource.MergeFromString(data[ps:pe])
                except DecodeError as exc:
                    raise MalformedError(f"bad resource: {exc}") from None
            elif tag == 0x12:
                for t, _s, ips, ipe in iter_len_fields(data, ps, pe):
                    if t == 0x12:
                        items += count_items(data, ips, ipe)
        if items == 0:
            return 0
        key, missing = resource_key_bytes(self.signal, self.key, resource)
        idx = lookup(key)
        out.setdefault(idx, []).append(data[field_start:stop])
        counts[idx] = counts.get(idx, 0) + items
        return items if missing else 0

    # -- item-level keys ---------------------------------------------------------------------
    def _split_resource_group(
        self,
        data: bytes,
        start: int,
        stop: int,
        lookup: Lookup,
        out: dict[int, list[bytes]],
        counts: dict[int, int],
    ) -> int:
        head: list[bytes] = []
        tail: list[bytes] = []
        scopes: dict[int, list[bytes]] = {}
        missing = 0
        for tag, fs, ps, pe in iter_len_fields(data, start, stop):
            if tag == 0x12:
                missing += self._split_scope_group(data, ps, pe, lookup, scopes, counts)
            elif tag == 0x0A:
                head.append(data[fs:pe])
            else:
                tail.append(data[fs:pe])
        if scopes:
            head_bytes = b"".join(head)
            tail_bytes = b"".join(tail)
            for idx, frames in scopes.items():
                body_len = len(head_bytes) + len(tail_bytes) + sum(map(len, frames))
                chunk = out.setdefault(idx, [])
                chunk.append(frame(0x0A, body_len))
                chunk.append(head_bytes)
                chunk.extend(frames)
                chunk.append(tail_bytes)
        return missing

    def _split_scope_group(
        self,
        data: bytes,
        pos: int,
        end: int,
        lookup: Lookup,
        scopes: dict[int, list[bytes]],
        counts: dict[int, int],
    ) -> int:
        """Route every item of one scope group; append a scope frame per backend to ``scopes``."""
        head: list[bytes] = []
        tail: list[bytes] = []
        runs: dict[int, list[bytes]] = {}
        missing = 0
        signal = self.signal
        traces = signal == "traces"
        logs = signal == "logs"
        rng = self._rng
        # Consecutive items with the same owner are copied as one slice: spans of a trace
        # usually arrive together, so this cuts the copies by the spans-per-trace factor.
        run_idx = -1
        run_start = pos
        run_items = 0
        last_key = b""
        last_idx = -1
        while pos < end:
            field_start = pos
            tag = data[pos]
            if tag == 0x12:
                b = data[pos + 1] if pos + 1 < end else 0x80
                if b < 0x80:
                    q = pos + 2
                    length = b
                else:
                    length, q = read_varint(data, pos + 1, end)
            else:
                if tag < 0x80:
                    q = pos + 1
                    if tag >> 3 == 0:
                        raise MalformedError("field number 0")
                else:
                    # A padded tag can still be an item: the runtime reads it as one.
                    tag, q = read_tag(data, pos, end)
                if tag != 0x12:
                    # Scope (field 1), schema_url (field 3) or an unknown field: flush the run so
                    # item bytes stay contiguous, then keep the raw field for every output.
                    if run_idx >= 0 and field_start > run_start:
                        runs.setdefault(run_idx, []).append(data[run_start:field_start])
                        counts[run_idx] = counts.get(run_idx, 0) + run_items
                    run_idx = -1
                    run_items = 0
                    pos = skip_field(data, tag & 7, q, end)
                    (head if tag == 0x0A else tail).append(data[field_start:pos])
                    run_start = pos
                    continue
                length, q = read_varint(data, q, end)
            item_end = q + length
            if item_end > end:
                raise MalformedError("item overruns its scope group")
            # --- the routing key of this item -------------------------------------------
            if traces:
                # Fast path: the span starts with its 16-byte trace_id (every serializer writes it first).
                if length >= 18 and data[q] == 0x0A and data[q + 1] == 0x10:
                    if last_idx >= 0 and data.startswith(last_key, q + 2):
                        idx = last_idx
                    else:
                        last_key = data[q + 2 : q + 18]
                        idx = last_idx = lookup(last_key)
                else:
                    found = find_len_field(data, q, item_end, SPAN_TRACE_ID_TAG)
                    tid = data[found[0] : found[1]] if found else b""
                    key, was_missing = span_key(tid)
                    missing += was_missing
                    idx = lookup(key)
                n = 1
            elif logs:
                found = find_len_field(data, q, item_end, LOG_TRACE_ID_TAG)
                key, was_missing = log_key(data[found[0] : found[1]] if found else b"", rng)
                missing += was_missing
                idx = lookup(key)
                n = 1
            else:
                found = find_len_field(data, q, item_end, METRIC_NAME_TAG)
                name = data[found[0] : found[1]] if found else b""
                idx = lookup(name)
                n = count_metric_points(data, q, item_end)
            # --- extend or flush the current run ----------------------------------------
            if idx != run_idx:
                if run_idx >= 0 and field_start > run_start:
                    runs.setdefault(run_idx, []).append(data[run_start:field_start])
                    counts[run_idx] = counts.get(run_idx, 0) + run_items
                run_idx = idx
                run_start = field_start
                run_items = 0
            run_items += n
            pos = item_end
        if run_idx >= 0 and end > run_start:
            runs.setdefault(run_idx, []).append(data[run_start:end])
            counts[run_idx] = counts.get(run_idx, 0) + run_items
        if runs:
            head_bytes = b"".join(head)
            tail_bytes = b"".join(tail)
            for idx, chunks in runs.items():
                body = len(head_bytes) + len(tail_bytes) + sum(map(len, chunks))
                frames = scopes.setdefault(idx, [])
                frames.append(frame(0x12, body))
                frames.append(head_bytes)
                frames.extend(chunks)
                frames.append(tail_bytes)
        return missing
