"""Routing: split one OTLP export request into one request per backend.

Each signal routes by a *routing key* (upstream's semantics):

============  ==========================================================  =====
signal        keys (default first)                                        level
============  ==========================================================  =====
traces        ``traceID`` (16 raw bytes), ``service``, ``attributes``
logs          ``service``, ``traceID`` (32 lowercase hex), ``resource``,
              ``attributes``
metrics       ``service``, ``resource``, ``metric`` (name), ``streamID``,
              ``attributes``
============  ==========================================================  =====

``service`` and ``resource`` are properties of a whole resource group, so the
group is forwarded as it is. ``traceID`` and ``metric`` are read from each item.
``streamID`` and ``attributes`` are decided per data point / per item.

Two implementations exist and are property-tested to agree:

- :class:`WireSplitter` works on the protobuf wire bytes: it reads only the key
  field of each item and copies item bytes verbatim, rebuilding the resource and
  scope frames around them. It serves ``traceID``, ``metric``, ``service`` and
  ``resource``: the hot path.
  The data path runs its native port (:class:`NativeSplitter`, Rust, without the
  interpreter lock); the Python one is what the property tests compare it with.
- :class:`DecodeSplitter` decodes the request with the protobuf runtime and builds
  new messages. It is the reference implementation and serves the keys that need
  the whole data model (``streamID``, ``attributes``).

docs/routing.md lists what the wire path validates and the two documented
differences between the paths (unknown fields of the envelope, a span that repeats
its leading trace ID); tests/test_routing_properties.py and tests/test_wire_fuzz.py
are the evidence.

Rules for missing keys (all counted in ``ringleader_items_missing_key_total``):

- a span without a trace ID is routed as the all-zero trace ID (as upstream does);
  a trace ID that is not 16 bytes makes the request invalid (INVALID_ARGUMENT), as
  the collector's own OTLP receiver would refuse it;
- a log record without a trace ID is routed to a random backend (as upstream);
  one with a trace ID that is not 16 bytes likewise makes the request invalid;
- a resource without ``service.name`` is routed by the empty service name, so
  such data is kept together instead of being dropped as upstream does.

Within a backend's request, resource and scope grouping and item order are those
of the incoming request; an item is never duplicated or lost.
"""

from __future__ import annotations

import random

from ._decode_split import DecodeSplitter
from ._items import count_items
from ._keys import ZERO_TRACE_ID, any_value_to_string, attributes_key, resource_key_bytes, service_name
from ._native_split import NativeSplitter
from ._probe import VALUE_FORMS, UnroutableValueError, key_bytes
from ._split import REQUEST_TYPES, InvalidRequestError, Lookup, Split, Splitter
from ._wire_split import WireSplitter

__all__ = [
    "REQUEST_TYPES",
    "VALUE_FORMS",
    "ZERO_TRACE_ID",
    "DecodeSplitter",
    "InvalidRequestError",
    "Lookup",
    "NativeSplitter",
    "Split",
    "Splitter",
    "UnroutableValueError",
    "WireSplitter",
    "any_value_to_string",
    "attributes_key",
    "count_items",
    "key_bytes",
    "make_splitter",
    "resource_key_bytes",
    "service_name",
]


def make_splitter(
    signal: str, key: str, routing_attributes: tuple[str, ...] = (), rng: random.Random | None = None
) -> Splitter:
    """The splitter for a signal and key: the native wire path where it can serve, else decode.

    ``rng`` (tests) asks for the Python wire path, whose random choices it seeds.
    """
    if (signal, key) in WireSplitter.ITEM_KEYS or key in WireSplitter.RESOURCE_KEYS:
        if rng is not None:
            return WireSplitter(signal, key, rng)
        return NativeSplitter(signal, key)
    return DecodeSplitter(signal, key, routing_attributes, rng)
