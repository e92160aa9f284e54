"""A real OTLP/gRPC backend for tests, the demo and benchmarks.

Runs as its own process (so tests can kill and restart it) and appends every
request it accepts to a record file, which survives restarts::

    python -m e2e.sink --port 0 --record /tmp/b1.rec --port-file /tmp/b1.port

Record format: per request, ``<signal byte><4-byte little-endian length><payload>``
written with one ``write`` call. :func:`read_records` parses the file back.

Failure injection for tests: ``--fail-first N`` answers UNAVAILABLE (or
``--fail-code CODE``) to the first N requests, ``--delay S`` sleeps before answering, ``--reject-all CODE`` answers
every request with that status code. ``--slow-first N`` applies ``--delay`` to the
first N requests only (0: to all). ``--respond-delay S`` records the request and
then waits S seconds before answering (a response that may be lost: the sender
times out although the data arrived). ``--retry-info S`` attaches a
``google.rpc.RetryInfo`` (delay S) to the injected failures.
``--max-recv-msg-size BYTES`` sets the gRPC receive limit (default 64 MiB; a
collector's default is 4 MiB). ``--count-only`` records nothing (benchmarks).
``--arrivals FILE`` appends a line per request as it arrives (before any delay).
``--timing FILE`` appends ``<start_ns> <end_ns>`` (CLOCK_MONOTONIC, comparable across
processes) per request, so tests can check which exports overlapped in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

SIGNAL_CODES = {"traces": b"T", "logs": b"L", "metrics": b"M"}
CODE_SIGNALS = {v[0]: k for k, v in SIGNAL_CODES.items()}
SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}


def read_records(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(signal, request bytes) for every request a sink accepted, in arrival order."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    pos = 0
    while pos + 5 <= len(data):
        code = data[pos]
        (length,) = struct.unpack_from("<I", data, pos + 1)
        if pos + 5 + length > len(data):
            break  # a record cut short by a kill -9 mid-write: the request was never acknowledged
        yield CODE_SIGNALS[code], data[pos + 5 : pos + 5 + length]
        pos += 5 + length


class Sink:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.requests = 0
        self.fd = os.open(args.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if args.record else None

    def handler(self, signal_name: str) -> grpc.RpcMethodHandler:
        code = SIGNAL_CODES[signal_name]

        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
            started = time.monotonic_ns()
            if self.args.arrivals:
                with open(self.args.arrivals, "a") as f:
                    f.write(f"{started}\n")
            try:
                return await handle(request, context)
            finally:
                if self.args.timing:
                    with open(self.args.timing, "a") as f:
                        f.write(f"{started} {time.monotonic_ns()}\n")

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
            self.requests += 1
            number = self.requests
            if self.args.delay and (not self.args.slow_first or number <= self.args.slow_first):
                await asyncio.sleep(self.args.delay)
            if number <= self.args.fail_first:
                status = getattr(grpc.StatusCode, self.args.fail_code)
                metadata = _retry_info(status, self.args.retry_info) if self.args.retry_info else ()
                await context.abort(status, "injected failure", trailing_metadata=metadata)
            if self.args.reject_all:
                status = getattr(grpc.StatusCode, self.args.reject_all)
                metadata = _retry_info(status, self.args.retry_info) if self.args.retry_info else ()
                await context.abort(status, "injected rejection", trailing_metadata=metadata)
            if self.fd is not None:
                os.write(self.fd, code + struct.pack("<I", len(request)) + request)
            if self.args.respond_delay and (not self.args.slow_first or number <= self.args.slow_first):
                await asyncio.sleep(self.args.respond_delay)
            return b""

        return grpc.unary_unary_rpc_method_handler(export)

    async def run(self) -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", self.args.max_recv_msg_size)])
        for signal_name, service in SERVICES.items():
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": self.handler(signal_name)}),)
            )
        port = server.add_insecure_port(f"{self.args.host}:{self.args.port}")
        await server.start()
        if self.args.port_file:
            tmp = self.args.port_file + ".tmp"
            Path(tmp).write_text(str(port))
            os.replace(tmp, self.args.port_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(0.5)


def _retry_info(status: grpc.StatusCode, delay: float) -> tuple[tuple[str, bytes], ...]:
    """``grpc-status-details-bin`` carrying a google.rpc.Status with a RetryInfo detail."""
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(delay * 1e9))
    detail = status_pb2.Status(code=status.value[0], message="injected rejection")
    detail.details.add().Pack(info)
    return (("grpc-status-details-bin", detail.SerializeToString()),)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", default="")
    parser.add_argument("--record", default="")
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--reject-all", default="")
    parser.add_argument("--timing", default="")
    parser.add_argument("--fail-code", default="UNAVAILABLE")
    parser.add_argument("--arrivals", default="")
    parser.add_argument("--slow-first", type=int, default=0)
    parser.add_argument("--respond-delay", type=float, default=0.0)
    parser.add_argument("--retry-info", type=float, default=0.0)
    parser.add_argument("--max-recv-msg-size", type=int, default=64 << 20)
    args = parser.parse_args()
    if args.count_only:
        args.record = ""
    asyncio.run(Sink(args).run())


if __name__ == "__main__":
    main()
