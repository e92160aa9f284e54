"""The decode path (reference implementation): split by decoding into protobuf messages."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from ..wire import (
    MalformedError,
)
from ._keys import SPAN_KIND_NAMES, any_value_to_string, find_attr, log_key, resource_key_bytes, span_key, stream_id
from ._split import REQUEST_TYPES, InvalidRequestError, Lookup, Split, validate_only

_FIELDS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}


if TYPE_CHECKING:
    from ..ring import Ring


class DecodeSplitter:
    """Split requests by decoding them into protobuf messages (see module docs)."""

    def __init__(
        self,
        signal: str,
        key: str,
        routing_attributes: tuple[str, ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.signal = signal
        self.key = key
        self.attrs = routing_attributes
        self._rng = rng or random.Random()
        self._type = REQUEST_TYPES[signal]

    def split_ring(self, data: bytes, ring: Ring | None) -> Split:
        return self.split(data, validate_only if ring is None else ring.lookup)

    def split(self, data: bytes, lookup: Lookup) -> Split:
        request = self._type()
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise MalformedError(str(exc) or "cannot decode request") from None
        outs: dict[int, Any] = {}
        counts: dict[int, int] = {}
        missing = 0
        groups_field, scopes_field, items_field = _FIELDS[self.signal]
        for group in getattr(request, groups_field):
            if self.signal != "metrics" and self.key != "traceID":
                _check_trace_ids(self.signal, group)
            if self.key in ("service", "resource"):
                items = _count_group(self.signal, group)
                if items == 0:
                    continue
                key, key_missing = resource_key_bytes(self.signal, self.key, group.resource)
                missing += items if key_missing else 0
                idx = lookup(key)
                out = outs.setdefault(idx, self._type())
                getattr(out, groups_field).add().CopyFrom(group)
                counts[idx] = counts.get(idx, 0) + items
                continue
            group_outs: dict[int, Any] = {}
            for scope in getattr(group, scopes_field):
                scope_outs: dict[int, Any] = {}
                for item in getattr(scope, items_field):
                    for idx, piece, n, was_missing in self._route_item(group, scope, item, lookup):
                        missing += was_missing
                        target = scope_outs.get(idx)
                        if target is None:
                            g = group_outs.get(idx)
                            if g is None:
                                out = outs.setdefault(idx, self._type())
                                g = getattr(out, groups_field).add()
                                # Copy presence too: an absent resource or scope stays absent.
                                if group.HasField("resource"):
                                    g.resource.CopyFrom(group.resource)
                                g.schema_url = group.schema_url
                                group_outs[idx] = g
                            target = getattr(g, scopes_field).add()
                            if scope.HasField("scope"):
                                target.scope.CopyFrom(scope.scope)
                            target.schema_url = scope.schema_url
                            scope_outs[idx] = target
                        getattr(target, items_field).add().CopyFrom(piece)
                        counts[idx] = counts.get(idx, 0) + n
        parts = {idx: (msg.SerializeToString(), counts[idx]) for idx, msg in outs.items()}
        return Split(parts, sum(counts.values()), missing)

    def _route_item(self, group: Any, scope: Any, item: Any, lookup: Lookup) -> list[tuple[int, Any, int, int]]:
        """Where one item goes: a list of (backend, item or item fragment, items, missing)."""
        signal, key = self.signal, self.key
        if signal == "traces" and key == "traceID":
            k, miss = span_key(item.trace_id)
            return [(lookup(k), item, 1, int(miss))]
        if signal == "logs" and key == "traceID":
            k, miss = log_key(item.trace_id, self._rng)
            return [(lookup(k), item, 1, int(miss))]
        if signal == "metrics" and key == "metric":
            return [(lookup(item.name.encode()), item, _count_points(item), 0)]
        if signal == "metrics":  # streamID or attributes: per data point
            return self._route_points(group, scope, item, lookup)
        # attributes for spans and log records
        k = self._attributes_key(group, scope, item)
        return [(lookup(k), item, 1, 0)]

    def _attributes_key(self, group: Any, scope: Any, item: Any, point_attrs: Any = None) -> bytes:
        parts: list[str] = []
        for name in self.attrs:
            value = find_attr(group.resource.attributes, name)
            if value is None:
                value = find_attr(scope.scope.attributes, name)
            if value is None and point_attrs is None:
                value = self._pseudo_attr(item, name)
                if value is None:
                    value = find_attr(item.attributes, name)
            elif value is None:
                value = find_attr(point_attrs, name)
            parts.append(f"{name}={value if value is not None else ''}|")
        return "".join(parts).encode()

    def _pseudo_attr(self, item: Any, name: str) -> str | None:
        if self.signal == "traces":
            if name == "span.kind":
                return SPAN_KIND_NAMES.get(item.kind, str(item.kind))
            if name == "span.name":
                return str(item.name)
        elif self.signal == "logs":
            if name == "log.severity":
                return str(item.severity_text)
            if name == "log.body":
                return any_value_to_string(item.body)
        return None

    def _route_points(self, group: Any, scope: Any, metric: Any, lookup: Lookup) -> list[tuple[int, Any, int, int]]:
        kind = metric.WhichOneof("data")
        if kind is None:
            return [(lookup(metric.name.encode()), metric, 0, 0)]
        container = getattr(metric, kind)
        by_idx: dict[int, Any] = {}
        order: list[int] = []
        counts: dict[int, int] = {}
        for point in container.data_points:
            if self.key == "streamID":
                k = stream_id(group, scope, metric, kind, point)
            else:
                k = self._attributes_key(group, scope, metric, point_attrs=point.attributes)
            idx = lookup(k)
            piece = by_idx.get(idx)
            if piece is None:
                piece = type(metric)()
                piece.CopyFrom(metric)
                getattr(piece, kind).ClearField("data_points")
                by_idx[idx] = piece
                order.append(idx)
            getattr(piece, kind).data_points.add().CopyFrom(point)
            counts[idx] = counts.get(idx, 0) + 1
        return [(idx, by_idx[idx], counts[idx], 0) for idx in order]


def _check_trace_ids(signal: str, group: Any) -> None:
    """Refuse a trace ID that is neither empty nor 16 bytes, as the collector's receiver would."""
    _, scopes_field, items_field = _FIELDS[signal]
    for scope in getattr(group, scopes_field):
        for item in getattr(scope, items_field):
            if len(item.trace_id) not in (0, 16):
                what = "span" if signal == "traces" else "log record"
                raise InvalidRequestError(
                    "invalid_trace_id", f"{what} trace_id has {len(item.trace_id)} bytes, expected 16"
                )


def _count_points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def _count_group(signal: str, group: Any) -> int:
    _, scopes_field, items_field = _FIELDS[signal]
    if signal == "metrics":
        return sum(_count_points(m) for s in getattr(group, scopes_field) for m in s.metrics)
    return sum(len(getattr(s, items_field)) for s in getattr(group, scopes_field))
