"""An existing tier-1 collector config works unchanged: honoured, ignored with one warning, or refused.

The configs here are used as published, not edited: a typical tier-1 config with
``batch`` and ``memory_limiter`` processors, ``health_check``, ``pprof`` and
``zpages`` extensions and ``service.telemetry``; and the two-tier guide's tier-1
examples (/work/shared/reference/two-tier-tail-sampling-guide.txt, whose text
lost its indentation in the reference copy: restored here, nothing else). The
guide's excerpts omit the ``receivers`` block and the ``batch`` definition their
pipelines name, which the collector would refuse as well: the tests show the
excerpt refused for exactly that, and accepted once those blocks are added
around the unedited text.
"""

from __future__ import annotations

import logging
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataplane.config import ConfigError, load_config
from dataplane.config_model import DNSResolverConfig, HealthCheckConfig, TelemetryConfig
from tests.harness import DataPlaneProcess, SinkProcess, free_port, wait_until

TYPICAL_TIER1 = """
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
  pprof:
    endpoint: localhost:1777
  zpages:
    endpoint: localhost:55679

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318

processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 1500
    spike_limit_mib: 512
  batch:
    send_batch_size: 8192
    timeout: 200ms

exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        timeout: 1s
        tls:
          insecure: true
    resolver:
      dns:
        hostname: otelcol-tier2-headless.observability.svc.cluster.local
        port: 4317

service:
  extensions: [health_check, pprof, zpages]
  telemetry:
    logs:
      level: warn
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 0.0.0.0
                port: 8888
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [loadbalancing]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [loadbalancing]
"""

# The guide's Example 1, as published (indentation restored).
GUIDE_EXAMPLE_1 = """
# tier1-collector-config.yaml
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        timeout: 1s
        tls:
          insecure: true
    resolver:
      dns:
        hostname: otelcol-tier2-headless.observability.svc.cluster.local
        port: 4317
        interval: 5s # DNS re-query interval (time to reflect Pod scaling events)
        timeout: 1s
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [loadbalancing] # connect with exporter named 'loadbalancing'
"""

# Example 2 (k8s resolver), as published.
GUIDE_EXAMPLE_2 = """
# tier1-collector-config.yaml (k8s resolver version)
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        timeout: 1s
        tls:
          insecure: true
    resolver:
      k8s:
        service: otelcol-tier2.observability
        ports:
          - 4317
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [loadbalancing]
"""

# What the excerpts leave out: the receiver and the processor their pipeline names.
OMITTED_BLOCKS = """
receivers:
  otlp:
    protocols:
      grpc:
processors:
  batch:
"""


def _load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def _warnings(caplog: pytest.LogCaptureFixture, key_path: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and key_path in r.getMessage()]


def test_a_typical_tier1_config_with_all_four_components_loads_unchanged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        cfg = _load(tmp_path, TYPICAL_TIER1)
    # Honoured: memory_limiter -> the memory budget, health_check -> its endpoint,
    # service.telemetry -> Ringleader's telemetry, pipelines -> the signals.
    assert cfg.memory.limit == 1500 << 20
    assert cfg.health_check == HealthCheckConfig(endpoint="0.0.0.0:13133", path="/")
    assert cfg.telemetry == TelemetryConfig(endpoint="0.0.0.0:8888", log_level="warn")
    assert cfg.signals == ("traces", "logs")
    assert cfg.exporter.resolver == DNSResolverConfig(
        hostname="otelcol-tier2-headless.observability.svc.cluster.local", port="4317"
    )
    # Ignored, one warning each, saying why.
    for component in ("processors.batch", "extensions.pprof", "extensions.zpages"):
        found = _warnings(caplog, component)
        assert len(found) == 1, (component, caplog.messages)
        assert "is ignored" in found[0]
    assert len(_warnings(caplog, "service.telemetry.metrics: level ignored")) == 1
    assert not _warnings(caplog, "memory_limiter") and not _warnings(caplog, "health_check")


def test_a_memory_limit_in_percent_is_a_share_of_the_container_or_machine_memory(tmp_path: Path) -> None:
    from dataplane.config._collector import _total_memory

    text = TYPICAL_TIER1.replace("limit_mib: 1500\n    spike_limit_mib: 512", "limit_percentage: 75")
    assert _load(tmp_path, text).memory.limit == _total_memory() * 75 // 100


def test_the_guide_excerpts_are_refused_only_for_the_blocks_they_omit(tmp_path: Path) -> None:
    for excerpt in (GUIDE_EXAMPLE_1, GUIDE_EXAMPLE_2):
        with pytest.raises(ConfigError) as info:
            _load(tmp_path, excerpt)
        assert str(info.value) == "config error at receivers: required (an otlp receiver)"


@pytest.mark.parametrize("excerpt", [GUIDE_EXAMPLE_1, GUIDE_EXAMPLE_2], ids=["dns", "k8s"])
def test_the_guide_examples_load_unedited_with_their_omitted_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, excerpt: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        cfg = _load(tmp_path, OMITTED_BLOCKS + excerpt)
    assert cfg.signals == ("traces",)
    assert cfg.exporter.protocol.timeout == 1.0 and cfg.exporter.protocol.tls.insecure
    assert len(_warnings(caplog, "processors.batch is ignored")) == 1


def test_the_guide_resiliency_example_is_refused_at_its_misspelt_queue_key(tmp_path: Path) -> None:
    # Example 3 writes "queue:" where upstream's key is "sending_queue" (the collector refuses it too).
    text = (
        OMITTED_BLOCKS.replace("processors:\n  batch:\n", "")
        + """
exporters:
  loadbalancing:
    routing_key: traceID
    resolver:
      dns:
        hostname: otelcol-tier2-headless.observability.svc.cluster.local
        interval: 5s
    queue:
      enabled: true
"""
    )
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert info.value.key_path == "exporters.loadbalancing.queue"
    assert "sending_queue" in info.value.message


def test_unused_components_are_ignored_like_the_collector_ignores_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        TYPICAL_TIER1.replace("service:\n  extensions: [health_check, pprof, zpages]", "service:")
        + """
connectors:
  spanmetrics:
"""
    )
    text = text.replace(
        "processors:\n  memory_limiter:", "processors:\n  attributes/unused:\n    actions: []\n  memory_limiter:"
    )
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        cfg = _load(tmp_path, text)
    assert cfg.health_check is None  # defined but not in service.extensions: not started
    for component in ("extensions.health_check", "processors.attributes/unused", "connectors.spanmetrics"):
        assert len(_warnings(caplog, component)) == 1, component


def test_the_health_check_endpoint_answers_like_the_collector_s(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path, "backend").start()
    try:
        data = yaml.safe_load(TYPICAL_TIER1)
        health_port = free_port()
        data["extensions"]["health_check"]["endpoint"] = f"127.0.0.1:{health_port}"
        data["exporters"]["loadbalancing"]["resolver"] = {"static": {"hostnames": [sink.endpoint]}}
        process = DataPlaneProcess(tmp_path, data)
        # The harness sets telemetry.endpoint to a free port: the collector's reader must agree with it.
        written = yaml.safe_load(process.config_path.read_text())
        reader = written["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
        reader.update(host="127.0.0.1", port=process.admin_port)
        process.config_path.write_text(yaml.safe_dump(written, sort_keys=False))
        process.start()
        try:

            def status(path: str) -> int:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}{path}", timeout=5) as resp:
                        return int(resp.status)
                except urllib.error.HTTPError as exc:
                    return exc.code

            # The guide's probes ask /health; the collector's default path "/" answers every path.
            wait_until(lambda: status("/health") == 200, 30, what="health_check answering 200")
            assert status("/") == 200
            assert process.get("/readyz")[0] == 200
        finally:
            process.stop()
    finally:
        sink.stop()


def _with_service_telemetry(telemetry: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(TYPICAL_TIER1)
    data["service"]["telemetry"] = telemetry
    return data


def test_service_telemetry_address_and_level_become_ringleader_s_telemetry(caplog: pytest.LogCaptureFixture) -> None:
    from dataplane.config import parse_config

    cfg = parse_config(_with_service_telemetry({"logs": {"level": "DEBUG"}, "metrics": {"address": ":9999"}}))
    assert cfg.telemetry == TelemetryConfig(endpoint=":9999", log_level="debug")
    cfg = parse_config(_with_service_telemetry({"logs": {"level": "fatal", "encoding": "json"}}))
    assert cfg.telemetry == TelemetryConfig(endpoint="0.0.0.0:8888", log_level="error")
    push = {"periodic": {"exporter": {"otlp": {"protocol": "grpc", "endpoint": "http://x:4317"}}}}
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        cfg = parse_config(_with_service_telemetry({"metrics": {"readers": [push]}}))
    assert cfg.telemetry.endpoint == "0.0.0.0:8888"
    assert len(_warnings(caplog, "1 push reader(s) ignored")) == 1


def test_two_prometheus_readers_are_refused_at_the_second() -> None:
    from dataplane.config import parse_config

    reader = {"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": 8888}}}}
    other = {"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": 9999}}}}
    with pytest.raises(ConfigError) as info:
        parse_config(_with_service_telemetry({"metrics": {"readers": [reader, other]}}))
    assert info.value.key_path == "service.telemetry.metrics.readers[1].pull.exporter.prometheus"
