"""Ringleader's /metrics carries the collector self-metrics dashboards use, as upstream v0.161 has them.

The real upstream collector v0.161 (built from Go modules) and a Ringleader data plane run the
same configuration in front of the same sinks and get the same telemetrygen traffic over gRPC and
HTTP; then both are scraped. Every ``otelcol_receiver_*``, ``otelcol_exporter_*`` and
``otelcol_loadbalancer_*`` family upstream exposes must exist in Ringleader's scrape with the same
type and the same label names (counters without ``_total``), apart from a short list Ringleader
does not provide (named below, documented in docs/operations.md), and Ringleader must expose no
``otelcol_*`` family upstream does not. The item counts must agree as well.

A second round puts a dead backend in the set with queues and retries off, so both refuse data
and count failed sends: the failure families must match too.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.otelcol import Collector, free_port, run_telemetrygen
from tests.harness import DataPlaneProcess, SinkProcess, grpc_export, http_post, trace_request, wait_until

# Families upstream v0.161 exposes that Ringleader does not (docs/operations.md says why).
NOT_PROVIDED = {
    "otelcol_exporter_in_flight_requests",
    "otelcol_exporter_enqueue_size",
    "otelcol_exporter_enqueue_size_bytes",
}
SCOPE = ("otelcol_receiver_", "otelcol_exporter_", "otelcol_loadbalancer_")
TRAFFIC = {"traces": ("--traces", 40), "logs": ("--logs", 40), "metrics": ("--metrics", 40)}
DEAD_ROUND_REQUESTS, DEAD_ROUND_TRACES = 5, 20
NOUN = {"traces": "spans", "logs": "log_records", "metrics": "metric_points"}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    """A Prometheus text exposition: family types, label-name sets and sample values."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.labels: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind
                continue
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            assert match, f"unparsable exposition line: {line!r}"
            name, raw_labels, value = match.groups()
            labels = dict(_LABEL.findall(raw_labels or ""))
            self.samples[name].append((labels, float(value)))
            self.labels[self._family(name)].add(tuple(sorted(k for k in labels if k != "le")))

    def _family(self, sample: str) -> str:
        if sample in self.types:
            return sample
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample.removesuffix(suffix)
            if base != sample and self.types.get(base) == "histogram":
                return base
        return sample

    def families(self) -> dict[str, tuple[str, frozenset[tuple[str, ...]]]]:
        return {
            name: (kind, frozenset(self.labels.get(name, set())))
            for name, kind in self.types.items()
            if name.startswith(SCOPE)
        }

    def total(self, name: str, **labels: str) -> float:
        return sum(v for lab, v in self.samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[list[SinkProcess]]:
    started = [SinkProcess(tmp_path, f"sink{i}").start() for i in range(2)]
    try:
        yield started
    finally:
        for sink in started:
            sink.stop()


def exporter_block(hostnames: list[str], healthy: bool) -> dict[str, Any]:
    """The same loadbalancing exporter settings for both implementations."""
    otlp: dict[str, Any] = {"tls": {"insecure": True}, "timeout": "2s"}
    block: dict[str, Any] = {"resolver": {"static": {"hostnames": hostnames}}, "protocol": {"otlp": otlp}}
    if healthy:
        block["sending_queue"] = {"enabled": True, "queue_size": 500}
    else:
        otlp["retry_on_failure"] = {"enabled": False}
        otlp["sending_queue"] = {"enabled": False}
    return block


def send_traffic(bin_dir: Path, grpc: str, http: str, healthy: bool) -> None:
    """Healthy round: telemetrygen over gRPC and HTTP for every signal, paced. Dead-backend round:
    raw trace requests (telemetrygen's SDK would retry refused exports for a minute), each with
    DEAD_ROUND_TRACES trace IDs so that both backends own some."""
    if not healthy:
        for _ in range(DEAD_ROUND_REQUESTS):
            payload = trace_request([(os.urandom(16), os.urandom(8)) for _ in range(DEAD_ROUND_TRACES)])
            grpc_export(grpc, "traces", payload)
            http_post(f"http://{http}/v1/traces", payload)
        return
    for signal, (flag, count) in TRAFFIC.items():
        for target, extra in ((grpc, []), (http, ["--otlp-http"])):
            run_telemetrygen(
                [signal, "--otlp-endpoint", target, "--otlp-insecure", *extra, flag, str(count), "--rate", "200"],
                bin_dir=bin_dir,
            )


def run_both(
    tmp_path: Path, bin_dir: Path, hostnames: list[str], healthy: bool
) -> tuple[Scrape, Scrape]:
    grpc_port, http_port = free_port(), free_port()
    upstream_cfg: dict[str, Any] = {
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}, "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "exporters": {"loadbalancing": exporter_block(hostnames, healthy)},
        "service": {"pipelines": {
            s: {"receivers": ["otlp"], "exporters": ["loadbalancing"]} for s in ("traces", "logs", "metrics")}},
    }
    if healthy:  # telemetrygen: one parent and one child span per trace
        expected = {s: 2 * count * (2 if s == "traces" else 1) for s, (_, count) in TRAFFIC.items()}
    else:
        expected = {"traces": 2 * DEAD_ROUND_REQUESTS * DEAD_ROUND_TRACES}

    with Collector(upstream_cfg, tmp_path / "upstream", bin_dir=bin_dir) as collector:
        send_traffic(bin_dir, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", healthy)
        upstream = wait_until(lambda: _settled(Scrape(collector.scrape()), expected, healthy), 60, what="upstream")

    workdir = tmp_path / "ringleader"
    workdir.mkdir()
    dp_cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}},
        "exporters": {"loadbalancing": exporter_block(hostnames, healthy)},
    }
    dataplane = DataPlaneProcess(workdir, dp_cfg).start()
    try:
        send_traffic(bin_dir, dataplane.grpc_endpoint, dataplane.http_endpoint.removeprefix("http://"), healthy)
        ours = wait_until(
            lambda: _settled(Scrape(dataplane.get("/metrics")[1].decode()), expected, healthy), 60, what="ringleader"
        )
    finally:
        dataplane.stop()
    return upstream, ours


def _settled(scrape: Scrape, expected: dict[str, int], healthy: bool) -> Scrape | None:
    """The scrape once every item was accounted for (accepted and sent, or refused)."""
    for signal, n in expected.items():
        noun = NOUN[signal]
        accepted = scrape.total(f"otelcol_receiver_accepted_{noun}")
        if healthy:
            done = accepted == n == scrape.total(f"otelcol_exporter_sent_{noun}")
        else:
            done = accepted + scrape.total(f"otelcol_receiver_refused_{noun}") >= n
        if not done:
            return None
    return scrape


def compare(upstream: Scrape, ours: Scrape) -> list[str]:
    theirs, mine = upstream.families(), ours.families()
    problems = []
    for name, (kind, labels) in sorted(theirs.items()):
        if name in NOT_PROVIDED:
            continue
        if name not in mine:
            problems.append(f"missing {name} ({kind} {sorted(labels)})")
        elif mine[name] != (kind, labels):
            got_kind, got_labels = mine[name]
            problems.append(f"{name}: upstream {kind} {sorted(labels)}, ringleader {got_kind} {sorted(got_labels)}")
    problems += [f"extra {name}: upstream has no such family" for name in sorted(set(mine) - set(theirs))]
    return problems


def test_healthy_traffic_gives_the_same_families_labels_types_and_counts_as_upstream(
    tmp_path: Path, otelcol_bin_dir: Path, sinks: list[SinkProcess]
) -> None:
    upstream, ours = run_both(tmp_path, otelcol_bin_dir, [s.endpoint for s in sinks], healthy=True)
    assert compare(upstream, ours) == []
    for signal in TRAFFIC:
        noun = NOUN[signal]
        for transport in ("grpc", "http"):
            name = f"otelcol_receiver_accepted_{noun}"
            assert ours.total(name, transport=transport) == upstream.total(name, transport=transport) > 0
        assert ours.total(f"otelcol_exporter_sent_{noun}") == upstream.total(f"otelcol_exporter_sent_{noun}")
    # The families Ringleader must not suffix, checked on the raw names.
    for name in ("otelcol_loadbalancer_num_resolutions", "otelcol_loadbalancer_num_backend_updates",
                 "otelcol_loadbalancer_backend_outcome", "otelcol_exporter_sent_spans"):
        assert ours.types[name] == "counter" and name in ours.samples and f"{name}_total" not in ours.samples


def test_a_dead_backend_gives_the_same_failure_families_as_upstream(
    tmp_path: Path, otelcol_bin_dir: Path, sinks: list[SinkProcess]
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    upstream, ours = run_both(tmp_path, otelcol_bin_dir, [sinks[0].endpoint, dead], healthy=False)
    assert compare(upstream, ours) == []
    assert upstream.total("otelcol_receiver_refused_spans") > 0 and ours.total("otelcol_receiver_refused_spans") > 0
    assert "otelcol_exporter_send_failed_spans" in ours.types
    assert ours.total("otelcol_loadbalancer_backend_outcome", endpoint=dead, success="false") > 0


def test_refusals_map_to_refused_or_failed_like_upstream_and_undecodable_ones_are_left_out() -> None:
    from dataplane.collector_metrics import CollectorSelfMetrics
    from dataplane.config import parse_config
    from dataplane.telemetry import Telemetry

    cfg = parse_config(
        {
            "receivers": {"otlp/edge": {"protocols": {"grpc": {}}}},
            "exporters": {"load_balancing/t2": {"resolver": {"static": {"hostnames": ["a:4317"]}}}},
        },
        "test",
    )
    telemetry = Telemetry()
    telemetry.registry.register(CollectorSelfMetrics(telemetry.registry, cfg, telemetry.refused_by_transport))
    telemetry.record_refused("traces", "queue_full", 7, transport="grpc")
    telemetry.record_refused("traces", "internal_error", 3, transport="http")
    telemetry.record_refused("traces", "malformed", 5, transport="grpc")
    telemetry.record_failed("a:4317", "traces", "UNAVAILABLE", 2)
    telemetry.record_failed("a:4317", "traces", "rejected_by_backend", 1)
    scrape = Scrape(telemetry.render().decode())

    rec = {"receiver": "otlp/edge"}
    assert scrape.total("otelcol_receiver_refused_spans", **rec, transport="grpc") == 7
    assert scrape.total("otelcol_receiver_failed_spans", **rec, transport="http") == 3
    assert scrape.total("otelcol_receiver_refused_spans") + scrape.total("otelcol_receiver_failed_spans") == 10
    assert "otelcol_receiver_refused_log_records" not in scrape.types  # no log request yet
    exp = {"exporter": "load_balancing/t2"}
    failed = "otelcol_exporter_send_failed_spans"
    assert scrape.total(failed, **exp, error_type="Unavailable", error_permanent="false") == 2
    assert scrape.total(failed, **exp, error_type="rejected_by_backend", error_permanent="true") == 1
    assert scrape.total("otelcol_exporter_sent_spans", **exp) == 0
    # Ringleader's own counters keep prometheus_client's _total; upstream-named ones do not.
    assert scrape.types["ringleader_items_refused_total"] == "counter"
    assert "otelcol_receiver_refused_spans_total" not in scrape.samples


def test_sent_and_failed_totals_do_not_go_down_when_a_backend_leaves() -> None:
    # A counter that decreases is a reset to Prometheus: rate() would show a spike.
    from dataplane.collector_metrics import CollectorSelfMetrics
    from dataplane.config import parse_config
    from dataplane.telemetry import Telemetry

    cfg = parse_config(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {}}}},
            "exporters": {"loadbalancing": {"resolver": {"static": {"hostnames": ["a:4317", "b:4317"]}}}},
        },
        "test",
    )
    telemetry = Telemetry()
    telemetry.registry.register(
        CollectorSelfMetrics(telemetry.registry, cfg, telemetry.refused_by_transport, telemetry.retired_items)
    )
    for endpoint, items in (("a:4317", 5), ("b:4317", 7)):
        telemetry.items_exported.labels(endpoint=endpoint, signal="traces").inc(items)
    telemetry.record_failed("a:4317", "traces", "UNAVAILABLE", 2)
    before = Scrape(telemetry.render().decode())
    telemetry.forget_endpoint("a:4317")
    after = Scrape(telemetry.render().decode())
    assert after.total("ringleader_items_exported_total", endpoint="a:4317") == 0  # its series are gone
    for name in ("otelcol_exporter_sent_spans", "otelcol_exporter_send_failed_spans"):
        assert after.total(name) == before.total(name) > 0
