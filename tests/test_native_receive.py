"""The native receivers: what they do that grpcio and aiohttp could not, and their decoder under fuzzing.

- the decoder through the Python binding (``dataplane._native.decompress``) never panics and never
  returns more than its limit, whatever the bytes (hypothesis: random input and mutated valid bodies);
  valid bodies of every codec round-trip;
- a running data plane: a gRPC client that compresses with gzip past the limit (a bomb) is refused
  RESOURCE_EXHAUSTED and counted; an unknown gRPC method is UNIMPLEMENTED; a gRPC client that cancels
  its call (HTTP/2 RST_STREAM) stops the work on it and is counted ``client_cancelled``; an OTLP/HTTP
  body sent chunked, without a Content-Length, is charged at the size limit and delivered.
"""

from __future__ import annotations

import gzip
import os
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cramjam
import grpc
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.decompress import DecompressError, decompress
from e2e.bench import build_request
from tests.harness import (
    GRPC_METHODS,
    DataPlaneProcess,
    SinkProcess,
    grpc_export,
    running_sinks,
    spans_of,
    static_config,
    trace_request,
    wait_until,
)

LIMIT = 64 * 1024

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "snappy": lambda data: bytes(cramjam.snappy.compress_raw(data)),
    "x-snappy-framed": lambda data: bytes(cramjam.snappy.compress(data)),
}


# ------------------------------------------------------------------ the decoder alone -----


def _decodes_within_the_limit_or_refuses(body: bytes, encoding: str, limit: int) -> bytes | None:
    try:
        out = decompress(body, encoding, limit)
    except DecompressError:
        return None
    assert len(out) <= limit
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=st.sampled_from([*CODECS, "identity"]), body=st.binary(max_size=4096), limit=st.integers(0, 1 << 16))
def test_random_bytes_never_crash_the_decoder_nor_exceed_the_limit(encoding: str, body: bytes, limit: int) -> None:
    _decodes_within_the_limit_or_refuses(body, encoding, limit)


@settings(max_examples=300, deadline=None)
@given(
    encoding=st.sampled_from(list(CODECS)),
    data=st.binary(max_size=2048),
    mutations=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 64),
    tail=st.binary(max_size=16),
)
def test_mutated_valid_bodies_are_decoded_whole_or_refused(
    encoding: str, data: bytes, mutations: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    body = bytearray(CODECS[encoding](data))
    assert decompress(bytes(body), encoding, LIMIT) == data
    for pos, value in mutations if body else []:
        body[pos % len(body)] = value
    mutated = bytes(body[: max(0, len(body) - cut)]) + tail
    _decodes_within_the_limit_or_refuses(mutated, encoding, LIMIT)


@pytest.mark.parametrize("encoding", list(CODECS))
def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not(encoding: str) -> None:
    data = os.urandom(LIMIT // 2) + b"z" * (LIMIT // 2)
    assert decompress(CODECS[encoding](data), encoding, LIMIT) == data
    assert _decodes_within_the_limit_or_refuses(CODECS[encoding](data + b"!"), encoding, LIMIT) is None


# ------------------------------------------------------------------ a running data plane -----


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SinkProcess]]:
    with running_sinks(tmp_path_factory.mktemp("native-receive-sinks"), 2) as started:
        yield started


@pytest.fixture(scope="module")
def dp(tmp_path_factory: pytest.TempPathFactory, sinks: list[SinkProcess]) -> Iterator[DataPlaneProcess]:
    cfg = static_config([s.endpoint for s in sinks])
    protocols = cfg["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["max_recv_msg_size_mib"] = LIMIT / (1 << 20)
    protocols["http"]["max_request_body_size"] = LIMIT
    process = DataPlaneProcess(tmp_path_factory.mktemp("native-receive-dp"), cfg).start()
    yield process
    process.stop()


def _refused(dp: DataPlaneProcess, reason: str) -> float:
    return dp.metric("ringleader_requests_refused_total", signal="traces", reason=reason)


def _span_ids(sinks: list[SinkProcess]) -> set[bytes]:
    return {span_id for sink in sinks for _, span_id, _, _ in spans_of(sink.records())}


def test_a_grpc_gzip_bomb_is_resource_exhausted_and_counted(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    before = _refused(dp, "too_large")
    bomb = trace_request([(os.urandom(16), os.urandom(8))]) + b"\x00" * (16 * LIMIT)
    with (
        grpc.insecure_channel(dp.grpc_endpoint, compression=grpc.Compression.Gzip) as channel,
        pytest.raises(grpc.RpcError) as refusal,
    ):
        channel.unary_unary(GRPC_METHODS["traces"])(bomb, timeout=15)
    assert refusal.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _refused(dp, "too_large") == before + 1
    # Compressed messages within the limit go through.
    spans = [(os.urandom(16), os.urandom(8)) for _ in range(30)]
    with grpc.insecure_channel(dp.grpc_endpoint, compression=grpc.Compression.Gzip) as channel:
        channel.unary_unary(GRPC_METHODS["traces"])(trace_request(spans), timeout=15)
    wait_until(lambda: {sid for _, sid in spans} <= _span_ids(sinks), 30, what="30 gzip-compressed gRPC spans")


def test_an_unknown_grpc_method_is_unimplemented(dp: DataPlaneProcess) -> None:
    with grpc.insecure_channel(dp.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as refusal:
        channel.unary_unary("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export")(
            b"", timeout=15
        )
    assert refusal.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert grpc_export(dp.grpc_endpoint, "traces", trace_request([(os.urandom(16), os.urandom(8))]))[0] == (
        grpc.StatusCode.OK
    )


def test_a_chunked_http_body_without_a_length_is_delivered(dp: DataPlaneProcess, sinks: list[SinkProcess]) -> None:
    spans = [(os.urandom(16), os.urandom(8)) for _ in range(25)]
    body = trace_request(spans)
    chunks = [body[i : i + 100] for i in range(0, len(body), 100)]
    req = urllib.request.Request(
        f"{dp.http_endpoint}/v1/traces",
        data=iter(chunks),
        method="POST",
        headers={"Content-Type": "application/x-protobuf", "Transfer-Encoding": "chunked"},
    )
    with urllib.request.urlopen(req, timeout=15) as resp:
        assert resp.status == 200
    wait_until(lambda: {sid for _, sid in spans} <= _span_ids(sinks), 30, what="the chunked request's spans")


def test_a_grpc_client_that_cancels_its_call_stops_the_export_and_is_counted(tmp_path: Path) -> None:
    slow = SinkProcess(tmp_path, "slow", "--delay", "3").start()
    cfg = static_config(
        [slow.endpoint],
        otlp={"timeout": "30s", "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}},
    )
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        with grpc.insecure_channel(dp.grpc_endpoint) as channel:
            call = channel.unary_unary(GRPC_METHODS["traces"]).future(build_request(seed=3, spans=40), timeout=60)
            # Held while the (slow) export runs: the request's bytes are charged to the budget.
            wait_until(lambda: dp.metric("ringleader_memory_buffered_bytes") > 0, 30, what="the call in progress")
            call.cancel()  # RST_STREAM(CANCEL)
        wait_until(
            lambda: dp.metric("ringleader_items_refused_total", reason="client_cancelled") == 40,
            30,
            what="the cancelled call to be counted",
        )
        wait_until(lambda: dp.metric("ringleader_memory_buffered_bytes") == 0, 30, what="its charge released")
        assert slow.records() == [], "the export went on after the client had cancelled"
    finally:
        dp.stop()
        slow.stop()
