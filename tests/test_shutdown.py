"""Graceful shutdown and ``--check-config``, against the real ``ringleader-dataplane`` process.

On SIGTERM the data plane stops accepting (receivers closed, ``/readyz`` 503),
delivers what its queues hold within ``shutdown.drain_timeout``, counts and logs
whatever is left as dropped with reason ``shutdown``, and exits 0:

- a slow backend with a queue of batches: everything queued is at the backend
  by the time the process has exited (checked after exit, without waiting);
- a dead backend and a short deadline: the process exits 0 once the deadline
  has passed (plus a little slack), and the log accounts for every undelivered
  item (the metrics endpoint is gone by then, so the log line is the record).

``ringleader-dataplane --check-config`` validates a file without starting
anything: exit 0 on a good file, exit 2 and one line naming the key path on a
bad one.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from tests.harness import (
    DataPlaneProcess,
    SinkProcess,
    grpc_export,
    http_post,
    spans_of,
    static_config,
    trace_request,
    wait_until,
)

CLI = str(Path(sys.executable).parent / "ringleader-dataplane")


def _ids(n: int) -> list[tuple[bytes, bytes]]:
    return [(os.urandom(16), os.urandom(8)) for _ in range(n)]


def _refuses(dp: DataPlaneProcess, accepted: list[tuple[bytes, bytes]]) -> bool:
    """Whether a new request is turned away over both transports (refused or connection closed).

    A probe that slipped in before the receivers closed is added to ``accepted``: it must be delivered too.
    """
    over_grpc, over_http = _ids(1), _ids(1)
    code, _ = grpc_export(dp.grpc_endpoint, "traces", trace_request(over_grpc), timeout=2)
    if code == grpc.StatusCode.OK:
        accepted += over_grpc
    try:
        status, _, _ = http_post(f"{dp.http_endpoint}/v1/traces", trace_request(over_http))
    except OSError:  # connection refused or reset: the listener is closed
        status = 0
    if status == 200:
        accepted += over_http
    return code != grpc.StatusCode.OK and status != 200


def test_sigterm_delivers_everything_queued_before_exiting_0(tmp_path: Path) -> None:
    slow = SinkProcess(tmp_path, "slow", "--delay", "0.4").start()
    fast = SinkProcess(tmp_path, "fast").start()
    cfg = static_config(
        [slow.endpoint, fast.endpoint],
        otlp={"timeout": "5s", "sending_queue": {"num_consumers": 1, "queue_size": 1000}},
    )
    cfg["shutdown"] = {"drain_timeout": "60s"}
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        sent: list[tuple[bytes, bytes]] = []
        for _ in range(15):
            spans = _ids(20)  # each request has parts for both backends
            assert grpc_export(dp.grpc_endpoint, "traces", trace_request(spans)) == (grpc.StatusCode.OK, "")
            sent += spans
        # The slow backend takes 0.4 s per batch, one at a time: most of its batches still wait.
        queued = dp.metric("ringleader_queue_size", endpoint=slow.endpoint)
        assert queued >= 3, queued
        assert dp.proc is not None
        dp.proc.send_signal(signal.SIGTERM)
        # Stop accepting: new requests are turned away while the queue still drains.
        wait_until(lambda: _refuses(dp, sent), 20, what="new requests to be refused after SIGTERM")
        assert dp.proc.poll() is None, "the queue should still be draining"
        assert dp.get("/readyz")[0] == 503
        assert dp.proc.wait(60) == 0
        # Read the backends only now: what was queued must have been delivered before the exit.
        received = Counter(sid for sink in (slow, fast) for _, sid, _, _ in spans_of(sink.records()))
        assert {sid for _, sid in sent} == set(received)
        assert max(received.values()) == 1
        log = dp.log.read_text()
        assert "shutting down" in log
        assert "dropped" not in log
    finally:
        dp.stop()
        slow.stop()
        fast.stop()


_DROPPED = re.compile(r"dropped (\d+) traces item\(s\) in (\d+) batch\(es\) for (\S+): shutdown")


def test_sigterm_with_a_dead_backend_exits_0_at_the_deadline_and_logs_what_it_dropped(tmp_path: Path) -> None:
    dead = SinkProcess(tmp_path, "dead").start()
    dead.kill()  # nothing listens on its port any more
    cfg = static_config(
        [dead.endpoint],
        otlp={
            "timeout": "1s",
            "sending_queue": {"num_consumers": 2, "queue_size": 1000},
            # Retry for ever: only the drain deadline can end the attempts.
            "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms", "max_elapsed_time": 0},
        },
    )
    drain = 2.0
    cfg["shutdown"] = {"drain_timeout": f"{drain:g}s"}
    dp = DataPlaneProcess(tmp_path, cfg).start()
    try:
        items = 0
        for n in (5, 7, 11, 13, 17):
            assert grpc_export(dp.grpc_endpoint, "traces", trace_request(_ids(n)))[0] == grpc.StatusCode.OK
            items += n
        wait_until(
            lambda: dp.metric("otelcol_loadbalancer_backend_outcome", success="false") >= 2,
            20,
            what="exports to the dead backend to fail",
        )
        assert dp.proc is not None
        started = time.monotonic()
        dp.proc.send_signal(signal.SIGTERM)
        # The deadline plus slack for closing the receivers and channels on a loaded machine.
        returncode = dp.proc.wait(drain + 5)
        elapsed = time.monotonic() - started
        assert returncode == 0
        assert elapsed >= drain, f"exited after {elapsed:.1f}s, before the {drain}s deadline"
        dropped = [(int(m[1]), m[3]) for m in _DROPPED.finditer(dp.log.read_text())]
        assert dropped, "no 'dropped ... shutdown' line in the log"
        assert {endpoint for _, endpoint in dropped} == {dead.endpoint}
        assert sum(n for n, _ in dropped) == items
    finally:
        dp.stop()


# --------------------------------------------------------------------- --check-config -----

_GOOD = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        timeout: 5s
        tls: {{insecure: true}}
    resolver:
      static:
        hostnames: [tier2-0:4317, tier2-1]
shutdown:
  drain_timeout: 10s
"""


def _check(path: Path, env: dict[str, str] | None = None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args, "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=path.parent,
    )


def test_check_config_accepts_a_good_file_without_starting_anything(tmp_path: Path) -> None:
    # The configured gRPC port is taken: a check that tried to listen would fail.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        path = tmp_path / "good.yaml"
        path.write_text(_GOOD.format(grpc=f"127.0.0.1:{taken.getsockname()[1]}"))
        result = _check(path, None, "--config", str(path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"config ok: {path}"
        # The path may come from RINGLEADER_CONFIG instead of --config.
        result = _check(path, {"RINGLEADER_CONFIG": str(path)})
        assert result.returncode == 0, result.stderr


def _replace(old: str, new: str) -> str:
    text = _GOOD.format(grpc="127.0.0.1:4317")
    assert old in text
    return text.replace(old, new, 1)


BAD_CONFIGS = {
    "two resolvers": (
        _replace("        hostnames: [tier2-0:4317, tier2-1]", "        hostnames: [a]\n      dns: {hostname: b}"),
        "exporters.loadbalancing.resolver",
    ),
    "unknown key": (
        _replace("        timeout: 5s", "        timeot: 5s"),
        "exporters.loadbalancing.protocol.otlp.timeot",
    ),
    "bare number duration": (
        _replace("        timeout: 5s", "        timeout: 5"),
        "exporters.loadbalancing.protocol.otlp.timeout",
    ),
    "wrong type in a list": (
        _replace("[tier2-0:4317, tier2-1]", "[tier2-0:4317, 4317]"),
        "exporters.loadbalancing.resolver.static.hostnames[1]",
    ),
    "routing key not valid for a pipeline": (
        _replace(
            "shutdown:",
            "service:\n  pipelines:\n    metrics: {receivers: [otlp], exporters: [loadbalancing]}\nshutdown:",
        ),
        "exporters.loadbalancing.routing_key",
    ),
    "zero message size": (
        _replace(
            "        endpoint: 127.0.0.1:4317", "        endpoint: 127.0.0.1:4317\n        max_recv_msg_size_mib: 0"
        ),
        "receivers.otlp.protocols.grpc.max_recv_msg_size_mib",
    ),
    "a processor that changes data": (
        "processors:\n  attributes: {actions: []}\n"
        + _GOOD.format(grpc="127.0.0.1:4317")
        + "service:\n  pipelines:\n    traces:\n"
        + "      {receivers: [otlp], processors: [attributes], exporters: [loadbalancing]}\n",
        "processors.attributes",
    ),
    "negative drain timeout": (
        _replace("  drain_timeout: 10s", "  drain_timeout: -1s"),
        "shutdown.drain_timeout",
    ),
    "YAML 1.1 boolean": (
        _replace("{insecure: true}", "{insecure: yes}"),
        "exporters.loadbalancing.protocol.otlp.tls.insecure",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_check_config_rejects_a_bad_file_with_exit_2_and_one_line_naming_the_key(tmp_path: Path, case: str) -> None:
    text, key_path = BAD_CONFIGS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = _check(path, None, "--config", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"config error at {key_path}: " in lines[0], lines[0]
    assert result.stdout == ""
