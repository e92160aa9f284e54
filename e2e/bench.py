"""``make bench``: Ringleader side by side with the upstream collector and the previous Python data path.

One run measures, for every request shape, the same load through each side, on loopback:

- ``ringleader``: the data plane of this checkout (``python -m dataplane``);
- ``upstream``: the OpenTelemetry Collector v0.161 built from Go modules (``e2e/build_otelcol.sh``) with
  the ``loadbalancing`` exporter: static resolver, ``routing_key: traceID``, per-backend sending queue
  and retry on, the same exporter compression and timeout as Ringleader's;
- ``python@REF``: the previous Python data path, ``git archive REF dataplane`` extracted into the cache
  and run with this virtualenv (same Python dependencies); ``--baseline-ref``, default ``daf2bdb``, the
  last commit before the native transport;
- ``direct``: no balancer, the sender straight to one sink: what the sender and sinks manage alone
  (proves they are not the bottleneck) and the latency baseline.

Sender and sinks are one Go program (``e2e/benchtool``, see ``e2e/benchkit.py``): the sender replays
pre-serialized requests over raw gRPC, the sinks count spans by walking the protobuf framing only. Every
side gets fresh sinks; every side's delivery is checked span for span (sequence numbers in the trace
IDs): a side that lost or duplicated a span is marked INVALID.

Per side and shape:

1. warm-up (10% of the requests, closed loop), then the **throughput window**: ``--requests`` requests,
   closed loop with ``--concurrency`` in flight; it ends when the sinks hold every span of it. CPU is
   user + system time from ``/proc`` of the side's process and all its descendants (Ringleader's ring
   worker and multiprocessing helpers included) over the window: **spans per CPU-second**. Capacity
   is spans per wall-second over the same window (the machine is shared: a noisier figure).
2. the **latency window**: open loop at half the upstream collector's capacity for this shape (measured
   just before, same run), ``--latency-seconds`` long (at least 200 requests). Latency of a request =
   arrival of its last span at the sinks minus the moment it was due to be sent (so sender lateness
   cannot hide queueing).
   **Added latency**, per request: the sender sends, at the same moment, a copy of the request straight
   to a sink of its own (``--mirror``); added latency = arrival of the request's last span through the
   side minus arrival of its copy going direct. p50/p99 are over these per-request differences, so a
   stall of the shared machine that delays both paths cancels out rather than landing in one side's p99.
3. peak RSS: the sum of the resident memory of all the side's processes, sampled every 50 ms, over the
   side's whole life and over the latency window alone ("at rate", the issue's budget).

Then, when this checkout's config accepts ``data_path: {worker_threads: N}``, Ringleader with 1 and 2
worker threads (closed loop, ``--threads-concurrency`` in flight): wall-clock throughput on the same
2-core machine; otherwise that table says "not available".

Shapes: 1000- and 100-span requests (10 attributes per span, 10 spans per trace) to 4 and 20 backends,
each with exporter compression ``none`` and ``gzip`` (the sender never compresses). Results: markdown
tables on stdout and JSON in ``--json`` (default ``$RINGLEADER_CACHE/bench/bench-<UTC time>.json``).

Usage: ``python -m e2e.bench [--quick] [--shapes 1000x4-none,...] [--sides ringleader,upstream,python]
[--baseline-ref REF] [--requests N] [--json PATH] [--ring-table]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from e2e.benchkit import (
    MIRROR_OFFSET,
    ProcessTree,
    Sinks,
    benchtool,
    check_delivery,
    cpu_seconds,
    descendants,
    die_with_parent,
    send,
    wait_for_spans,
    write_requests,
)
from e2e.otelcol import Collector, cache_dir, ensure_binaries, free_port

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "daf2bdb"

# Names other tests import from here.
process_tree = descendants
__all__ = ["build_request", "cpu_seconds", "peak_rss_mib", "process_tree"]


def build_request(seed: int, spans: int = 1000, spans_per_trace: int = 10, attributes: int = 10) -> bytes:
    """An ExportTraceServiceRequest of ``spans`` spans in two services, as bytes (1000 spans: 421 KiB)."""
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    for svc in ("frontend", "checkout"):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=svc))
        rs.resource.attributes.add(key="k8s.pod.name", value=AnyValue(string_value=f"{svc}-7d9f8b-x2x9q"))
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        trace_id = b""
        for i in range(spans // 2):
            if i % spans_per_trace == 0:
                trace_id = rnd.randbytes(16)
            span = ss.spans.add(
                trace_id=trace_id,
                span_id=rnd.randbytes(8),
                name=f"GET /api/v1/items/{i % 50}",
                kind=2,
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_100_000_000 + i,
            )
            if i % spans_per_trace:
                span.parent_span_id = rnd.randbytes(8)
            for a in range(attributes):
                span.attributes.add(
                    key=f"app.attribute.{a}", value=AnyValue(string_value=f"value-{rnd.randrange(10**6)}")
                )
    return req.SerializeToString()


def peak_rss_mib(pid: int) -> float:
    """The kernel's high-water mark of one process's resident memory (``VmHWM``)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------------------ shapes -----


@dataclass(frozen=True)
class Shape:
    spans: int  # per request
    backends: int
    compression: str  # exporter compression to the backends: "none" | "gzip"

    @property
    def name(self) -> str:
        return f"{self.spans}x{self.backends}-{self.compression}"


SHAPES = {s.name: s for s in (Shape(n, b, c) for n in (1000, 100) for b in (4, 20) for c in ("none", "gzip"))}


# ------------------------------------------------------------------------------- sides -----


@dataclass
class Balancer:
    """A running side: its root process, where the sender connects, how to stop it."""

    pid: int
    endpoint: str
    stop: Callable[[], None]
    log: Path


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def loadbalancing_exporter(endpoints: list[str], compression: str) -> dict[str, Any]:
    """The ``loadbalancing`` exporter block both balancers get: the same keys and values."""
    return {
        "routing_key": "traceID",
        "resolver": {"static": {"hostnames": endpoints}},
        "protocol": {
            "otlp": {
                "tls": {"insecure": True},
                "timeout": "5s",
                "compression": compression,
                "sending_queue": {"enabled": True},
                "retry_on_failure": {"enabled": True},
            }
        },
    }


def ringleader_config(endpoints: list[str], compression: str, worker_threads: int | None = None) -> dict[str, Any]:
    """Ringleader's config for a shape: the upstream-compatible keys, defaults for everything else."""
    cfg: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}},
        "exporters": {"loadbalancing": loadbalancing_exporter(endpoints, compression)},
        "telemetry": {"log_level": "warning"},
    }
    if worker_threads is not None:
        cfg["data_path"] = {"worker_threads": worker_threads}
    return cfg


def upstream_config(endpoints: list[str], compression: str, port: int) -> dict[str, Any]:
    """The upstream collector configured as Ringleader is: same keys, same values."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"loadbalancing": loadbalancing_exporter(endpoints, compression)},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["loadbalancing"]}},
            "telemetry": {"logs": {"level": "warn"}},
        },
    }


def start_dataplane(work: Path, name: str, config: dict[str, Any], source: Path) -> Balancer:
    """``python -m dataplane`` from ``source`` (this checkout, or an extracted older tree)."""
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    cfg = json.loads(json.dumps(config))
    cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = f"127.0.0.1:{grpc_port}"
    cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = f"127.0.0.1:{http_port}"
    cfg["telemetry"]["endpoint"] = f"127.0.0.1:{admin_port}"
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = work / f"{name}.log"
    env = dict(os.environ, PYTHONPATH=str(source), PYTHONUNBUFFERED="1")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dataplane", "--config", str(path)],
            cwd=source,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    deadline = time.monotonic() + 60
    while not _ready(f"http://127.0.0.1:{admin_port}/readyz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"{name} did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return Balancer(proc.pid, f"127.0.0.1:{grpc_port}", stop, log)


def start_upstream(work: Path, name: str, endpoints: list[str], compression: str) -> Balancer:
    port = free_port()
    col = Collector(upstream_config(endpoints, compression, port), work, name=name, metrics_level="basic").start()

    def stop() -> None:
        col.stop(grace=5)

    return Balancer(col.pid, f"127.0.0.1:{port}", stop, col.log_path)


Starter = Callable[[list[str]], Balancer]


def upstream_starter(work: Path, name: str, compression: str) -> Starter:
    def start(endpoints: list[str]) -> Balancer:
        return start_upstream(work, name, endpoints, compression)

    return start


def dataplane_starter(
    work: Path, name: str, compression: str, source: Path, worker_threads: int | None = None
) -> Starter:
    def start(endpoints: list[str]) -> Balancer:
        return start_dataplane(work, name, ringleader_config(endpoints, compression, worker_threads), source)

    return start


def half_capacity(shape: Shape) -> Callable[[dict[str, Any]], float]:
    """The latency windows' rate, in requests per second, from upstream's measured row."""

    def rate(row: dict[str, Any]) -> float:
        return float(row["spans_per_wall_s"]) / 2 / shape.spans

    return rate


def extract_baseline(ref: str) -> tuple[Path, str]:
    """``git archive REF dataplane`` extracted into the cache (once per commit); (its root, the commit)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = cache_dir() / "bench" / "baseline" / sha
    if not (dest / "dataplane" / "__main__.py").exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=dest.parent))  # same file system: rename is atomic
        archive = subprocess.run(["git", "archive", sha, "dataplane"], cwd=ROOT, capture_output=True, check=True).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(tmp, filter="data")
        try:
            tmp.rename(dest)
        except OSError:  # a concurrent run got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest, sha


def worker_threads_available(work: Path) -> bool:
    """Does this checkout's config accept ``data_path: {worker_threads: N}``? (``--check-config``)."""
    cfg = ringleader_config(["127.0.0.1:4317"], "none", worker_threads=2)
    cfg["receivers"]["otlp"]["protocols"] = {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}
    path = work / "worker-threads-check.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "dataplane", "--check-config", "--config", str(path)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


# -------------------------------------------------------------------------- measuring -----


@dataclass
class Plan:
    requests: int  # measured 1000-span requests (100-span shapes send 10x as many)
    concurrency: int
    latency_seconds: float
    threads_concurrency: int
    latency_min_requests: int = 200  # p99 of 200 pairs: the 3rd-worst request


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def measure(
    tool: Path,
    work: Path,
    shape: Shape,
    req_file: Path,
    plan: Plan,
    side: str,
    start: Starter | None,
    rate: float | Callable[[dict[str, Any]], float] | None,
    concurrency: int | None = None,
    latency: bool = True,
) -> dict[str, Any]:
    """One side, one shape: warm-up, throughput window, latency window (at ``rate``), delivery check."""
    count = plan.requests * (1000 // shape.spans)
    warmup = max(20, count // 10)
    conc = concurrency or plan.concurrency
    sinks = Sinks(tool, shape.backends, work, name=f"{shape.name}-{side}-sinks").start()
    balancer = None
    try:
        balancer = start(sinks.endpoints) if start else None
        target = balancer.endpoint if balancer else sinks.endpoints[0]
        tree = ProcessTree(balancer.pid if balancer else sinks.pid).start()
        ranges: list[tuple[int, int]] = []
        seq = 1
        w = send(tool, target, req_file, warmup, seq, concurrency=conc)
        ranges.append(w.seq_range)
        seq += warmup
        delivered = wait_for_spans(sinks, warmup * shape.spans, 120)
        load0 = os.getloadavg()[0]
        cpu0, sink0 = tree.cpu(), cpu_seconds([sinks.pid])
        t0 = time.monotonic()
        sent = send(tool, target, req_file, count, seq, concurrency=conc)
        ranges.append(sent.seq_range)
        seq += count
        delivered = wait_for_spans(sinks, (warmup + count) * shape.spans, 300) and delivered
        wall = time.monotonic() - t0
        cpu, processes = tree.cpu_since(cpu0)
        sink_cpu = cpu_seconds([sinks.pid]).get(sinks.pid, 0.0) - sink0.get(sinks.pid, 0.0)
        spans = count * shape.spans
        row: dict[str, Any] = {
            "side": side,
            "shape": shape.name,
            "request_spans": shape.spans,
            "backends": shape.backends,
            "compression": shape.compression,
            "concurrency": conc,
            "requests": count,
            "spans": spans,
            "processes": processes,
            "cpu_s": cpu if balancer else 0.0,
            "spans_per_cpu_s": spans / cpu if balancer and cpu > 0 else None,
            "wall_s": wall,
            "spans_per_wall_s": spans / wall,
            "sender_cpu_s": sent.cpu_s,
            "sink_cpu_s": sink_cpu,
            "retries": w.retries + sent.retries,
            "send_failures": w.failed + sent.failed,
            "load_avg_1m": load0,
        }
        if sent.first_error:
            row["first_error"] = sent.first_error
        if callable(rate):
            rate = rate(row)
        if latency and rate:
            tree.window()
            n = max(plan.latency_min_requests, int(rate * plan.latency_seconds))
            timing = work / f"{shape.name}-{side}-timing.txt"
            direct = Sinks(tool, 1, work, name=f"{shape.name}-{side}-direct").start() if balancer else None
            try:
                mirror = direct.endpoints[0] if direct else ""
                lat = send(tool, target, req_file, n, seq, rate=rate, timing_file=timing, mirror=mirror)
                if direct:
                    wait_for_spans(direct, n * shape.spans, 120)
                    paired = direct.seqs()
            finally:
                if direct:
                    direct.stop()
            ranges.append(lat.seq_range)
            seq += n
            delivered = wait_for_spans(sinks, (seq - 1) * shape.spans, 120) and delivered
            arrivals = sinks.seqs()
            lats = [(arrivals[s][1] - due) / 1e6 for s, (due, _done) in lat.timings.items() if s in arrivals]
            if direct:
                added = [
                    (arrivals[s][1] - paired[s + MIRROR_OFFSET][1]) / 1e6
                    for s in lat.timings
                    if s in arrivals and s + MIRROR_OFFSET in paired
                ]
                row.update(
                    added_p50_ms=percentile(added, 50),
                    added_p99_ms=percentile(added, 99),
                    added_pairs=len(added),
                    mirror_failed=lat.mirror_failed,
                )
            row.update(
                rate_rps=rate,
                rate_spans_per_s=rate * shape.spans,
                latency_requests=n,
                p50_ms=percentile(lats, 50),
                p99_ms=percentile(lats, 99),
                latency_retries=lat.retries,
                peak_rss_mib_at_rate=tree.window() if balancer else None,
            )
            row["retries"] += lat.retries
            row["send_failures"] += lat.failed
        report = check_delivery(sinks.seqs(), ranges, shape.spans)
        stats = sinks.stats()
        tree.stop()
        row.update(
            peak_rss_mib=tree.peak_rss_mib if balancer else None,
            max_processes=tree.max_processes,
            delivered_spans=report.received_spans,
            expected_spans=report.expected_spans,
            lost_spans=report.lost_spans,
            duplicated_spans=report.duplicated_spans,
            unexpected_spans=report.unexpected_spans,
            spans_per_backend=stats["spans"],
            exports=sum(stats["requests"]),
            valid=report.ok
            and delivered
            and row["send_failures"] == 0
            and stats["bad_requests"] == 0
            and row.get("mirror_failed", 0) == 0,
        )
        return row
    finally:
        if balancer:
            balancer.stop()
        sinks.stop()


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan(
        args.requests, args.concurrency, args.latency_seconds, args.threads_concurrency, 50 if args.quick else 200
    )
    shapes = [SHAPES[n] for n in args.shapes.split(",") if n]
    sides = [s for s in args.sides.split(",") if s]
    tool = benchtool()
    bin_dir = ensure_binaries() if "upstream" in sides else None
    del bin_dir
    head = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    baseline: tuple[Path, str] | None = None
    if "python" in sides:
        baseline = extract_baseline(args.baseline_ref)
    meta: dict[str, Any] = {
        "command": "python -m e2e.bench " + " ".join(sys.argv[1:]),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "ringleader": head,
        "baseline": f"python@{baseline[1][:7]}" if baseline else None,
        "load_avg_start": os.getloadavg(),
    }
    rows: list[dict[str, Any]] = []
    threads: list[dict[str, Any]] | str = []
    with tempfile.TemporaryDirectory(prefix="ringleader-bench-") as tmp:
        work = Path(tmp)
        files: dict[int, Path] = {}

        def requests_file(spans: int) -> Path:
            if spans not in files:
                reqs = [build_request(seed, spans=spans) for seed in range(16)]
                files[spans] = write_requests(work / f"requests-{spans}.bin", reqs)
            return files[spans]

        for shape in shapes:
            starters = {
                "upstream": upstream_starter(work, f"{shape.name}-upstream", shape.compression),
                "ringleader": dataplane_starter(work, f"{shape.name}-ringleader", shape.compression, ROOT),
            }
            if baseline:
                starters["python"] = dataplane_starter(work, f"{shape.name}-python", shape.compression, baseline[0])
            req = requests_file(shape.spans)
            print(f"{shape.name}: ", end="", file=sys.stderr, flush=True)
            rate = None
            if "upstream" in sides:  # first: its capacity sets the latency windows' rate (half of it)
                up = measure(tool, work, shape, req, plan, "upstream", starters["upstream"], half_capacity(shape))
                rate = up.get("rate_rps")
                rows.append(up)
                print("upstream ", end="", file=sys.stderr, flush=True)
            rows.append(measure(tool, work, shape, req, plan, "direct", None, rate))
            print("direct ", end="", file=sys.stderr, flush=True)
            for side in ("ringleader", "python"):
                if side in sides and side in starters:
                    rows.append(measure(tool, work, shape, req, plan, side, starters[side], rate))
                    print(f"{side} ", end="", file=sys.stderr, flush=True)
            print(f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        if "ringleader" in sides and not args.no_threads:
            if worker_threads_available(work):
                threads = []
                for name in args.threads_shapes.split(","):
                    shape = SHAPES[name]
                    for n in (1, 2):
                        start = dataplane_starter(work, f"threads-{n}", shape.compression, ROOT, worker_threads=n)
                        row = measure(
                            tool, work, shape, requests_file(shape.spans), plan, f"ringleader-{n}t", start, None,
                            concurrency=plan.threads_concurrency, latency=False,
                        )  # fmt: skip
                        row["worker_threads"] = n
                        threads.append(row)
            else:
                threads = "not available: this checkout's config does not accept data_path.worker_threads"
    meta["load_avg_end"] = os.getloadavg()
    return {"meta": meta, "results": rows, "threads": threads}


# ----------------------------------------------------------------------------- report -----


def _f(v: Any, fmt: str = ",.0f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, fmt)


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def report(data: dict[str, Any]) -> str:
    meta, rows = data["meta"], data["results"]
    base = meta["baseline"] or "python"
    out = [
        "# Ringleader data-plane benchmark (make bench)\n",
        f"{meta['date_utc']}, `{meta['command']}`; {meta['machine']}, Python {meta['python']}; "
        f"ringleader {meta['ringleader']}, baseline {base}; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.1f}' for x in meta['load_avg_start'])} at the start, "
        f"{', '.join(f'{x:.1f}' for x in meta['load_avg_end'])} at the end.\n",
        "| shape | side | spans | balancer CPU s | spans / CPU-s | spans / wall-s | peak RSS MiB run / at rate (procs) "
        "| p50 / p99 ms at rate | rate spans/s | sender CPU s | sink CPU s | exports | retries | delivered | load |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        side = base if r["side"] == "python" else r["side"]
        delivered = (
            "ok"
            if r["valid"]
            else f"INVALID: lost {r['lost_spans']}, dup {r['duplicated_spans']}, failed {r['send_failures']}"
        )
        out.append(
            f"| {r['shape']} | {side} | {r['spans']:,} | {_f(r['cpu_s'] or None, '.2f')} "
            f"| {_f(r['spans_per_cpu_s'])} | {_f(r['spans_per_wall_s'])} "
            f"| {_f(r['peak_rss_mib'])} / {_f(r.get('peak_rss_mib_at_rate'))} ({r['max_processes']}) "
            f"| {_f(r.get('p50_ms'), '.2f')} / {_f(r.get('p99_ms'), '.2f')} | {_f(r.get('rate_spans_per_s'))} "
            f"| {r['sender_cpu_s']:.2f} | {r['sink_cpu_s']:.2f} | {r['exports']:,} | {r['retries']} | {delivered} "
            f"| {r['load_avg_1m']:.1f} |"
        )
    out += [
        "",
        "Ratios (same run; spans per CPU-second of the balancer's processes; added latency per request = "
        "arrival through the side minus arrival of its copy sent direct at the same moment, at half of "
        "upstream's capacity; RSS over that window):\n",
        f"| shape | ringleader / upstream | ringleader / {base} | {base} / upstream | added ms p50 / p99: ringleader "
        f"| upstream | {base} | peak RSS MiB at rate: ringleader | upstream | {base} | direct / ringleader capacity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["shape"], r["side"]): r for r in rows}
    for shape in dict.fromkeys(r["shape"] for r in rows):
        rl, up, py, di = (by.get((shape, s), {}) for s in ("ringleader", "upstream", "python", "direct"))

        def eff(r: dict[str, Any]) -> Any:
            return r.get("spans_per_cpu_s") if r.get("valid") else None

        out.append(
            f"| {shape} | {_ratio(eff(rl), eff(up))} | {_ratio(eff(rl), eff(py))} | {_ratio(eff(py), eff(up))} "
            f"| {_f(rl.get('added_p50_ms'), '.2f')} / {_f(rl.get('added_p99_ms'), '.2f')} "
            f"| {_f(up.get('added_p50_ms'), '.2f')} / {_f(up.get('added_p99_ms'), '.2f')} "
            f"| {_f(py.get('added_p50_ms'), '.2f')} / {_f(py.get('added_p99_ms'), '.2f')} "
            f"| {_f(rl.get('peak_rss_mib_at_rate'))} | {_f(up.get('peak_rss_mib_at_rate'))} "
            f"| {_f(py.get('peak_rss_mib_at_rate'))} "
            f"| {_ratio(di.get('spans_per_wall_s'), rl.get('spans_per_wall_s'))} |"
        )
    threads = data["threads"]
    out.append("\nWorker threads (Ringleader, closed loop, wall clock on this machine):\n")
    if isinstance(threads, str):
        out.append(threads)
    elif threads:
        out += [
            "| shape | worker threads | spans / wall-s | CPU s | CPU / wall | spans / CPU-s | delivered | 2 vs 1 |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        one = {r["shape"]: r for r in threads if r["worker_threads"] == 1}
        for r in threads:
            ratio = (
                _ratio(r["spans_per_wall_s"], one[r["shape"]]["spans_per_wall_s"]) if r["worker_threads"] == 2 else ""
            )
            out.append(
                f"| {r['shape']} | {r['worker_threads']} | {_f(r['spans_per_wall_s'])} | {r['cpu_s']:.2f} "
                f"| {r['cpu_s'] / r['wall_s']:.2f} | {_f(r['spans_per_cpu_s'])} | {'ok' if r['valid'] else 'INVALID'} "
                f"| {ratio} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few requests, 2 shapes: for development")
    parser.add_argument("--shapes", default=None, help=f"comma-separated, of: {', '.join(SHAPES)} (default: all)")
    parser.add_argument("--sides", default="upstream,ringleader,python")
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE, help="git ref of the previous Python data path")
    parser.add_argument("--requests", type=int, default=None, help="measured 1000-span requests per side and shape")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument("--threads-concurrency", type=int, default=16)
    parser.add_argument("--threads-shapes", default="1000x4-none,100x4-none")
    parser.add_argument("--no-threads", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results as JSON")
    parser.add_argument("--ring-table", action="store_true", help="also print the hash-ring table (e2e.ring_table)")
    args = parser.parse_args(argv)
    if args.shapes is None:
        args.shapes = "1000x4-none,100x20-gzip" if args.quick else ",".join(SHAPES)
    if args.requests is None:
        args.requests = 40 if args.quick else 400
    if args.latency_seconds is None:
        args.latency_seconds = 1.0 if args.quick else 8.0
    if args.quick:
        args.threads_shapes = args.threads_shapes.split(",")[0]
    started = time.monotonic()
    data = run(args)
    data["meta"]["runtime_s"] = round(time.monotonic() - started, 1)
    text = report(data)
    print(text + f"\n\nruntime: {data['meta']['runtime_s']:.0f} s")
    path = args.json or cache_dir() / "bench" / f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"results: {path}")
    if args.ring_table:
        sys.stdout.flush()
        from .ring_table import main as ring_table

        ring_table([])
    invalid = [r for r in data["results"] if not r["valid"]]
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
