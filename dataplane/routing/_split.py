"""What a splitter returns, the protocol every splitter follows, and what makes a request invalid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

if TYPE_CHECKING:
    from ..ring import Ring

Lookup = Callable[[bytes], int]

REQUEST_TYPES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}


class InvalidRequestError(ValueError):
    """The request is well-formed protobuf but violates OTLP (e.g. a 7-byte trace ID)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Split:
    """One request, split: backend index -> (serialized request, item count)."""

    parts: dict[int, tuple[bytes, int]]
    items: int
    missing_keys: int = 0


class Splitter(Protocol):
    signal: str
    key: str

    def split(self, data: bytes, lookup: Lookup) -> Split:
        """Split by any lookup function (tests, tools)."""
        ...

    def split_ring(self, data: bytes, ring: Ring | None) -> Split:
        """Split by a ring, the data path's way; without a ring only validate (every part is 0)."""
        ...


def validate_only(key: bytes) -> int:
    """The lookup used when no ring exists yet: the split only validates the request."""
    return 0
