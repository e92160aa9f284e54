"""The ``make bench`` instrument counts right: sender, sinks, delivery check, CPU by process tree.

Not a benchmark: nothing here is timed. Tiny runs through the real Go sender and sinks
(``e2e/benchtool``, built once and cached) prove that every span sent is counted once, that loss
and duplicates are caught, that the latency timings cover every request, that a side's CPU
includes its child processes, and that each side of ``make bench`` starts and delivers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.bench import SHAPES, Plan, build_request, measure, ringleader_config, start_dataplane, start_upstream
from e2e.benchkit import (
    ProcessTree,
    Sinks,
    benchtool,
    check_delivery,
    descendants,
    send,
    wait_for_spans,
    write_requests,
)
from e2e.otelcol import binaries_ready

ROOT = Path(__file__).resolve().parent.parent
SPANS = 20  # per request; 10 spans per trace, so 2 traces per request


@pytest.fixture(scope="module")
def tool() -> Path:
    return benchtool()


@pytest.fixture()
def requests_file(tmp_path: Path) -> Path:
    return write_requests(tmp_path / "requests.bin", [build_request(seed, spans=SPANS) for seed in range(4)])


def test_every_span_sent_is_counted_once_per_backend_and_sequence(
    tool: Path, tmp_path: Path, requests_file: Path
) -> None:
    with Sinks(tool, backends=3, workdir=tmp_path) as sinks:
        a = send(tool, sinks.endpoints[0], requests_file, 30, seq_start=1, concurrency=4)
        b = send(tool, sinks.endpoints[2], requests_file, 20, seq_start=31, concurrency=2)
        assert (a.spans, b.spans, a.failed, b.failed) == (30 * SPANS, 20 * SPANS, 0, 0)
        assert wait_for_spans(sinks, 50 * SPANS, 30)
        stats = sinks.stats()
        assert stats["spans"] == [30 * SPANS, 0, 20 * SPANS]
        assert stats["requests"] == [30, 0, 20]
        assert stats["bad_requests"] == 0
        seqs = sinks.seqs()
        assert sorted(seqs) == list(range(1, 51))
        assert {n for n, _ in seqs.values()} == {SPANS}
        report = check_delivery(seqs, [a.seq_range, b.seq_range], SPANS)
        assert report.ok, report
        assert report.received_spans == report.expected_spans == 50 * SPANS


def test_loss_and_duplicates_are_caught(tool: Path, tmp_path: Path, requests_file: Path) -> None:
    with Sinks(tool, backends=1, workdir=tmp_path) as sinks:
        send(tool, sinks.endpoints[0], requests_file, 10, seq_start=1)
        send(tool, sinks.endpoints[0], requests_file, 5, seq_start=6)  # seqs 6..10 a second time
        assert wait_for_spans(sinks, 15 * SPANS, 30)
        seqs = sinks.seqs()
    dup = check_delivery(seqs, [(1, 11)], SPANS)
    assert not dup.ok and dup.duplicated_spans == 5 * SPANS and dup.lost_spans == 0
    lost = check_delivery(seqs, [(1, 11), (11, 13)], SPANS)  # 11 and 12 were never delivered
    assert not lost.ok and lost.lost_spans == 2 * SPANS
    stray = check_delivery(seqs, [(1, 6)], SPANS)  # 6..10 arrived although "not sent"
    assert not stray.ok and stray.unexpected_spans == 10 * SPANS


def test_open_loop_timings_cover_every_request(tool: Path, tmp_path: Path, requests_file: Path) -> None:
    with Sinks(tool, backends=1, workdir=tmp_path) as sinks:
        sent = send(tool, sinks.endpoints[0], requests_file, 40, seq_start=100, rate=200, timing_file=tmp_path / "t")
        assert wait_for_spans(sinks, 40 * SPANS, 30)
        seqs = sinks.seqs()
    assert sorted(sent.timings) == list(range(100, 140))
    dues = [sent.timings[s][0] for s in range(100, 140)]
    assert dues == sorted(dues) and dues[-1] - dues[0] >= 39 * 5_000_000 * 0.99  # due every 1/200 s
    assert all(seqs[s][1] >= sent.timings[s][0] for s in sent.timings)  # arrival after due


def test_process_tree_counts_the_cpu_of_children(tmp_path: Path) -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
    script = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {burn!r} + 'time.sleep(30)'])\n"
        f"exec({burn!r})\n"
        "print('done', flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        tree = ProcessTree(proc.pid).start()
        assert proc.stdout is not None and proc.stdout.readline().strip() == "done"
        # the parent has burnt its 0.3 s; wait (on a condition, with a deadline) for the child's to show
        deadline = time.monotonic() + 60
        cpu, processes = tree.cpu_since({})  # since each process started
        while cpu < 0.55 and time.monotonic() < deadline:
            time.sleep(0.05)
            cpu, processes = tree.cpu_since({})
        tree.stop()
        assert processes == 2
        assert cpu >= 0.55  # both processes' 0.3 s, less clock-tick rounding
        assert tree.peak_rss_mib > 5 and tree.max_processes == 2
    finally:
        for pid in descendants(proc.pid)[1:]:  # the child we started through it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


PLAN = Plan(requests=2, concurrency=4, latency_seconds=0.3, threads_concurrency=4, latency_min_requests=100)


def test_ringleader_side_delivers_every_span_and_is_measured(tool: Path, tmp_path: Path) -> None:
    shape = SHAPES["100x4-gzip"]
    req = write_requests(tmp_path / "r.bin", [build_request(seed, spans=shape.spans) for seed in range(4)])
    row = measure(
        tool,
        tmp_path,
        shape,
        req,
        PLAN,
        "ringleader",
        lambda eps: start_dataplane(tmp_path, "rl", ringleader_config(eps, "gzip"), ROOT),
        50.0,
    )
    assert row["valid"], row
    assert row["delivered_spans"] == row["expected_spans"] > row["spans"] == 20 * 100
    assert row["lost_spans"] == row["duplicated_spans"] == 0
    assert row["cpu_s"] > 0 and row["processes"] >= 1 and row["peak_rss_mib"] > 10
    assert row["latency_requests"] == 100 and row["p99_ms"] >= row["p50_ms"] > 0
    assert row["added_pairs"] == 100 and row["added_p99_ms"] >= row["added_p50_ms"]  # every request paired
    assert sum(row["spans_per_backend"]) == row["delivered_spans"]


@pytest.mark.skipif(not binaries_ready(), reason="upstream collector not built (make otelcol-bins)")
def test_upstream_side_delivers_every_span_and_is_measured(tool: Path, tmp_path: Path) -> None:
    shape = SHAPES["100x4-none"]
    req = write_requests(tmp_path / "r.bin", [build_request(seed, spans=shape.spans) for seed in range(4)])
    row = measure(
        tool,
        tmp_path,
        shape,
        req,
        PLAN,
        "upstream",
        lambda eps: start_upstream(tmp_path, "up", eps, "none"),
        None,
    )
    assert row["valid"], row
    assert row["delivered_spans"] == row["expected_spans"] == (20 + 20) * 100
    assert row["cpu_s"] > 0 and row["peak_rss_mib"] > 10
