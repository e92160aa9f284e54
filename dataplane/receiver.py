"""OTLP receivers: gRPC (default :4317) and HTTP (default :4318, protobuf and JSON).

Both hand the raw request bytes to :class:`~dataplane.balancer.LoadBalancer`
without decoding them (OTLP/JSON is converted to protobuf first). Every outcome
maps to the status OTLP clients understand:

===========================================  ===================  ==========
outcome                                      gRPC                 HTTP
===========================================  ===================  ==========
accepted                                     OK                   200
malformed protobuf / JSON, bad trace ID      INVALID_ARGUMENT     400
larger than the configured limit             RESOURCE_EXHAUSTED   413
one item larger than the export size limit   RESOURCE_EXHAUSTED   413
queue full, no backends, export failed       UNAVAILABLE          503 + Retry-After
signal not enabled in the config             UNIMPLEMENTED        404
unsupported content type / encoding          UNIMPLEMENTED        415
===========================================  ===================  ==========

Each refusal is counted in ``ringleader_items_refused_total{reason}`` (and
``ringleader_requests_refused_total``) and logged at debug level; the process
keeps serving.

The transport is native (``dataplane/native``, ``src/server``): hyper serves
HTTP/2 (gRPC, h2c) and HTTP/1.1 or h2c (OTLP/HTTP) on the data path's own
threads, reads, decompresses (identity, gzip, deflate, zstd, snappy: over gRPC
too) and checks size limits and the memory budget without the interpreter lock.
With the native pipeline (:mod:`dataplane.pipeline`, the usual configuration) a
request that passes those checks is routed and answered natively; only OTLP/JSON
bodies come here, to be converted to protobuf and submitted to the pipeline.
Otherwise a request is handed to this module once (one copy into ``bytes``), on
the asyncio loop, as a ``_native.Call``; :class:`Intake` routes it and the answer
goes back with ``call.respond``. Refusals the transport decides
itself (``too_large``, ``unsupported_media_type``, ``unsupported_encoding``,
``malformed`` compressed bodies, ``memory_limit``) are answered natively and
counted here, like every other refusal.

When the client gives up, the work on its request stops: a gRPC client's
deadline (``grpc-timeout``) bounds every export made on its behalf and the
handler is cancelled when it passes; an HTTP client that disconnects (or a gRPC
client that resets its stream) cancels its handler. Such requests are counted as
refused with reason ``deadline_exceeded`` or ``client_cancelled``. A request that
was admitted but whose client was gone before the answer reached it is counted in
``ringleader_items_at_least_once_total{reason="late_answer"}``: the client
will probably send it again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import json
import logging
import time
from typing import Any

from google.protobuf import json_format

from . import _native
from .balancer import LoadBalancer, RefusedError
from .config_model import GRPCReceiverConfig, HTTPReceiverConfig
from .hostport import listen_address
from .routing import REQUEST_TYPES, InvalidRequestError, count_items
from .telemetry import Telemetry
from .wire import MalformedError

log = logging.getLogger("ringleader.receiver")

HTTP_PATHS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class Code(enum.IntEnum):
    """gRPC status codes the receivers answer with (also in google.rpc.Status bodies)."""

    OK = 0
    CANCELLED = 1
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    RESOURCE_EXHAUSTED = 8
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class _Refusal(Exception):
    def __init__(self, reason: str, code: Code, http: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.http = http


class Intake:
    """What both receivers share: validation, hand-off and the refusal accounting."""

    def __init__(self, balancer: LoadBalancer, telemetry: Telemetry, signals: tuple[str, ...]) -> None:
        self.balancer = balancer
        self.telemetry = telemetry
        self.signals = frozenset(signals)
        self._received = {
            (s, t): telemetry.items_received.labels(signal=s, transport=t)
            for s in REQUEST_TYPES
            for t in ("grpc", "http")
        }

    async def accept(self, signal: str, data: bytes, transport: str, deadline: float | None = None) -> int:
        """Route one request or raise :class:`_Refusal` (already counted); the items taken.

        ``deadline``: the client's, as ``time.monotonic()``. If the client gives up
        meanwhile (this call is cancelled), the refusal is counted and the
        cancellation goes on.
        """
        try:
            return await self._accept(signal, data, transport, deadline)
        except _Refusal:
            raise
        except asyncio.CancelledError:
            detail = f"the {transport} client gave up"
            if self.balancer.stopping:
                reason, detail = "shutting_down", "still in flight when the shutdown grace ended"
            elif deadline is not None and time.monotonic() >= deadline - 0.05:
                reason = "deadline_exceeded"
            else:
                reason = "client_cancelled"
            self._refuse(signal, reason, count_items(signal, data), detail)
            raise
        except Exception as exc:
            # A bug must not look like success or vanish: the client gets INTERNAL (not retried
            # blindly by SDKs), the refusal is counted and the traceback logged; serving goes on.
            log.exception("internal error while handling a %s request", signal)
            self._refuse(signal, "internal_error", count_items(signal, data), repr(exc), transport)
            raise _Refusal("internal_error", Code.INTERNAL, 500, f"internal error: {exc!r}") from None

    def answer_too_late(self, signal: str, items: int, transport: str) -> None:
        """The request was admitted but its client was gone before the answer: it will likely resend."""
        self.telemetry.record_at_least_once(
            signal, "late_answer", items, f"admitted, but the {transport} client had given up before the answer"
        )

    async def _accept(self, signal: str, data: bytes, transport: str, deadline: float | None) -> int:
        if signal not in self.signals:
            self._refuse(
                signal,
                "signal_disabled",
                count_items(signal, data),
                f"{signal} are not enabled in this data plane",
                transport,
            )
            raise _Refusal("signal_disabled", Code.UNIMPLEMENTED, 404, f"{signal} are not enabled")
        try:
            route, split = self.balancer.split(signal, data)
        except MalformedError as exc:
            self._refuse(signal, "malformed", None, str(exc), transport)
            raise _Refusal("malformed", Code.INVALID_ARGUMENT, 400, f"malformed request: {exc}") from None
        except InvalidRequestError as exc:
            self._refuse(signal, exc.reason, count_items(signal, data), str(exc), transport)
            raise _Refusal(exc.reason, Code.INVALID_ARGUMENT, 400, str(exc)) from None
        if split.missing_keys:
            key = self.balancer.splitters[signal].key
            self.telemetry.items_missing_key.labels(signal=signal, key=key).inc(split.missing_keys)
        try:
            await self.balancer.consume(signal, data, route, split, deadline)
        except RefusedError as exc:
            self._refuse(signal, exc.reason, split.items, str(exc), transport)
            if exc.retryable:
                # A wait for room that ran into the client's deadline answers what the client's own timer says.
                late = exc.reason == "deadline_exceeded"
                status = Code.DEADLINE_EXCEEDED if late else Code.UNAVAILABLE
                raise _Refusal(exc.reason, status, 503, str(exc)) from None
            code = Code.__members__.get(exc.code, Code.INTERNAL)
            http = {Code.INVALID_ARGUMENT: 400, Code.RESOURCE_EXHAUSTED: 413}.get(code, 500)
            raise _Refusal(exc.reason, code, http, str(exc)) from None
        self._received[(signal, transport)].inc(split.items)
        return split.items

    def _refuse(self, signal: str, reason: str, items: int | None, detail: str, transport: str = "") -> None:
        self.telemetry.record_refused(signal, reason, items, detail, transport)


# --------------------------------------------------------------------------- receivers -----

MAX_STREAMS_PER_CONNECTION = 32
"""Calls one gRPC client connection may have in progress (HTTP/2 MAX_CONCURRENT_STREAMS;
the native ``server::MAX_STREAMS_PER_CONNECTION``)."""

_ABORT_AFTER_GRACE = 1.0
"""Seconds the native side keeps connections after the grace, so that the answers to the
requests cancelled at its end still reach their clients."""


class _NativeReceiver:
    """One native listener and the tasks handling the calls it hands over."""

    transport = ""

    def __init__(self, intake: Intake, endpoint: str, limit: int) -> None:
        self._intake = intake
        self._endpoint = endpoint
        self._limit = limit
        self._native: _native.Receiver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.port = 0

    async def start(self) -> None:
        host, port = listen_address(self._endpoint)
        self._loop = asyncio.get_running_loop()
        pipeline = self._intake.balancer.native
        self._native = _native.Receiver(
            self.transport,
            host,
            port,
            self._limit,
            self._intake.balancer.budget.native,
            self._loop,
            self._on_request,
            self._on_cancel,
            self._on_refused,
            pipeline=None if pipeline is None else pipeline.native,
        )
        self.port = self._native.port

    async def stop(self, grace: float) -> None:
        """Stop listening now; in-flight requests get ``grace`` seconds, then are cancelled."""
        receiver, loop = self._native, self._loop
        if receiver is None or loop is None:
            return
        self._native = None
        stopped: asyncio.Future[None] = loop.create_future()

        def on_stopped() -> None:
            if not stopped.done():
                stopped.set_result(None)

        receiver.stop(grace + _ABORT_AFTER_GRACE, on_stopped)
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()  # counted shutting_down by Intake.accept
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped, _ABORT_AFTER_GRACE + 1.0)

    def _on_request(self, call: _native.Call) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._serve(call))
        self._tasks[call.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(call.id, None))

    def _on_cancel(self, call_id: int) -> None:
        """The client went away (or its deadline passed) before the answer."""
        task = self._tasks.get(call_id)
        if task is not None and self._loop is not None:
            # Scheduled, not at once: the task's first step (into Intake.accept, which counts the
            # cancellation) is already queued; a task cancelled before it starts counts nothing.
            self._loop.call_soon(task.cancel)

    def _on_refused(self, signal: str, transport: str, reason: str, detail: str, data: bytes | None) -> None:
        items = None if data is None else count_items(signal, data)
        self._intake.telemetry.record_refused(signal, reason, items, detail)

    async def _serve(self, call: _native.Call) -> None:
        signal, transport = call.signal, call.transport
        timeout = call.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            data = call.data
            if call.is_json:
                try:
                    data = otlp_json_to_protobuf(signal, data)
                except MalformedError as exc:
                    self._intake.telemetry.record_refused(signal, "malformed", None, str(exc))
                    raise _Refusal("malformed", Code.INVALID_ARGUMENT, 400, str(exc)) from None
                pipeline = self._intake.balancer.native
                if pipeline is not None:
                    pipeline.submit(call, data)  # answered natively, like every protobuf request
                    return
            items = await self._intake.accept(signal, data, transport, deadline)
        except _Refusal as refusal:
            call.respond(refusal.code, refusal.http, str(refusal))
            return
        except asyncio.CancelledError:
            # The client is gone (nobody to answer) or the shutdown grace ended: it may retry.
            call.respond(Code.UNAVAILABLE, 503, "the data plane is shutting down; retry")
            raise
        if not call.respond(Code.OK, 200, ""):
            self._intake.answer_too_late(signal, items, transport)


class GRPCReceiver(_NativeReceiver):
    """OTLP/gRPC: the three Export services (h2c), taking raw request bytes.

    A message is refused (RESOURCE_EXHAUSTED, ``too_large``) once its header declares more
    than ``max_recv_msg_size``, before any of it is read; decompressed, it is held to the
    same limit. It is charged to the memory budget once read (UNAVAILABLE, ``memory_limit``).
    One connection may have :data:`MAX_STREAMS_PER_CONNECTION` calls in progress; further
    calls wait in the client, with no error.
    """

    transport = "grpc"

    def __init__(self, intake: Intake, cfg: GRPCReceiverConfig) -> None:
        super().__init__(intake, cfg.endpoint, cfg.max_recv_msg_size)
        self.max_streams_per_connection = MAX_STREAMS_PER_CONNECTION


class HTTPReceiver(_NativeReceiver):
    """OTLP/HTTP: POST /v1/traces, /v1/logs, /v1/metrics with protobuf or JSON bodies.

    The body is charged to the memory budget before it is read (an estimate from its
    Content-Length, corrected once decoded); ``shutdown_timeout`` is the default grace of
    :meth:`stop`.
    """

    transport = "http"

    def __init__(self, intake: Intake, cfg: HTTPReceiverConfig, shutdown_timeout: float = 60.0) -> None:
        super().__init__(intake, cfg.endpoint, cfg.max_request_body_size)
        self._shutdown_timeout = shutdown_timeout

    async def stop(self, grace: float | None = None) -> None:
        await super().stop(self._shutdown_timeout if grace is None else grace)


# --------------------------------------------------------------------------- OTLP/JSON -----


def otlp_json_to_protobuf(signal: str, body: bytes) -> bytes:
    """Convert an OTLP/JSON request to protobuf bytes (IDs are hex in OTLP/JSON)."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedError("the JSON body must be an object")
    _hex_ids_to_base64(obj)
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(obj, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise MalformedError(f"invalid OTLP/JSON: {exc}") from None
    return message.SerializeToString()


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise MalformedError(f"{key} is not hex: {value[:40]!r}") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
