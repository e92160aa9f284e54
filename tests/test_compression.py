"""Compressed OTLP/HTTP bodies: every encoding clients use is decoded completely, or refused.

Three layers of evidence:

- :mod:`dataplane.decompress` on its own: multi-member gzip and multi-frame zstd are
  decoded whole; truncated bodies and trailing bytes are refused; every encoding's
  "zip bomb" stops at the limit; snappy's block and framing formats both work;
- a running data plane over HTTP: each encoding's spans all reach the backends, a
  truncated gzip body is answered 400 and none of its spans are delivered;
- the real upstream collector (v0.161, ``e2e/build_otelcol.sh``) as the client: its
  ``otlp_http`` exporter with ``compression: zstd`` and ``compression: snappy`` sends
  telemetrygen's spans through Ringleader, and every span arrives.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cramjam
import pytest
import zstandard

from dataplane.decompress import (
    BodyTooLargeError,
    CorruptBodyError,
    UnsupportedEncodingError,
    decompress,
)
from dataplane.telemetry import Telemetry
from tests.harness import (
    DataPlaneProcess,
    SinkProcess,
    http_post,
    running_sinks,
    spans_of,
    static_config,
    trace_request,
    wait_until,
)

LIMIT = 64 * 1024


def _snappy_block(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def _snappy_framed(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress(data))


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": _zstd,
    "snappy": _snappy_block,
}


# ------------------------------------------------------------------ the module alone -----


@pytest.mark.parametrize("encoding", [*COMPRESSORS, "snappy-framed"])
def test_each_encoding_round_trips(encoding: str) -> None:
    data = os.urandom(3000) + b"x" * 5000
    compress = _snappy_framed if encoding == "snappy-framed" else COMPRESSORS[encoding]
    assert decompress(compress(data), encoding.split("-")[0], LIMIT) == data


def test_every_member_of_a_multi_member_gzip_body_is_decoded() -> None:
    assert decompress(gzip.compress(b"first,") + gzip.compress(b"second"), "gzip", LIMIT) == b"first,second"


def test_every_frame_of_a_multi_frame_zstd_body_is_decoded() -> None:
    assert decompress(_zstd(b"first,") + _zstd(b"second"), "zstd", LIMIT) == b"first,second"


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        # Without its 8-byte trailer the deflate data is complete: zlib would return it all quietly.
        ("gzip", gzip.compress(b"a" * 1000)[:-8]),
        ("gzip", gzip.compress(b"a" * 1000)[:-20]),
        ("gzip", gzip.compress(b"a") + b"garbage"),
        ("gzip", gzip.compress(b"a") + gzip.compress(b"b")[:-3]),
        ("deflate", zlib.compress(b"a" * 1000)[:-2]),
        ("deflate", zlib.compress(b"a") + b"garbage"),
        ("zstd", _zstd(os.urandom(1000))[:-5]),
        ("zstd", _zstd(b"a") + b"garbage"),
        ("snappy", _snappy_block(b"a" * 1000)[:-3]),
        ("snappy", _snappy_framed(b"a" * 1000)[:-3]),
        ("snappy", b"\xff\xff\xff\xff\xff\xff"),
    ],
    ids=[
        "gzip-no-trailer",
        "gzip-cut",
        "gzip-trailing-bytes",
        "gzip-second-member-cut",
        "deflate-cut",
        "deflate-trailing-bytes",
        "zstd-cut",
        "zstd-trailing-bytes",
        "snappy-block-cut",
        "snappy-framed-cut",
        "snappy-bad-preamble",
    ],
)
def test_a_truncated_or_corrupt_body_is_refused_not_cut_short(encoding: str, body: bytes) -> None:
    with pytest.raises(CorruptBodyError):
        decompress(body, encoding, LIMIT)


@pytest.mark.parametrize("encoding", [*COMPRESSORS, "snappy-framed"])
def test_a_small_body_that_expands_past_the_limit_is_too_large(encoding: str) -> None:
    compress = _snappy_framed if encoding == "snappy-framed" else COMPRESSORS[encoding]
    bomb = compress(b"\x00" * (8 * LIMIT))
    assert len(bomb) < LIMIT
    with pytest.raises(BodyTooLargeError):
        decompress(bomb, encoding.split("-")[0], LIMIT)


def test_an_unknown_encoding_is_unsupported_and_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedEncodingError, match="gzip, deflate, zstd, snappy"):
        decompress(b"x", "br", LIMIT)
    assert decompress(b"x", " Identity ", LIMIT) == b"x"


def test_the_refusal_summary_reports_each_interval_s_own_causes_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry()
    with caplog.at_level(logging.WARNING, logger="ringleader.telemetry"):
        telemetry.record_refused("traces", "unsupported_encoding", None, "unsupported Content-Encoding 'zstd'")
        for _ in range(3):
            telemetry.record_refused("traces", "unsupported_encoding", None, "unsupported Content-Encoding 'snappy'")
        telemetry.record_refused("traces", "unsupported_encoding", 7, "unsupported Content-Encoding 'br'")
        telemetry.flush_logs()
    first, summary = caplog.messages
    assert "'zstd'" in first
    assert "'snappy' (x3)" in summary and "'br' (x1)" in summary and "'zstd'" not in summary
    assert "refused 7 traces item(s) in 4 request(s) (3 of them with items that could not be counted)" in summary


# ------------------------------------------------------------------ a running data plane -----


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SinkProcess]]:
    with running_sinks(tmp_path_factory.mktemp("compression-sinks"), 2) as started:
        yield started


@pytest.fixture(scope="module")
def dp(tmp_path_factory: pytest.TempPathFactory, sinks: list[SinkProcess]) -> Iterator[DataPlaneProcess]:
    cfg = static_config([s.endpoint for s in sinks])
    cfg["receivers"]["otlp"]["protocols"]["http"]["max_request_body_size"] = LIMIT
    process = DataPlaneProcess(tmp_path_factory.mktemp("compression-dp"), cfg).start()
    yield process
    process.stop()


def _span_ids(sinks: list[SinkProcess]) -> list[bytes]:
    return [span_id for sink in sinks for _, span_id, _, _ in spans_of(sink.records())]


def _ids(n: int) -> list[tuple[bytes, bytes]]:
    return [(os.urandom(16), os.urandom(8)) for _ in range(n)]


@pytest.mark.parametrize("encoding", [*COMPRESSORS, "snappy-framed"])
def test_compressed_requests_are_delivered_whole(dp: DataPlaneProcess, sinks: list[SinkProcess], encoding: str) -> None:
    compress = _snappy_framed if encoding == "snappy-framed" else COMPRESSORS[encoding]
    spans = _ids(50)
    body = compress(trace_request(spans))
    status, _, reply = http_post(
        f"{dp.http_endpoint}/v1/traces", body, headers={"Content-Encoding": encoding.split("-")[0]}
    )
    assert status == 200, reply
    wanted = {sid for _, sid in spans}
    wait_until(lambda: wanted <= set(_span_ids(sinks)), 30, what=f"50 {encoding} spans at the backends")


def test_a_multi_member_gzip_body_delivers_the_spans_of_every_member(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    # OTLP messages concatenate on the wire: two members are one request with both halves' spans.
    first, second = _ids(20), _ids(20)
    body = gzip.compress(trace_request(first)) + gzip.compress(trace_request(second))
    status, _, reply = http_post(f"{dp.http_endpoint}/v1/traces", body, headers={"Content-Encoding": "gzip"})
    assert status == 200, reply
    wanted = {sid for _, sid in first + second}
    wait_until(lambda: wanted <= set(_span_ids(sinks)), 30, what="the spans of both gzip members")


def test_a_truncated_gzip_body_is_400_counted_and_none_of_its_spans_delivered(
    dp: DataPlaneProcess, sinks: list[SinkProcess]
) -> None:
    before = dp.metric("ringleader_requests_refused_total", signal="traces", reason="malformed")
    spans = _ids(20)
    body = gzip.compress(trace_request(spans))[:-8]  # the spans are all there, the trailer is not
    status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", body, headers={"Content-Encoding": "gzip"})
    assert status == 400
    assert dp.metric("ringleader_requests_refused_total", signal="traces", reason="malformed") == before + 1
    # A request sent after it is delivered: had the truncated one been taken, its spans would be there too.
    after = _ids(5)
    assert http_post(f"{dp.http_endpoint}/v1/traces", trace_request(after))[0] == 200
    wait_until(lambda: {sid for _, sid in after} <= set(_span_ids(sinks)), 30, what="the next request's spans")
    assert not {sid for _, sid in spans} & set(_span_ids(sinks))


# ------------------------------------------------------------------ the upstream collector as client -----


@pytest.mark.parametrize("compression", ["zstd", "snappy", "gzip"])
def test_upstream_otlp_http_exporter_compression_reaches_the_backends(
    tmp_path: Path, dp: DataPlaneProcess, sinks: list[SinkProcess], compression: str
) -> None:
    from e2e.otelcol import Collector, ensure_binaries, free_port, run_telemetrygen

    bin_dir = ensure_binaries()
    grpc_port = free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
        "exporters": {
            "otlp_http": {
                "endpoint": dp.http_endpoint,
                "compression": compression,
                "retry_on_failure": {"enabled": False},
            }
        },
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_http"]}}},
    }
    before = len(_span_ids(sinks))
    service = f"compressed-{compression}"
    with Collector(config, tmp_path, bin_dir=bin_dir):
        run_telemetrygen(
            ["traces", "--otlp-endpoint", f"127.0.0.1:{grpc_port}", "--otlp-insecure", "--traces", "40",
             "--rate", "200", "--service", service],
            bin_dir=bin_dir,
        )  # fmt: skip
        # telemetrygen's traces have 2 spans each (a parent and one child).
        wait_until(lambda: len(_span_ids(sinks)) - before >= 80, 60, what=f"80 spans sent with {compression}")
    services = [svc for sink in sinks for _, _, svc, _ in spans_of(sink.records()) if svc == service]
    assert len(services) == 80
    assert dp.metric("ringleader_requests_refused_total", reason="unsupported_encoding") == 0
