"""The upstream OpenTelemetry Collector and telemetrygen, as real processes on loopback.

Tests use the upstream collector (built from Go modules by ``e2e/build_otelcol.sh``) side by side with
Ringleader: as a client in front of it, as tier 2 behind it, or as the reference whose routing and
metrics Ringleader must match.

Start one with a config dict; the helper picks free loopback ports for its ``health_check`` extension
and its Prometheus self-metrics (unless the config sets them), waits until it is healthy, and stops it
by PID::

    from e2e.otelcol import Collector, ensure_binaries, free_port, run_telemetrygen

    bin_dir = ensure_binaries()                    # builds once (minutes), then instant
    grpc = free_port()
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc}"}}}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}},
    }
    with Collector(config, workdir) as col:        # or col = Collector(...).start(); col.stop()
        run_telemetrygen(["traces", "--otlp-endpoint", f"127.0.0.1:{grpc}", "--otlp-insecure",
                          "--traces", "10", "--rate", "100"])
        text = col.scrape()                        # its /metrics, Prometheus text format
        col.pid, col.metrics_url, col.health_url, col.log_path

From a shell (e.g. the lab): ``python -m e2e.otelcol start CONFIG.yaml --workdir DIR`` starts a
detached collector and prints ``{"pid", "health_url", "metrics_url", "log"}`` as JSON;
``python -m e2e.otelcol stop PID`` stops it (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

E2E_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = E2E_DIR / "build_otelcol.sh"

_PR_SET_PDEATHSIG = 1


class OtelcolError(RuntimeError):
    """The collector could not be built or started; the message carries the log tail."""


def cache_dir() -> Path:
    """Where the binaries and Go caches live: ``$RINGLEADER_CACHE`` or ``~/.cache/ringleader``."""
    return Path(os.environ.get("RINGLEADER_CACHE") or Path.home() / ".cache" / "ringleader")


def binaries_ready() -> bool:
    """True when ``build_otelcol.sh`` has nothing to do."""
    return subprocess.run([str(BUILD_SCRIPT), "--check"], capture_output=True).returncode == 0


def ensure_binaries(log_file: Path | None = None) -> Path:
    """Build the collector and telemetrygen if needed and return their directory.

    The first build takes minutes; later calls only check. The build's output goes to ``log_file``
    (default ``<cache>/build_otelcol.log``); on failure the exception carries its tail. Safe to call
    from concurrent processes (the script holds a lock).
    """
    log_path = log_file or cache_dir() / "build_otelcol.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.run([str(BUILD_SCRIPT), "--print-bin-dir"], stdout=subprocess.PIPE, stderr=log)
    if proc.returncode != 0:
        raise OtelcolError(
            f"{BUILD_SCRIPT.name} failed (exit {proc.returncode}); last lines of {log_path}:\n" + _tail(log_path)
        )
    return Path(proc.stdout.decode().strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """One upstream collector process with a config written from a dict; see the module docstring."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        name: str = "otelcol",
        bin_dir: Path | None = None,
        metrics_level: str = "detailed",
    ) -> None:
        self.workdir = workdir
        self.name = name
        self._bin_dir = bin_dir
        self.config = json.loads(json.dumps(config))  # deep copy; the caller's dict stays as it was
        self.health_port, self.metrics_port = _ensure_observability(self.config, metrics_level)
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise OtelcolError(f"{self.name} was not started")
        return self._popen.pid

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self, ready_timeout: float = 60.0, *, detached: bool = False) -> Collector:
        """Start the process and wait until its health check answers 200.

        ``detached``: do not tie the collector's life to this process (for the CLI); by default the
        kernel kills it when the starting process dies, so none outlives a killed test run.
        """
        binary = (self._bin_dir or ensure_binaries()) / "otelcol"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                [str(binary), "--config", f"file:{self.config_path}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if detached else _die_with_parent,
            )
        deadline = time.monotonic() + ready_timeout
        while _http_status(self.health_url) != 200:
            if self._popen.poll() is not None:
                raise OtelcolError(f"{self.name} exited with {self._popen.returncode}:\n{_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise OtelcolError(f"{self.name} not healthy after {ready_timeout}s:\n{_tail(self.log_path)}")
            time.sleep(0.1)
        return self

    def scrape(self) -> str:
        """The collector's own metrics in the Prometheus text format."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return str(resp.read().decode())

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns the exit code."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        return self._popen.returncode

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_telemetrygen(
    args: list[str], *, bin_dir: Path | None = None, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run ``telemetrygen ARGS`` to completion; raise with its output if it fails.

    Pace it (``--rate N``) when counting: with ``--rate 0`` telemetrygen drops spans in its own SDK.
    """
    binary = (bin_dir or ensure_binaries()) / "telemetrygen"
    proc = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=timeout, preexec_fn=_die_with_parent
    )
    if proc.returncode != 0:
        raise OtelcolError(f"telemetrygen {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """Stop a collector started with ``detached=True`` by its PID (SIGTERM, then SIGKILL)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _ensure_observability(config: dict[str, Any], level: str) -> tuple[int, int]:
    """Add a health_check extension and a Prometheus pull reader on free ports unless configured."""
    extensions = config.setdefault("extensions", {}) or {}
    config["extensions"] = extensions
    service = config.setdefault("service", {})
    health = extensions.get("health_check")
    if health is None:
        health = extensions["health_check"] = {"endpoint": f"127.0.0.1:{free_port()}"}
    health_port = int(str((health or {}).get("endpoint", "0.0.0.0:13133")).rpartition(":")[2])
    enabled = service.setdefault("extensions", []) or []
    if "health_check" not in enabled:
        enabled.append("health_check")
    service["extensions"] = enabled

    metrics = service.setdefault("telemetry", {}).setdefault("metrics", {})
    metrics.setdefault("level", level)
    readers = metrics.setdefault("readers", [])
    for reader in readers:
        prometheus = reader.get("pull", {}).get("exporter", {}).get("prometheus")
        if prometheus:
            return health_port, int(prometheus["port"])
    metrics_port = free_port()
    readers.append({"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": metrics_port}}}})
    return health_port, metrics_port


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to SIGKILL it when the starting process dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.otelcol", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a detached collector; print its pid and URLs as JSON")
    start.add_argument("config", type=Path)
    start.add_argument("--workdir", type=Path, required=True)
    start.add_argument("--name", default="otelcol")
    stop = sub.add_parser("stop", help="stop a collector by PID")
    stop.add_argument("pid", type=int)
    sub.add_parser("bin-dir", help="build if needed and print the binaries' directory")
    args = parser.parse_args(argv)
    if args.command == "start":
        config = yaml.safe_load(args.config.read_text())
        col = Collector(config, args.workdir, name=args.name).start(detached=True)
        print(json.dumps({"pid": col.pid, "health_url": col.health_url, "metrics_url": col.metrics_url,
                          "log": str(col.log_path), "config": str(col.config_path)}))
    elif args.command == "stop":
        stop_pid(args.pid)
    else:
        print(ensure_binaries())


if __name__ == "__main__":
    main()
