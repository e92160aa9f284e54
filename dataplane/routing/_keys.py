"""Routing keys, built exactly as upstream builds them (shared by both splitters)."""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ._split import InvalidRequestError

ZERO_TRACE_ID = bytes(16)

SPAN_KIND_NAMES = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}


def any_value_to_string(value: AnyValue) -> str:
    """Render an attribute value the way upstream builds attribute routing keys."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _go_float(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "kvlist_value":
        items = sorted((kv.key, any_value_to_string(kv.value)) for kv in value.kvlist_value.values)
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if kind == "array_value":
        return "[" + ",".join(any_value_to_string(v) for v in value.array_value.values) + "]"
    return ""


def _go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64): shortest digits; exponent form when exp < -4 or >= 6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    # repr() gives the shortest digits that round-trip, like Go's shortest mode.
    mantissa, _, exp_text = f"{abs(x)!r}".partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    leading_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    dp = len(int_part) - leading_zeros + (int(exp_text) if exp_text else 0)
    digits = digits.rstrip("0") or "0"
    exp = dp - 1
    if exp < -4 or exp >= _GO_SHORTEST_EPREC:
        head, tail = digits[0], digits[1:]
        return f"{sign}{head}{'.' + tail if tail else ''}e{exp:+03d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


# strconv uses precision 6 to choose between %e and %f in shortest mode (fmt.Println(1e6) = 1e+06).
_GO_SHORTEST_EPREC = 6


def attributes_key(attributes: Iterable[KeyValue]) -> str:
    """A canonical string for a set of attributes: sorted, so order does not matter."""
    return "|".join(sorted(f"{kv.key}={any_value_to_string(kv.value)}" for kv in attributes))


def service_name(resource: Resource) -> str | None:
    found: str | None = None
    for kv in resource.attributes:
        if kv.key == "service.name":
            found = kv.value.string_value if kv.value.HasField("string_value") else any_value_to_string(kv.value)
    return found


def resource_key_bytes(signal: str, key: str, resource: Resource) -> tuple[bytes, bool]:
    """Routing key of a whole resource group for ``service``/``resource``; (key, missing).

    Traces use upstream's attribute-key form (``service.name=<value>|``, ``service.name=|``
    when absent) so that the ``upstream`` ring algorithm routes exactly like upstream
    collectors in a mixed fleet; logs and metrics hash the bare service name as upstream.
    """
    if key == "service":
        name = service_name(resource)
        if signal == "traces":
            return f"service.name={name or ''}|".encode(), name is None
        return (name or "").encode(), name is None
    return ("resource/" + attributes_key(resource.attributes)).encode(), False


def log_key(trace_id: bytes, rng: random.Random) -> tuple[bytes, bool]:
    if not trace_id:
        return rng.getrandbits(64).to_bytes(8, "little"), True
    if len(trace_id) != 16:
        raise InvalidRequestError("invalid_trace_id", f"log record trace_id has {len(trace_id)} bytes, expected 16")
    return trace_id.hex().encode(), False


def span_key(trace_id: bytes) -> tuple[bytes, bool]:
    if not trace_id:
        return ZERO_TRACE_ID, True
    if len(trace_id) != 16:
        raise InvalidRequestError("invalid_trace_id", f"span trace_id has {len(trace_id)} bytes, expected 16")
    return trace_id, False


def find_attr(attributes: Any, name: str) -> str | None:
    found: str | None = None
    for kv in attributes:
        if kv.key == name:
            found = any_value_to_string(kv.value)
    return found


def stream_id(group: Any, scope: Any, metric: Any, kind: str, point: Any) -> bytes:
    """Identity of a metric stream: resource, scope, metric identity and point attributes."""
    ident = {
        "r": attributes_key(group.resource.attributes),
        "s": [scope.scope.name, scope.scope.version, attributes_key(scope.scope.attributes)],
        "m": [metric.name, metric.unit, kind],
        "p": attributes_key(point.attributes),
    }
    container = getattr(metric, kind)
    if kind in ("sum", "histogram", "exponential_histogram"):
        ident["t"] = container.aggregation_temporality
    if kind == "sum":
        ident["mono"] = container.is_monotonic
    return json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()
