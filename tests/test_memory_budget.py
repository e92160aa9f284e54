"""Bounded memory: load against a stalled backend is refused before it can OOM the pod.

One backend, frozen with SIGSTOP (it cannot be ejected: it is the last one), the
default per-backend queue (1000 requests: about 800 MiB of these requests, far more
than the budget) and ``memory.limit: 256MiB``. Clients send ~800 KiB requests with
16 in flight until the data plane refuses them for memory. The data plane's whole
process tree (one process since rings are built on a thread) must peak below the limit, every refusal
must be counted with reason ``memory_limit``, and after SIGCONT everything that was
accepted must be delivered.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc

from e2e.bench import build_request, peak_rss_mib, process_tree
from tests.harness import GRPC_METHODS, DataPlaneProcess, SinkProcess, static_config, wait_until

LIMIT_MIB = 256


async def _send_until_refused(endpoint: str, requests: list[bytes], max_requests: int) -> tuple[int, int]:
    """(accepted, refused for memory) after 40 memory refusals in a row, or max_requests."""
    accepted = refused = 0
    in_a_row = 0
    sent = 0
    async with grpc.aio.insecure_channel(endpoint, options=[("grpc.max_send_message_length", -1)]) as channel:
        call = channel.unary_unary(GRPC_METHODS["traces"], request_serializer=None, response_deserializer=None)

        async def worker() -> None:
            nonlocal accepted, refused, in_a_row, sent
            while sent < max_requests and in_a_row < 40:
                payload = requests[sent % len(requests)]
                sent += 1
                try:
                    await call(payload, timeout=60)
                    accepted += 1
                    in_a_row = 0
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    assert "memory" in (exc.details() or ""), exc.details()
                    refused += 1
                    in_a_row += 1
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(16)))
    return accepted, refused


def test_a_stalled_backend_fills_the_budget_then_requests_are_refused_and_peak_memory_stays_under_the_limit(
    tmp_path: Path,
) -> None:
    sink = SinkProcess(tmp_path, "stalled", "--count-only").start()
    cfg = static_config([sink.endpoint], otlp={"timeout": "60s"})
    cfg["memory"] = {"limit": f"{LIMIT_MIB}MiB"}
    dp = DataPlaneProcess(tmp_path, cfg).start()
    assert dp.proc is not None and sink.proc is not None
    try:
        requests = [build_request(seed, spans=2000) for seed in range(8)]
        spans_per_request = 2000
        sink.proc.send_signal(signal.SIGSTOP)
        accepted, refused = asyncio.run(_send_until_refused(dp.grpc_endpoint, requests, max_requests=2000))
        pids = process_tree(dp.proc.pid)
        peaks = {pid: peak_rss_mib(pid) for pid in pids}
        data_limit = dp.metric("ringleader_memory_data_limit_bytes")
        buffered = dp.metric("ringleader_memory_buffered_bytes")
        print(
            f"\naccepted={accepted} refused={refused} request={len(requests[0]) >> 10} KiB "
            f"buffered={buffered / 2**20:.0f} MiB data_limit={data_limit / 2**20:.0f} MiB "
            f"peak RSS per process (MiB)={ {p: round(v) for p, v in peaks.items()} } total={sum(peaks.values()):.0f}"
        )
        assert refused >= 40, "the budget never refused anything"
        assert accepted * len(requests[0]) > data_limit / 2, "refused long before the budget was used"
        assert dp.metric("ringleader_requests_refused_total", reason="memory_limit") == refused
        assert dp.metric("ringleader_items_refused_total", reason="memory_limit") == refused * spans_per_request
        assert buffered <= data_limit
        assert sum(peaks.values()) < LIMIT_MIB, peaks

        sink.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: dp.metric("ringleader_items_exported_total") == accepted * spans_per_request,
            180,
            what="everything accepted delivered after the backend resumes",
        )
        assert dp.metric("ringleader_items_failed_total") == 0
        wait_until(lambda: dp.metric("ringleader_memory_buffered_bytes") == 0, 30, what="the budget released")
    finally:
        if sink.proc is not None:
            sink.proc.send_signal(signal.SIGCONT)
        dp.stop()
        sink.stop()
