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
queue full, no backends, export failed       UNAVAILABLE          503 + Retry-After
signal not enabled in the config             UNIMPLEMENTED        404
unsupported content type / encoding          --                   415
===========================================  ===================  ==========

Each refusal is counted in ``ringleader_items_refused_total{reason}`` (and
``ringleader_requests_refused_total``) and logged at debug level; the process
keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format

from .balancer import LoadBalancer, RefusedError
from .config_model import GRPCReceiverConfig, HTTPReceiverConfig
from .decompress import BodyTooLargeError, DecompressError, UnsupportedEncodingError, decompress
from .exporter import METHODS
from .hostport import listen_address
from .routing import REQUEST_TYPES, InvalidRequestError, count_items
from .telemetry import Telemetry
from .wire import MalformedError, encode_varint

log = logging.getLogger("ringleader.receiver")

HTTP_PATHS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

# gRPC status codes as numbers, for google.rpc.Status bodies.
_CODE_NUMBERS = {"INVALID_ARGUMENT": 3, "RESOURCE_EXHAUSTED": 8, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14}


class _Refusal(Exception):
    def __init__(self, reason: str, code: grpc.StatusCode, http: int, message: str) -> None:
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

    async def accept(self, signal: str, data: bytes, transport: str) -> None:
        """Route one request or raise :class:`_Refusal` (already counted)."""
        try:
            await self._accept(signal, data, transport)
        except (_Refusal, asyncio.CancelledError):
            raise
        except Exception as exc:
            # A bug must not look like success or vanish: the client gets INTERNAL (not retried
            # blindly by SDKs), the refusal is counted and the traceback logged; serving goes on.
            log.exception("internal error while handling a %s request", signal)
            self._refuse(signal, "internal_error", count_items(signal, data), repr(exc), transport)
            raise _Refusal("internal_error", grpc.StatusCode.INTERNAL, 500, f"internal error: {exc!r}") from None

    async def _accept(self, signal: str, data: bytes, transport: str) -> None:
        if signal not in self.signals:
            self._refuse(
                signal,
                "signal_disabled",
                count_items(signal, data),
                f"{signal} are not enabled in this data plane",
                transport,
            )
            raise _Refusal("signal_disabled", grpc.StatusCode.UNIMPLEMENTED, 404, f"{signal} are not enabled")
        try:
            route, split = self.balancer.split(signal, data)
        except MalformedError as exc:
            self._refuse(signal, "malformed", 0, str(exc), transport)
            raise _Refusal("malformed", grpc.StatusCode.INVALID_ARGUMENT, 400, f"malformed request: {exc}") from None
        except InvalidRequestError as exc:
            self._refuse(signal, exc.reason, count_items(signal, data), str(exc), transport)
            raise _Refusal(exc.reason, grpc.StatusCode.INVALID_ARGUMENT, 400, str(exc)) from None
        if split.missing_keys:
            key = self.balancer.splitters[signal].key
            self.telemetry.items_missing_key.labels(signal=signal, key=key).inc(split.missing_keys)
        try:
            await self.balancer.consume(signal, data, route, split)
        except RefusedError as exc:
            self._refuse(signal, exc.reason, split.items, str(exc), transport)
            if exc.retryable:
                raise _Refusal(exc.reason, grpc.StatusCode.UNAVAILABLE, 503, str(exc)) from None
            code = getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL)
            raise _Refusal(
                exc.reason, code, 400 if code == grpc.StatusCode.INVALID_ARGUMENT else 500, str(exc)
            ) from None
        self._received[(signal, transport)].inc(split.items)

    def refuse_too_large(self, signal: str, size: int, limit: int) -> _Refusal:
        message = f"request of {size} bytes exceeds the limit of {limit} bytes"
        self._refuse(signal, "too_large", 0, message)
        return _Refusal("too_large", grpc.StatusCode.RESOURCE_EXHAUSTED, 413, message)

    def _refuse(self, signal: str, reason: str, items: int, detail: str, transport: str = "") -> None:
        self.telemetry.record_refused(signal, reason, items, detail, transport)


# --------------------------------------------------------------------------- gRPC -----


class GRPCReceiver:
    """OTLP/gRPC: the three Export services, taking raw request bytes."""

    def __init__(self, intake: Intake, cfg: GRPCReceiverConfig) -> None:
        self._intake = intake
        self._cfg = cfg
        # Let grpc accept somewhat more than the limit so that oversize requests reach us and
        # are counted; beyond this hard cap grpc itself refuses them (RESOURCE_EXHAUSTED).
        hard_cap = max(2 * cfg.max_recv_msg_size, cfg.max_recv_msg_size + (1 << 20))
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", hard_cap),
                ("grpc.max_send_message_length", 4 << 20),
                ("grpc.so_reuseport", 0),
            ]
        )
        for signal, method in METHODS.items():
            service, _, name = method[1:].rpartition("/")
            handler = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {name: handler}),))
        self.port = self.server.add_insecure_port(cfg.endpoint)
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.endpoint} for OTLP/gRPC")

    def _handler(self, signal: str) -> Any:
        intake = self._intake
        limit = self._cfg.max_recv_msg_size

        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            try:
                if len(request) > limit:
                    raise intake.refuse_too_large(signal, len(request), limit)
                await intake.accept(signal, request, "grpc")
            except _Refusal as refusal:
                await context.abort(refusal.code, str(refusal))
            return b""  # an empty Export*ServiceResponse: full success

        return export

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


# --------------------------------------------------------------------------- HTTP -----


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


def _status_body(code: int, message: str, as_json: bool) -> bytes:
    """A google.rpc.Status, the error body OTLP/HTTP specifies."""
    if as_json:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + encode_varint(code) + b"\x12" + encode_varint(len(text)) + text


def _decompress_refusal(exc: DecompressError) -> _Refusal:
    if isinstance(exc, UnsupportedEncodingError):
        return _Refusal("unsupported_encoding", grpc.StatusCode.INVALID_ARGUMENT, 415, str(exc))
    if isinstance(exc, BodyTooLargeError):
        return _Refusal("too_large", grpc.StatusCode.RESOURCE_EXHAUSTED, 413, str(exc))
    return _Refusal("malformed", grpc.StatusCode.INVALID_ARGUMENT, 400, str(exc))


class HTTPReceiver:
    """OTLP/HTTP: POST /v1/traces, /v1/logs, /v1/metrics with protobuf or JSON bodies."""

    def __init__(self, intake: Intake, cfg: HTTPReceiverConfig) -> None:
        self._intake = intake
        self._cfg = cfg
        self.app = web.Application(client_max_size=cfg.max_request_body_size)
        for path in HTTP_PATHS:
            self.app.router.add_post(path, self._handle)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        host, port = listen_address(self._cfg.endpoint)
        # aiohttp would inflate gzip/deflate bodies itself, unbounded: leave it to
        # dataplane.decompress, which is bounded by the size limit and knows zstd and snappy too.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        signal = HTTP_PATHS[request.path]
        content_type = request.content_type
        as_json = content_type == "application/json"
        limit = self._cfg.max_request_body_size
        try:
            if content_type not in ("application/x-protobuf", "application/json"):
                self._intake.telemetry.record_refused(signal, "unsupported_media_type", 0, content_type)
                raise _Refusal(
                    "unsupported_media_type",
                    grpc.StatusCode.INVALID_ARGUMENT,
                    415,
                    f"unsupported Content-Type {content_type!r}",
                )
            if request.content_length is not None and request.content_length > limit:
                raise self._intake.refuse_too_large(signal, request.content_length, limit)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise self._intake.refuse_too_large(signal, limit + 1, limit) from None
            try:
                body = decompress(body, request.headers.get("Content-Encoding", ""), limit)
                data = otlp_json_to_protobuf(signal, body) if as_json else body
            except DecompressError as exc:
                refusal = _decompress_refusal(exc)
                self._intake.telemetry.record_refused(signal, refusal.reason, None, str(refusal))
                raise refusal from None
            except MalformedError as exc:
                self._intake.telemetry.record_refused(signal, "malformed", 0, str(exc))
                raise _Refusal("malformed", grpc.StatusCode.INVALID_ARGUMENT, 400, str(exc)) from None
            except _Refusal as refusal:
                self._intake.telemetry.record_refused(signal, refusal.reason, 0, str(refusal))
                raise
            await self._intake.accept(signal, data, "http")
        except _Refusal as refusal:
            headers = {"Retry-After": "1"} if refusal.http == 503 else {}
            return web.Response(
                status=refusal.http,
                body=_status_body(_CODE_NUMBERS.get(refusal.code.name, 13), str(refusal), as_json),
                content_type="application/json" if as_json else "application/x-protobuf",
                headers=headers,
            )
        if as_json:
            return web.Response(body=b"{}", content_type="application/json")
        return web.Response(body=b"", content_type="application/x-protobuf")
