"""The instrument of ``make bench``: one sender, real sinks, and CPU/memory accounting by process tree.

``e2e/bench.py`` measures load balancers side by side with these parts; they are kept apart from it so
that a small, non-timed test (tests/test_bench_harness.py) can prove the instrument counts right.

- :func:`benchtool` builds (once, cached) the Go program ``e2e/benchtool`` and returns its path.
- :class:`Sinks`: N OTLP/gRPC trace backends in one process. They count spans per backend and, per
  request sequence number, the spans received and the latest arrival time, walking only the protobuf
  framing down to each span's trace ID (no decode of attributes or names).
- :func:`send`: replays pre-serialized requests over raw gRPC, closed loop (``concurrency`` in flight)
  or open loop (``rate`` requests per second). Request ``i`` carries sequence number ``seq_start + i``
  in the last 8 bytes of every trace ID, so each request's traces are unique and the sinks can say
  which request every span belongs to. Open loop, ``mirror`` sends a copy of every request at the same
  moment to a second target (sequence number + ``MIRROR_OFFSET``): the direct path to pair it with.
- :func:`check_delivery`: every sequence number sent got exactly its spans: no loss, no duplicates.
- :class:`ProcessTree`: user + system CPU (``/proc/<pid>/stat``) of a process and all its descendants
  (helpers such as Ringleader's ring worker), and the sampled peak of their summed resident memory.

Example::

    sinks = Sinks(binary, backends=4, workdir=tmp).start()
    result = send(binary, sinks.endpoints[0], requests_file, count=100, seq_start=1)
    report = check_delivery(sinks.seqs(), [(1, 100)], spans_per_request=1000)
    assert report.ok, report
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / (1 << 20)
MIRROR_OFFSET = 1 << 62  # sequence number of request i's mirrored copy: seq_start + i + MIRROR_OFFSET


def die_with_parent() -> None:
    """In a child before exec: the kernel kills it when the bench dies (no sink or balancer outlives it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def benchtool() -> Path:
    """Build ``e2e/benchtool`` if its sources changed (cached under ``$RINGLEADER_CACHE``); its path."""
    proc = subprocess.run(["bash", str(E2E_DIR / "build_benchtool.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"build_benchtool.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def write_requests(path: Path, requests: list[bytes]) -> Path:
    """The sender's input: each request as a 4-byte little-endian length and its bytes."""
    with path.open("wb") as f:
        for data in requests:
            f.write(len(data).to_bytes(4, "little") + data)
    return path


# ------------------------------------------------------------------------------- sinks -----


class Sinks:
    """``benchtool sink``: N trace backends on loopback in one process (one gRPC server each)."""

    def __init__(self, binary: Path, backends: int, workdir: Path, name: str = "sinks") -> None:
        self.binary = binary
        self.backends = backends
        self.port_file = workdir / f"{name}.json"
        self.log = workdir / f"{name}.log"
        self.endpoints: list[str] = []
        self.stats_url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Sinks:
        with contextlib.suppress(FileNotFoundError):
            self.port_file.unlink()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "sink", "--backends", str(self.backends), "--port-file", str(self.port_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sinks did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        info = json.loads(self.port_file.read_text())
        self.endpoints = list(info["endpoints"])
        self.stats_url = f"http://{info['stats']}"
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "sinks not started"
        return self.proc.pid

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.stats_url + path, timeout=30) as resp:
            return bytes(resp.read())

    def stats(self) -> dict[str, Any]:
        """``{"requests": [per backend], "spans": [per backend], "bad_requests": n}``."""
        return dict(json.loads(self._get("/stats")))

    def spans(self) -> int:
        return int(sum(self.stats()["spans"]))

    def seqs(self) -> dict[int, tuple[int, int]]:
        """Sequence number -> (spans received, latest arrival in Unix ns)."""
        out = {}
        for line in self._get("/seqs").decode().splitlines():
            seq, spans, last = map(int, line.split())
            out[seq] = (spans, last)
        return out

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> Sinks:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ sender -----


@dataclass
class Sent:
    """What one ``benchtool send`` run did; ``timings``: seq -> (due, done) in Unix ns."""

    requests: int
    spans: int
    retries: int
    failed: int
    wall_s: float
    cpu_s: float
    seq_start: int
    first_error: str = ""
    mirror_failed: int = 0
    timings: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def seq_range(self) -> tuple[int, int]:
        return self.seq_start, self.seq_start + self.requests


def send(
    binary: Path,
    target: str,
    requests_file: Path,
    count: int,
    seq_start: int,
    *,
    concurrency: int = 8,
    rate: float = 0.0,
    timing_file: Path | None = None,
    mirror: str = "",
    timeout: float = 600.0,
) -> Sent:
    """Send ``count`` requests (closed loop, or open loop at ``rate`` per second) and wait for all answers."""
    args = [str(binary), "send", "--target", target, "--requests", str(requests_file), "--count", str(count)]
    args += ["--seq-start", str(seq_start), "--concurrency", str(concurrency), "--rate", str(rate)]
    if timing_file is not None:
        args += ["--timing", str(timing_file)]
    if mirror:
        args += ["--mirror", mirror, "--mirror-offset", str(MIRROR_OFFSET)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, preexec_fn=die_with_parent)
    if proc.returncode != 0:
        raise RuntimeError(f"benchtool send failed ({proc.returncode}): {proc.stderr[-2000:]}")
    s = json.loads(proc.stdout)
    sent = Sent(
        requests=int(s["requests"]),
        spans=int(s["spans"]),
        retries=int(s["retries"]),
        failed=int(s["failed"]),
        wall_s=float(s["wall_s"]),
        # the whole process (start-up and template parsing included): what the sender costs the machine
        cpu_s=float(s["total_cpu_s"]),
        seq_start=seq_start,
        first_error=str(s.get("first_error", "")),
        mirror_failed=int(s.get("mirror_failed", 0)),
    )
    if timing_file is not None:
        for line in timing_file.read_text().splitlines():
            seq, due, done = map(int, line.split())
            sent.timings[seq] = (due, done)
    return sent


# ---------------------------------------------------------------------------- delivery -----


@dataclass(frozen=True)
class Delivery:
    """Spans expected vs received for the sequence numbers sent; ``ok`` when they match exactly."""

    expected_spans: int
    received_spans: int
    lost_spans: int  # expected but not received
    duplicated_spans: int  # received more than once
    unexpected_spans: int  # for sequence numbers never sent

    @property
    def ok(self) -> bool:
        return (
            self.lost_spans == 0
            and self.duplicated_spans == 0
            and self.unexpected_spans == 0
            and self.expected_spans == self.received_spans
        )


def check_delivery(seqs: dict[int, tuple[int, int]], ranges: list[tuple[int, int]], spans_per_request: int) -> Delivery:
    """Compare what the sinks got (:meth:`Sinks.seqs`) with the half-open sequence ``ranges`` sent."""
    expected = lost = dup = 0
    sent: set[int] = set()
    for lo, hi in ranges:
        sent.update(range(lo, hi))
    for seq in sent:
        got = seqs.get(seq, (0, 0))[0]
        expected += spans_per_request
        lost += max(0, spans_per_request - got)
        dup += max(0, got - spans_per_request)
    unexpected = sum(n for seq, (n, _) in seqs.items() if seq not in sent)
    received = sum(n for n, _ in seqs.values())
    return Delivery(expected, received, lost, dup, unexpected)


def wait_for_spans(sinks: Sinks, target: int, timeout: float) -> bool:
    """Poll the sinks until they hold ``target`` spans (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while sinks.spans() < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ------------------------------------------------------------------------ process tree -----


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """user + system time per process, plus that of children it has reaped."""
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = _stat(pid)
            out[pid] = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
    return out


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_MIB
    return 0.0


class ProcessTree:
    """CPU and memory of a process and its descendants (all processes of one side of a benchmark).

    ``cpu()`` reads a snapshot; the CPU spent between two snapshots is :meth:`cpu_since`. A background
    thread samples the summed RSS of the tree every ``interval`` seconds: ``peak_rss_mib`` over the
    whole life, :meth:`window` over a part of it.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_mib = 0.0
        self._window_peak = 0.0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> ProcessTree:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def window(self) -> float:
        """The peak since the last call (or start), then start a new window; :attr:`peak_rss_mib` keeps the max."""
        peak, self._window_peak = self._window_peak, 0.0
        return peak

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = descendants(self.pid)
            self.max_processes = max(self.max_processes, len(pids))
            rss = sum(rss_mib(p) for p in pids)
            self.peak_rss_mib = max(self.peak_rss_mib, rss)
            self._window_peak = max(self._window_peak, rss)
            self._stop.wait(self.interval)

    def cpu(self) -> dict[int, float]:
        return cpu_seconds(descendants(self.pid))

    def cpu_since(self, before: dict[int, float]) -> tuple[float, int]:
        """CPU seconds of the tree since ``before`` (a process born since counts from zero); process count."""
        now = self.cpu()
        return sum(t - before.get(p, 0.0) for p, t in now.items()), len(now)
