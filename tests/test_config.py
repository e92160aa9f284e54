"""The config loader: collector-shaped YAML in, typed model or one-line ConfigError out."""

from __future__ import annotations

import copy
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataplane.config import ConfigError, load_config, parse_config, parse_duration, parse_size
from dataplane.config_model import (
    AWSCloudMapResolverConfig,
    Config,
    DNSResolverConfig,
    GRPCReceiverConfig,
    HTTPReceiverConfig,
    K8sResolverConfig,
    KeepaliveConfig,
    LoadBalancingConfig,
    OTLPExporterConfig,
    QueueConfig,
    ReceiverConfig,
    RetryConfig,
    ShutdownConfig,
    StaticResolverConfig,
    TelemetryConfig,
    TLSConfig,
)

BASE: dict[str, Any] = {
    "receivers": {"otlp": {"protocols": {"grpc": None}}},
    "exporters": {"loadbalancing": {"resolver": {"static": {"hostnames": ["tier2-a:4317", "tier2-b:4317"]}}}},
}


class Replace:
    """In a patch: replace the value wholesale instead of merging into it."""

    def __init__(self, value: object) -> None:
        self.value = value


DROP = object()  # in a patch: delete the key


def patched(patch: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    result = copy.deepcopy(BASE if base is None else base)

    def merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is DROP:
                target.pop(key, None)
            elif isinstance(value, Replace):
                target[key] = copy.deepcopy(value.value)
            elif isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            else:
                target[key] = copy.deepcopy(value)

    merge(result, patch)
    return result


def lb_patch(changes: dict[str, Any]) -> dict[str, Any]:
    return {"exporters": {"loadbalancing": changes}}


def otlp_patch(changes: dict[str, Any]) -> dict[str, Any]:
    return lb_patch({"protocol": {"otlp": changes}})


def resolver(block: dict[str, Any]) -> dict[str, Any]:
    return lb_patch({"resolver": Replace(block)})


def error_of(data: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return info.value


# ------------------------------------------------------------------------ defaults
def test_minimal_config_gets_upstream_defaults() -> None:
    cfg = parse_config(BASE)
    assert cfg.receivers == ReceiverConfig(
        grpc=GRPCReceiverConfig("0.0.0.0:4317", 4 * 1024 * 1024), http=None
    )
    lb = cfg.exporter
    assert lb.resolver == StaticResolverConfig(hostnames=("tier2-a:4317", "tier2-b:4317"))
    assert lb.routing_key is None
    assert [lb.routing_key_for(s) for s in ("traces", "logs", "metrics")] == ["traceID", "service", "service"]
    # loadbalancing level: no timeout, queue and retry off (upstream keeps them off for compatibility)
    assert lb.timeout == 0.0
    assert lb.sending_queue.enabled is False
    assert lb.retry_on_failure.enabled is False
    assert lb.ring_algorithm == "ringleader"
    otlp = lb.protocol
    assert otlp.timeout == 5.0
    assert otlp.compression == "gzip"
    assert otlp.keepalive is None
    assert otlp.headers == ()
    assert otlp.balancer_name == ""
    assert otlp.wait_for_ready is False
    assert otlp.tls == TLSConfig(insecure=False, min_version="1.2", max_version="", reload_interval=0.0)
    assert otlp.sending_queue == QueueConfig(
        enabled=True, num_consumers=10, queue_size=1000, sizer="requests", block_on_overflow=False
    )
    assert otlp.retry_on_failure == RetryConfig(
        enabled=True,
        initial_interval=5.0,
        randomization_factor=0.5,
        multiplier=1.5,
        max_interval=30.0,
        max_elapsed_time=300.0,
    )
    assert cfg.telemetry == TelemetryConfig(endpoint="0.0.0.0:8888", log_level="info")
    assert cfg.shutdown == ShutdownConfig(drain_timeout=30.0)
    assert cfg.signals == ("traces", "logs", "metrics")


def test_null_protocol_enables_it_with_defaults_and_absent_one_stays_off() -> None:
    cfg = parse_config(patched({"receivers": {"otlp": {"protocols": Replace({"http": None})}}}))
    assert cfg.receivers.grpc is None
    assert cfg.receivers.http == HTTPReceiverConfig("0.0.0.0:4318", 20 * 1024 * 1024)


def test_resolver_defaults_are_upstreams() -> None:
    dns = parse_config(patched(resolver({"dns": {"hostname": "tier2.svc"}}))).exporter.resolver
    assert dns == DNSResolverConfig(
        hostname="tier2.svc", port="", interval=5.0, timeout=1.0, server=None, srv=False
    )
    k8s = parse_config(patched(resolver({"k8s": {"service": "tier2.observability"}}))).exporter.resolver
    assert k8s == K8sResolverConfig(
        service="tier2.observability", ports=(4317,), timeout=60.0, return_hostnames=False, debounce=0.2
    )
    aws = parse_config(patched(resolver({"aws_cloud_map": {"namespace": "ns", "service_name": "t2"}})))
    assert aws.exporter.resolver == AWSCloudMapResolverConfig(
        namespace="ns", service_name="t2", health_status="HEALTHY", interval=30.0, timeout=5.0
    )


# ------------------------------------------------------------------ full round trip
def test_config_with_every_key_set_round_trips_to_the_expected_dataclasses(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    text = f"""
        receivers:
          otlp/edge:
            protocols:
              grpc:
                endpoint: 127.0.0.1:14317
                max_recv_msg_size_mib: 16
              http:
                endpoint: "[::1]:14318"
                max_request_body_size: 8MiB
        processors: {{}}
        extensions:
        connectors: {{}}
        exporters:
          load_balancing/tier2:
            routing_key: attributes
            routing_attributes: [service.name, span.kind]
            timeout: 2s
            ring_algorithm: upstream
            sending_queue:
              enabled: true
              num_consumers: 4
              queue_size: 5000
              sizer: items
              block_on_overflow: true
            retry_on_failure:
              enabled: true
              initial_interval: 250ms
              randomization_factor: 0.1
              multiplier: 2
              max_interval: 1m30s
              max_elapsed_time: 0
            resolver:
              dns:
                hostname: tier2-headless.observability.svc.cluster.local
                port: "4317"
                interval: 10s
                timeout: 2s
                server: 127.0.0.1:5353
                srv: false
            protocol:
              otlp:
                endpoint: ignored:4317
                timeout: 1.5s
                compression: zstd
                tls:
                  insecure: false
                  insecure_skip_verify: false
                  ca_file: {tmp_path / "ca.pem"}
                  cert_file: {tmp_path / "client.pem"}
                  key_file: {tmp_path / "client.key"}
                  server_name_override: tier2.internal
                  include_system_ca_certs_pool: true
                  min_version: "1.2"
                  max_version: "1.3"
                  reload_interval: 1h
                headers:
                  X-Scope-OrgID: tenant-1
                  authorization: Bearer abc
                keepalive:
                  time: 20s
                  timeout: 5s
                  permit_without_stream: true
                sending_queue:
                  enabled: false
                  num_consumers: 2
                  queue_size: 100
                  sizer: bytes
                  block_on_overflow: false
                retry_on_failure:
                  enabled: false
                  initial_interval: 1s
                  randomization_factor: 0
                  multiplier: 1
                  max_interval: 10s
                  max_elapsed_time: 2m
                balancer_name: pick_first
                authority: tier2.example
                wait_for_ready: true
                read_buffer_size: 64KiB
                write_buffer_size: 1048576
                user_agent: ringleader-test/1.0
        service:
          telemetry:
            logs: {{level: debug}}
          extensions: []
          pipelines:
            traces:
              receivers: [otlp/edge]
              processors: []
              exporters: [load_balancing/tier2]
            metrics/all:
              receivers: [otlp/edge]
              exporters: [load_balancing/tier2]
        telemetry:
          endpoint: 127.0.0.1:18888
          log_level: warn
        shutdown:
          drain_timeout: 45s
    """
    expected = Config(
        receivers=ReceiverConfig(
            grpc=GRPCReceiverConfig(endpoint="127.0.0.1:14317", max_recv_msg_size=16 * 1024 * 1024),
            http=HTTPReceiverConfig(endpoint="[::1]:14318", max_request_body_size=8 * 1024 * 1024),
        ),
        exporter=LoadBalancingConfig(
            resolver=DNSResolverConfig(
                hostname="tier2-headless.observability.svc.cluster.local",
                port="4317",
                interval=10.0,
                timeout=2.0,
                server="127.0.0.1:5353",
                srv=False,
            ),
            routing_key="attributes",
            routing_attributes=("service.name", "span.kind"),
            timeout=2.0,
            sending_queue=QueueConfig(
                enabled=True, num_consumers=4, queue_size=5000, sizer="items", block_on_overflow=True
            ),
            retry_on_failure=RetryConfig(
                enabled=True,
                initial_interval=0.25,
                randomization_factor=0.1,
                multiplier=2.0,
                max_interval=90.0,
                max_elapsed_time=0.0,
            ),
            protocol=OTLPExporterConfig(
                timeout=1.5,
                compression="zstd",
                tls=TLSConfig(
                    insecure=False,
                    insecure_skip_verify=False,
                    ca_file=str(tmp_path / "ca.pem"),
                    cert_file=str(tmp_path / "client.pem"),
                    key_file=str(tmp_path / "client.key"),
                    server_name_override="tier2.internal",
                    include_system_ca_certs_pool=True,
                    min_version="1.2",
                    max_version="1.3",
                    reload_interval=3600.0,
                ),
                headers=(("X-Scope-OrgID", "tenant-1"), ("authorization", "Bearer abc")),
                keepalive=KeepaliveConfig(time=20.0, timeout=5.0, permit_without_stream=True),
                sending_queue=QueueConfig(
                    enabled=False, num_consumers=2, queue_size=100, sizer="bytes", block_on_overflow=False
                ),
                retry_on_failure=RetryConfig(
                    enabled=False,
                    initial_interval=1.0,
                    randomization_factor=0.0,
                    multiplier=1.0,
                    max_interval=10.0,
                    max_elapsed_time=120.0,
                ),
                balancer_name="pick_first",
                authority="tier2.example",
                wait_for_ready=True,
                read_buffer_size=64 * 1024,
                write_buffer_size=1048576,
                user_agent="ringleader-test/1.0",
            ),
            ring_algorithm="upstream",
        ),
        telemetry=TelemetryConfig(endpoint="127.0.0.1:18888", log_level="warn"),
        shutdown=ShutdownConfig(drain_timeout=45.0),
        signals=("traces", "metrics"),
        receiver_id="otlp/edge",
        exporter_id="load_balancing/tier2",
    )
    assert load_text(tmp_path, text) == expected


@pytest.mark.parametrize("service", ["tier2", "tier2.observability", "tier2.observability.svc.cluster.local"])
def test_k8s_service_may_be_a_name_a_qualified_name_or_the_service_fqdn(service: str) -> None:
    assert parse_config(
        patched(resolver({"k8s": {"service": service}}))
    ).exporter.resolver == K8sResolverConfig(service=service)


def test_dns_server_port_defaults_to_53_when_omitted() -> None:
    dns = parse_config(patched(resolver({"dns": {"hostname": "tier2", "server": "10.96.0.10"}}))).exporter
    assert dns.resolver == DNSResolverConfig(hostname="tier2", server="10.96.0.10")
    srv = parse_config(patched(resolver({"dns": {"hostname": "_otlp._tcp.tier2", "srv": True}}))).exporter
    assert srv.resolver == DNSResolverConfig(hostname="_otlp._tcp.tier2", srv=True)


def test_every_resolver_kind_round_trips_with_all_its_keys() -> None:
    k8s = {
        "service": "tier2",
        "ports": [4317, 14317],
        "timeout": "30s",
        "return_hostnames": True,
        "debounce": "1s",
    }
    assert parse_config(patched(resolver({"k8s": k8s}))).exporter.resolver == K8sResolverConfig(
        service="tier2", ports=(4317, 14317), timeout=30.0, return_hostnames=True, debounce=1.0
    )
    aws = {
        "namespace": "otel",
        "service_name": "tier2",
        "health_status": "HEALTHY_OR_ELSE_ALL",
        "interval": "1m",
        "timeout": "3s",
        "port": 4317,
        "owner_account": "123456789012",
    }
    assert parse_config(
        patched(resolver({"aws_cloud_map": aws}))
    ).exporter.resolver == AWSCloudMapResolverConfig(
        namespace="otel",
        service_name="tier2",
        health_status="HEALTHY_OR_ELSE_ALL",
        interval=60.0,
        timeout=3.0,
        port=4317,
        owner_account="123456789012",
    )


# --------------------------------------------------------------- error messages
def test_error_is_one_line_naming_the_key_path() -> None:
    err = error_of(patched(resolver({"static": {"hostnames": ["a:4317"]}, "dns": {"hostname": "tier2.svc"}})))
    assert err.key_path == "exporters.loadbalancing.resolver"
    assert err.message == "exactly one resolver must be set, found 2 (dns, static)"
    assert str(err) == (
        "config error at exporters.loadbalancing.resolver: "
        "exactly one resolver must be set, found 2 (dns, static)"
    )


def test_wrong_list_item_type_names_the_index() -> None:
    err = error_of(patched(resolver({"static": {"hostnames": ["a:4317", 4317]}})))
    assert str(err) == (
        "config error at exporters.loadbalancing.resolver.static.hostnames[1]: expected a string, got int"
    )


LB = "exporters.loadbalancing"
TRACES = {"receivers": ["otlp"], "exporters": ["loadbalancing"]}
OTLP = f"{LB}.protocol.otlp"

ERROR_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # top level and components
    ("unknown top-level key", {"pipelines": {}}, "pipelines", "unknown top-level key"),
    (
        "processor that changes data",
        {
            "processors": {"attributes/env": {"actions": []}},
            "service": {
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "processors": ["attributes/env"], "exporters": ["loadbalancing"]}
                }
            },
        },
        "processors.attributes/env",
        "the attributes processor changes data, and Ringleader forwards data unchanged",
    ),
    (
        "unsupported extension enabled",
        {
            "extensions": {"oauth2client": {}},
            "service": {"extensions": ["oauth2client"], "pipelines": {"traces": TRACES}},
        },
        "extensions.oauth2client",
        "the oauth2client extension is not supported by Ringleader",
    ),
    (
        "connector in a pipeline",
        {
            "connectors": {"spanmetrics": {}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["loadbalancing", "spanmetrics"]}}
            },
        },
        "service.pipelines.traces.exporters[1]",
        "'spanmetrics' is a connector: Ringleader cannot run connectors",
    ),
    (
        "other exporter in a pipeline",
        {
            "exporters": {"otlp": {"endpoint": "x:4317"}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["loadbalancing", "otlp"]}}},
        },
        "exporters.otlp",
        "unsupported component (Ringleader only has the loadbalancing exporter)",
    ),
    (
        "memory_limiter without a limit",
        {
            "processors": {"memory_limiter": {"check_interval": "1s"}},
            "service": {
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "processors": ["memory_limiter"], "exporters": ["loadbalancing"]}
                }
            },
        },
        "processors.memory_limiter.limit_mib",
        "set limit_mib or limit_percentage",
    ),
    (
        "telemetry endpoints disagree",
        {
            "telemetry": {"endpoint": "0.0.0.0:8888"},
            "service": {"telemetry": {"metrics": {"address": "0.0.0.0:9999"}}, "pipelines": {"traces": TRACES}},
        },
        "telemetry.endpoint",
        "disagrees with service.telemetry's metrics endpoint",
    ),
    ("receivers missing", {"receivers": DROP}, "receivers", "required"),
    ("other receiver", {"receivers": {"kafka": {}}}, "receivers.kafka", "unsupported component"),
    (
        "two otlp receivers",
        {"receivers": {"otlp/b": {"protocols": {"grpc": None}}}},
        "receivers",
        "exactly one otlp receiver must be set, found 2 (otlp, otlp/b)",
    ),
    ("bad receiver id", {"receivers": Replace({"otlp/": {}})}, "receivers.otlp/", "invalid component ID"),
    (
        "no protocol",
        {"receivers": {"otlp": {"protocols": Replace({})}}},
        "receivers.otlp.protocols",
        "at least one protocol",
    ),
    (
        "grpc port out of range",
        {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:70000"}}}}},
        "receivers.otlp.protocols.grpc.endpoint",
        "host:port",
    ),
    (
        "zero message size",
        {"receivers": {"otlp": {"protocols": {"grpc": {"max_recv_msg_size_mib": 0}}}}},
        "receivers.otlp.protocols.grpc.max_recv_msg_size_mib",
        "greater than 0",
    ),
    (
        "bad body size",
        {"receivers": {"otlp": {"protocols": {"http": {"max_request_body_size": "20 potatoes"}}}}},
        "receivers.otlp.protocols.http.max_request_body_size",
        "invalid size",
    ),
    (
        "receiver tls",
        {"receivers": {"otlp": {"protocols": {"grpc": {"tls": {"cert_file": "x"}}}}}},
        "receivers.otlp.protocols.grpc.tls",
        "not supported",
    ),
    (
        "unknown protocol",
        {"receivers": {"otlp": {"protocols": {"thrift": None}}}},
        "receivers.otlp.protocols.thrift",
        "unknown key",
    ),
    ("exporters missing", {"exporters": DROP}, "exporters", "required"),
    (
        "other exporter",
        {"exporters": {"otlp": {"endpoint": "x:4317"}}},
        "exporters.otlp",
        "unsupported component",
    ),
    (
        "two loadbalancing exporters",
        {"exporters": {"load_balancing/b": {"resolver": {"static": {"hostnames": ["a"]}}}}},
        "exporters",
        "exactly one loadbalancing exporter must be set, found 2 (loadbalancing, load_balancing/b)",
    ),
    # routing
    ("bad routing key", lb_patch({"routing_key": "spanID"}), f"{LB}.routing_key", "valid values: traceID"),
    (
        "attributes without list",
        lb_patch({"routing_key": "attributes"}),
        f"{LB}.routing_attributes",
        'required when routing_key is "attributes"',
    ),
    (
        "list without attributes",
        lb_patch({"routing_key": "service", "routing_attributes": ["a"]}),
        f"{LB}.routing_attributes",
        'only valid when routing_key is "attributes"',
    ),
    (
        "empty attribute name",
        lb_patch({"routing_key": "attributes", "routing_attributes": ["a", ""]}),
        f"{LB}.routing_attributes[1]",
        "must not be empty",
    ),
    (
        "ring algorithm",
        lb_patch({"ring_algorithm": "maglev"}),
        f"{LB}.ring_algorithm",
        "ringleader, upstream",
    ),
    ("lb timeout as int", lb_patch({"timeout": 5}), f"{LB}.timeout", 'a duration such as "5s"'),
    ("queue spelled as in the guide", lb_patch({"queue": {"enabled": True}}), f"{LB}.queue", "sending_queue"),
    ("unknown lb key", lb_patch({"routing": {}}), f"{LB}.routing", "unknown key"),
    # resolvers
    ("no resolver", resolver({}), f"{LB}.resolver", "exactly one resolver must be set, found 0"),
    ("resolver missing", lb_patch({"resolver": DROP}), f"{LB}.resolver", "required"),
    (
        "alloy resolver name",
        resolver({"kubernetes": {"service": "x"}}),
        f"{LB}.resolver.kubernetes",
        "called k8s",
    ),
    (
        "static empty",
        resolver({"static": {"hostnames": []}}),
        f"{LB}.resolver.static.hostnames",
        "at least one",
    ),
    ("static missing list", resolver({"static": None}), f"{LB}.resolver.static.hostnames", "required"),
    (
        "static bad port",
        resolver({"static": {"hostnames": ["a:0"]}}),
        f"{LB}.resolver.static.hostnames[0]",
        "port",
    ),
    ("dns hostname missing", resolver({"dns": {"port": 4317}}), f"{LB}.resolver.dns.hostname", "required"),
    (
        "dns port zero",
        resolver({"dns": {"hostname": "h", "port": 0}}),
        f"{LB}.resolver.dns.port",
        "between 1",
    ),
    (
        "dns port text",
        resolver({"dns": {"hostname": "h", "port": "grpc"}}),
        f"{LB}.resolver.dns.port",
        "port",
    ),
    (
        "dns interval format",
        resolver({"dns": {"hostname": "h", "interval": "5 seconds"}}),
        f"{LB}.resolver.dns.interval",
        "invalid duration '5 seconds': expected a duration such as",
    ),
    (
        "dns zero interval",
        resolver({"dns": {"hostname": "h", "interval": "0s"}}),
        f"{LB}.resolver.dns.interval",
        "greater than zero",
    ),
    (
        "dns server",
        resolver({"dns": {"hostname": "h", "server": "10.0.0.10:99999"}}),
        f"{LB}.resolver.dns.server",
        "host:port",
    ),
    (
        "dns port with srv",
        resolver({"dns": {"hostname": "_otlp._tcp.tier2", "port": 4317, "srv": True}}),
        f"{LB}.resolver.dns.port",
        "cannot be used with srv: true",
    ),
    (
        "dns srv",
        resolver({"dns": {"hostname": "h", "srv": "yes"}}),
        f"{LB}.resolver.dns.srv",
        "expected a boolean",
    ),
    (
        "dns unknown",
        resolver({"dns": {"hostname": "h", "ttl": "5s"}}),
        f"{LB}.resolver.dns.ttl",
        "unknown key",
    ),
    (
        "k8s service",
        resolver({"k8s": {"service": "tier2.observability.cluster"}}),
        f"{LB}.resolver.k8s.service",
        "name.namespace",
    ),
    ("k8s no service", resolver({"k8s": {"ports": [4317]}}), f"{LB}.resolver.k8s.service", "required"),
    (
        "k8s port",
        resolver({"k8s": {"service": "a", "ports": [70000]}}),
        f"{LB}.resolver.k8s.ports[0]",
        "65535",
    ),
    (
        "k8s port as string",
        resolver({"k8s": {"service": "a", "ports": ["4317"]}}),
        f"{LB}.resolver.k8s.ports[0]",
        "expected an integer, got string '4317'",
    ),
    (
        "k8s no ports",
        resolver({"k8s": {"service": "a", "ports": []}}),
        f"{LB}.resolver.k8s.ports",
        "at least one",
    ),
    (
        "k8s negative debounce",
        resolver({"k8s": {"service": "a", "debounce": "-1s"}}),
        f"{LB}.resolver.k8s.debounce",
        "must not be negative",
    ),
    (
        "k8s hostnames flag",
        resolver({"k8s": {"service": "a", "return_hostnames": "true"}}),
        f"{LB}.resolver.k8s.return_hostnames",
        "expected a boolean (true or false), got string 'true'",
    ),
    (
        "cloud map health",
        resolver({"aws_cloud_map": {"namespace": "n", "service_name": "s", "health_status": "GOOD"}}),
        f"{LB}.resolver.aws_cloud_map.health_status",
        "HEALTHY_OR_ELSE_ALL",
    ),
    (
        "cloud map service",
        resolver({"aws_cloud_map": {"namespace": "n"}}),
        f"{LB}.resolver.aws_cloud_map.service_name",
        "required",
    ),
    (
        "cloud map port",
        resolver({"aws_cloud_map": {"namespace": "n", "service_name": "s", "port": 0}}),
        f"{LB}.resolver.aws_cloud_map.port",
        "between 1 and 65535",
    ),
    # queues and retries
    (
        "persistent queue",
        lb_patch({"sending_queue": {"storage": "file_storage"}}),
        f"{LB}.sending_queue.storage",
        "persistent queues are not supported",
    ),
    (
        "persistent sub-exporter queue",
        otlp_patch({"sending_queue": {"storage": "file_storage"}}),
        f"{OTLP}.sending_queue.storage",
        "persistent queues are not supported",
    ),
    (
        "zero consumers",
        lb_patch({"sending_queue": {"num_consumers": 0}}),
        f"{LB}.sending_queue.num_consumers",
        "at least 1",
    ),
    (
        "zero queue",
        otlp_patch({"sending_queue": {"queue_size": 0}}),
        f"{OTLP}.sending_queue.queue_size",
        "at least 1",
    ),
    (
        "sizer",
        otlp_patch({"sending_queue": {"sizer": "bits"}}),
        f"{OTLP}.sending_queue.sizer",
        "requests, items",
    ),
    (
        "queue batch",
        otlp_patch({"sending_queue": {"batch": {}}}),
        f"{OTLP}.sending_queue.batch",
        "not supported",
    ),
    (
        "randomization factor",
        lb_patch({"retry_on_failure": {"randomization_factor": 2}}),
        f"{LB}.retry_on_failure.randomization_factor",
        "between 0 and 1",
    ),
    (
        "multiplier",
        otlp_patch({"retry_on_failure": {"multiplier": 0.5}}),
        f"{OTLP}.retry_on_failure.multiplier",
        "at least 1",
    ),
    (
        "retry enabled as string",
        otlp_patch({"retry_on_failure": {"enabled": "false"}}),
        f"{OTLP}.retry_on_failure.enabled",
        "expected a boolean",
    ),
    (
        "max below initial",
        otlp_patch({"retry_on_failure": {"initial_interval": "1m"}}),
        f"{OTLP}.retry_on_failure.max_interval",
        "must not be below initial_interval",
    ),
    # protocol.otlp
    ("other protocol", lb_patch({"protocol": {"zipkin": {}}}), f"{LB}.protocol.zipkin", "only otlp"),
    (
        "auth",
        otlp_patch({"auth": {"authenticator": "basicauth"}}),
        f"{OTLP}.auth",
        "send credentials with headers",
    ),
    ("unknown otlp key", otlp_patch({"compresion": "gzip"}), f"{OTLP}.compresion", "unknown key"),
    ("compression", otlp_patch({"compression": "brotli"}), f"{OTLP}.compression", "gzip, zstd, snappy"),
    ("otlp timeout", otlp_patch({"timeout": "fast"}), f"{OTLP}.timeout", 'expected a duration such as "5s"'),
    ("balancer", otlp_patch({"balancer_name": "least_request"}), f"{OTLP}.balancer_name", "round_robin"),
    ("buffer size", otlp_patch({"read_buffer_size": "lots"}), f"{OTLP}.read_buffer_size", "invalid size"),
    (
        "header value",
        otlp_patch({"headers": {"x-tenant": 7}}),
        f"{OTLP}.headers.x-tenant",
        "expected a string",
    ),
    ("headers type", otlp_patch({"headers": "x=1"}), f"{OTLP}.headers", "expected a mapping, got string"),
    (
        "keepalive",
        otlp_patch({"keepalive": {"time": "10"}}),
        f"{OTLP}.keepalive.time",
        "invalid duration '10'",
    ),
    (
        "ca file and pem",
        otlp_patch({"tls": {"ca_pem": "x", "ca_file": "/nonexistent"}}),
        f"{OTLP}.tls.ca_pem",
        "ca_file and ca_pem are mutually exclusive",
    ),
    (
        "cert without key",
        otlp_patch({"tls": {"cert_pem": "x"}}),
        f"{OTLP}.tls.key_file",
        "key_file or key_pem is required",
    ),
    (
        "key without cert",
        otlp_patch({"tls": {"key_pem": "x"}}),
        f"{OTLP}.tls.cert_file",
        "cert_file or cert_pem is required",
    ),
    (
        "missing ca file",
        otlp_patch({"tls": {"ca_file": "/nonexistent/ca.pem"}}),
        f"{OTLP}.tls.ca_file",
        "file not found: /nonexistent/ca.pem",
    ),
    (
        "tls version",
        otlp_patch({"tls": {"min_version": "1.4"}}),
        f"{OTLP}.tls.min_version",
        "1.0, 1.1, 1.2, 1.3",
    ),
    (
        "tls versions reversed",
        otlp_patch({"tls": {"min_version": "1.3", "max_version": "1.2"}}),
        f"{OTLP}.tls.min_version",
        "above max_version",  # checked before the gRPC support check
    ),
    (
        "cipher suites",
        otlp_patch({"tls": {"cipher_suites": ["x"]}}),
        f"{OTLP}.tls.cipher_suites",
        "not supported",
    ),
    (
        "insecure as yes",
        otlp_patch({"tls": {"insecure": "yes"}}),
        f"{OTLP}.tls.insecure",
        "expected a boolean",
    ),
    # ours
    ("log level", {"telemetry": {"log_level": "verbose"}}, "telemetry.log_level", "debug, info, warn"),
    ("telemetry endpoint", {"telemetry": {"endpoint": "8888"}}, "telemetry.endpoint", "host:port"),
    ("drain timeout", {"shutdown": {"drain_timeout": "soon"}}, "shutdown.drain_timeout", "invalid duration"),
    ("shutdown unknown", {"shutdown": {"grace": "1s"}}, "shutdown.grace", "unknown key"),
    # service
    (
        "profiles pipeline",
        {"service": {"pipelines": {"profiles": {"receivers": ["otlp"], "exporters": ["loadbalancing"]}}}},
        "service.pipelines.profiles",
        "unsupported pipeline type",
    ),
    (
        "processor in pipeline",
        {
            "service": {
                "pipelines": {
                    "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["loadbalancing"]}
                }
            }
        },
        "service.pipelines.traces.processors[0]",
        "processor 'batch' is not defined (defined: no processors)",
    ),
    (
        "undefined receiver",
        {"service": {"pipelines": {"traces": {"receivers": ["jaeger"], "exporters": ["loadbalancing"]}}}},
        "service.pipelines.traces.receivers[0]",
        "receiver 'jaeger' is not defined",
    ),
    (
        "exporters list missing",
        {"service": {"pipelines": {"traces": {"receivers": ["otlp"]}}}},
        "service.pipelines.traces.exporters",
        "required",
    ),
    ("no pipelines", {"service": {"pipelines": {}}}, "service.pipelines", "at least one pipeline"),
    (
        "undefined extension",
        {"service": {"extensions": ["health_check"], "pipelines": {"traces": TRACES}}},
        "service.extensions[0]",
        "extension 'health_check' is not defined",
    ),
    (
        "routing key invalid for an explicit signal",
        {
            "exporters": {"loadbalancing": {"routing_key": "traceID"}},
            "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["loadbalancing"]}}},
        },
        f"{LB}.routing_key",
        "routing_key traceID is not valid for the metrics pipeline "
        "(valid for metrics: service, resource, metric, streamID, attributes)",
    ),
]


@pytest.mark.parametrize(
    ("patch", "key_path", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_invalid_config_is_rejected_at_the_exact_key_path(
    patch: dict[str, Any], key_path: str, message: str
) -> None:
    err = error_of(patched(patch))
    assert err.key_path == key_path, str(err)
    assert message in err.message, str(err)
    assert "\n" not in str(err)


def test_empty_processors_extensions_and_connectors_are_accepted() -> None:
    cfg = parse_config(patched({"processors": None, "extensions": {}, "connectors": None}))
    assert cfg.signals == ("traces", "logs", "metrics")
    pipeline = {"receivers": ["otlp"], "processors": None, "exporters": ["loadbalancing"]}
    cfg = parse_config(patched({"service": {"extensions": None, "pipelines": {"logs": pipeline}}}))
    assert cfg.signals == ("logs",)


# ----------------------------------------------------------------- scalar formats
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("2h45m", 9900.0),
        ("100us", 1e-4),
        ("10µs", 1e-5),
        ("1500ns", 1.5e-6),
        (".5s", 0.5),
        ("-2s", -2.0),
    ],
)
def test_go_duration_strings_convert_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "5sec", "1d", "5s ", "1m30", "ms5"])
def test_malformed_durations_are_refused(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("20MiB", 20 * 2**20),
        ("512KiB", 512 * 1024),
        ("4MB", 4_000_000),
        ("1GiB", 2**30),
        ("100", 100),
        ("64B", 64),
    ],
)
def test_sizes_accept_binary_and_decimal_units(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_may_be_plain_byte_counts() -> None:
    cfg = parse_config(
        patched({"receivers": {"otlp": {"protocols": {"http": {"max_request_body_size": 1000}}}}})
    )
    assert cfg.receivers.http is not None and cfg.receivers.http.max_request_body_size == 1000


# --------------------------------------------------------------- merge semantics
def test_partial_retry_block_merges_onto_defaults_and_stays_off_at_exporter_level() -> None:
    lb = parse_config(patched(lb_patch({"retry_on_failure": {"max_interval": "10s"}}))).exporter
    assert lb.retry_on_failure == RetryConfig(enabled=False, max_interval=10.0)
    otlp = parse_config(patched(otlp_patch({"retry_on_failure": {"max_interval": "10s"}}))).exporter.protocol
    assert otlp.retry_on_failure == RetryConfig(enabled=True, max_interval=10.0)


def test_writing_the_exporter_level_queue_block_turns_it_on_unless_disabled() -> None:
    lb = parse_config(patched(lb_patch({"sending_queue": {"queue_size": 50}}))).exporter
    assert lb.sending_queue == QueueConfig(enabled=True, queue_size=50)
    lb = parse_config(patched(lb_patch({"sending_queue": {"enabled": False, "queue_size": 50}}))).exporter
    assert lb.sending_queue == QueueConfig(enabled=False, queue_size=50)


def test_deprecated_blocking_flag_means_block_on_overflow() -> None:
    otlp = parse_config(patched(otlp_patch({"sending_queue": {"blocking": True}}))).exporter.protocol
    assert otlp.sending_queue.block_on_overflow is True


def test_empty_compression_means_none() -> None:
    assert parse_config(patched(otlp_patch({"compression": ""}))).exporter.protocol.compression == "none"


def test_headers_may_be_a_list_of_name_value_pairs() -> None:
    headers = [{"name": "x-tenant", "value": "a"}, {"name": "x-env", "value": "prod"}]
    otlp = parse_config(patched(otlp_patch({"headers": headers}))).exporter.protocol
    assert otlp.headers == (("x-tenant", "a"), ("x-env", "prod"))


def test_exporter_endpoint_is_accepted_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        cfg = parse_config(patched(otlp_patch({"endpoint": "placeholder:4317"})))
    assert cfg.exporter.protocol == OTLPExporterConfig()
    assert "protocol.otlp.endpoint is ignored" in caplog.text


def test_empty_telemetry_endpoint_disables_it() -> None:
    assert parse_config(patched({"telemetry": {"endpoint": ""}})).telemetry.endpoint == ""


# ------------------------------------------------------------------------ signals
@pytest.mark.parametrize(
    ("routing_key", "signals"),
    [
        (None, ("traces", "logs", "metrics")),
        ("traceID", ("traces", "logs")),
        ("service", ("traces", "logs", "metrics")),
        ("resource", ("logs", "metrics")),
        ("metric", ("metrics",)),
        ("streamID", ("metrics",)),
    ],
)
def test_without_service_signals_follow_the_routing_key(
    routing_key: str | None, signals: tuple[str, ...]
) -> None:
    patch = lb_patch({"routing_key": routing_key}) if routing_key else {}
    assert parse_config(patched(patch)).signals == signals


def test_with_service_signals_are_those_with_a_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = {"receivers": ["otlp/in"], "exporters": ["loadbalancing/out"]}
    data = {
        "receivers": {"otlp/in": {"protocols": {"grpc": None}}},
        "exporters": {
            "loadbalancing/out": {"routing_key": "service", "resolver": {"static": {"hostnames": ["a"]}}}
        },
        "service": {
            "telemetry": {"metrics": {"level": "detailed"}},
            "pipelines": {"logs/a": pipeline, "logs/b": pipeline, "metrics": pipeline},
        },
    }
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        assert parse_config(data).signals == ("logs", "metrics")
    assert "service.telemetry.metrics: level ignored" in caplog.text


# -------------------------------------------------------------------- environment
def test_environment_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIER2_HOST", "tier2.observability")
    monkeypatch.setenv("TENANT", "team-a")
    monkeypatch.delenv("RINGLEADER_UNSET", raising=False)
    data = patched(resolver({"k8s": {"service": "${env:TIER2_HOST}"}}))
    headers = {"x-tenant": "${TENANT}-$${literal}", "x-empty": "${env:RINGLEADER_UNSET}"}
    data = patched(otlp_patch({"headers": headers}), data)
    cfg = parse_config(data)
    assert cfg.exporter.resolver == K8sResolverConfig(service="tier2.observability")
    assert cfg.exporter.protocol.headers == (("x-tenant", "team-a-${literal}"), ("x-empty", ""))


def test_whole_value_references_are_typed_like_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "14317")
    monkeypatch.setenv("INSECURE", "true")
    data = patched(resolver({"k8s": {"service": "tier2", "ports": ["${env:PORT}"]}}))
    data = patched(otlp_patch({"tls": {"insecure": "${INSECURE}"}, "authority": "${env:PORT}"}), data)
    cfg = parse_config(data)
    assert cfg.exporter.resolver == K8sResolverConfig(service="tier2", ports=(14317,))
    assert cfg.exporter.protocol.tls.insecure is True
    assert cfg.exporter.protocol.authority == "14317"  # a string where a string is expected


def test_environment_default_syntax_is_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGLEADER_UNSET", raising=False)
    cfg = parse_config(patched({"telemetry": {"log_level": "${env:RINGLEADER_UNSET:-debug}"}}))
    assert cfg.telemetry.log_level == "debug"


def test_other_config_providers_are_refused() -> None:
    err = error_of(patched(otlp_patch({"authority": "${file:/etc/authority}"})))
    assert err.key_path == f"{OTLP}.authority"
    assert "unsupported config provider 'file'" in err.message


def test_unset_variable_in_a_required_value_reports_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGLEADER_UNSET", raising=False)
    err = error_of(patched(resolver({"dns": {"hostname": "${env:RINGLEADER_UNSET}"}})))
    assert (err.key_path, err.message) == (f"{LB}.resolver.dns.hostname", "must not be empty")


# ------------------------------------------------------------------- file handling
def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, "receivers:\n  otlp:\n    protocols: [grpc\nexporters: {}\n")
    assert err.key_path == ""
    assert "invalid YAML at line 4" in err.message
    assert str(err).startswith("config error: ") and "\n" not in str(err)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, "# nothing here\n")
    assert "the configuration file is empty" in err.message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_top_level_must_be_a_mapping() -> None:
    assert "expected a mapping at the top level, got list" in error_of([1, 2]).message


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, "receivers: {}\nreceivers: {}\n")
    assert "duplicate key 'receivers' at line 2" in err.message


def test_yaml_1_1_booleans_are_strings_like_in_the_collector(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        """
        receivers: {otlp: {protocols: {grpc: }}}
        exporters:
          loadbalancing:
            protocol: {otlp: {tls: {insecure: yes}}}
            resolver: {static: {hostnames: [a]}}
        """,
    )
    assert str(err) == (
        "config error at exporters.loadbalancing.protocol.otlp.tls.insecure: "
        "expected a boolean (true or false), got string 'yes'"
    )


# ------------------------------------------------ published tier-1 configs
RECEIVERS = """
receivers:
  otlp:
    protocols:
      grpc:
"""


def test_guide_dns_resolver_config_parses_after_removing_the_batch_processor(tmp_path: Path) -> None:
    # two-tier-tail-sampling-guide, Example 1; edits: receivers block added (the excerpt omits it),
    # "processors: [batch]" removed from the pipeline.
    cfg = load_text(
        tmp_path,
        RECEIVERS
        + """
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
      exporters: [loadbalancing] # connect with exporter named 'loadbalancing'
""",
    )
    assert cfg.exporter.resolver == DNSResolverConfig(
        hostname="otelcol-tier2-headless.observability.svc.cluster.local",
        port="4317",
        interval=5.0,
        timeout=1.0,
    )
    assert cfg.exporter.protocol.timeout == 1.0 and cfg.exporter.protocol.tls.insecure
    assert cfg.signals == ("traces",)


def test_guide_k8s_resolver_config_parses_after_removing_the_batch_processor(tmp_path: Path) -> None:
    # Example 2; same edits as Example 1.
    cfg = load_text(
        tmp_path,
        RECEIVERS
        + """
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
      exporters: [loadbalancing]
""",
    )
    assert cfg.exporter.resolver == K8sResolverConfig(service="otelcol-tier2.observability", ports=(4317,))


def test_guide_resiliency_config_parses_after_trivial_edits(tmp_path: Path) -> None:
    # Example 3; edits: receivers/service added, "queue:" renamed to upstream's "sending_queue:",
    # the health_check extension removed (Ringleader serves /healthz on its telemetry endpoint).
    cfg = load_text(
        tmp_path,
        RECEIVERS
        + """
exporters:
  loadbalancing:
    routing_key: traceID
    resolver:
      dns:
        hostname: otelcol-tier2-headless.observability.svc.cluster.local
        interval: 5s
    # Resiliency Level 1: Loadbalancer-level retry
    sending_queue:
      enabled: true
      num_consumers: 10 # Start at 2–3x the number of Tier 2 Pods
      queue_size: 1000 # Estimate as batches/sec × max retry time (seconds)
    retry_on_failure:
      enabled: true
      initial_interval: 5s
      max_interval: 30s
      max_elapsed_time: 300s
    protocol:
      otlp:
        timeout: 5s
        # Resiliency Level 2: Sub-exporter (per-connection) level retry
        retry_on_failure:
          enabled: true
          initial_interval: 1s
          max_interval: 10s
        sending_queue:
          enabled: true
          queue_size: 100
""",  # noqa: RUF001 - the guide's comments, verbatim (non-ASCII on purpose)
    )
    lb = cfg.exporter
    assert lb.sending_queue == QueueConfig(enabled=True, num_consumers=10, queue_size=1000)
    assert lb.retry_on_failure == RetryConfig(enabled=True, initial_interval=5.0, max_interval=30.0)
    assert lb.protocol.retry_on_failure == RetryConfig(enabled=True, initial_interval=1.0, max_interval=10.0)
    assert lb.protocol.sending_queue == QueueConfig(enabled=True, queue_size=100)
    assert cfg.signals == ("traces", "logs")


def test_guide_cloud_map_appendix_parses(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        RECEIVERS
        + """
exporters:
  loadbalancing:
    resolver:
      aws_cloud_map:
        namespace: "otel-collectors"
        service_name: "tier2-collector"
        port: 4317
        interval: 30s
        timeout: 5s
""",
    )
    assert cfg.exporter.resolver == AWSCloudMapResolverConfig(
        namespace="otel-collectors", service_name="tier2-collector", port=4317
    )


def test_upstream_readme_example_parses_after_removing_the_logging_exporter(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: localhost:4317

processors:

exporters:
  loadbalancing:
    routing_key: "service"
    protocol:
      otlp:
        # all options from the OTLP exporter are supported
        # except the endpoint
        timeout: 1s
    resolver:
      static:
        hostnames:
        - backend-1:4317
        - backend-2:4317
        - backend-3:4317
        - backend-4:4317

service:
  pipelines:
    traces:
      receivers:
        - otlp
      processors: []
      exporters:
        - loadbalancing
    logs:
      receivers:
        - otlp
      processors: []
      exporters:
        - loadbalancing
""",
    )
    assert cfg.signals == ("traces", "logs")
    assert cfg.receivers.grpc == GRPCReceiverConfig(endpoint="localhost:4317")


@pytest.mark.parametrize(
    ("resolver_yaml", "expected"),
    [
        (
            'static:\n        hostnames: ["localhost:55690", "localhost:55700"]',
            StaticResolverConfig(hostnames=("localhost:55690", "localhost:55700")),
        ),
        (
            'dns:\n        hostname: "alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local"\n'
            '        port: "34621"\n        interval: "5s"\n        timeout: "1s"',
            DNSResolverConfig(
                hostname="alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local", port="34621"
            ),
        ),
        (
            'k8s:\n        service: "alloy-traces-sampling"\n        ports: [34621]',
            K8sResolverConfig(service="alloy-traces-sampling", ports=(34621,)),
        ),
    ],
    ids=["static", "dns", "kubernetes"],
)
def test_alloy_doc_examples_translate_to_yaml(tmp_path: Path, resolver_yaml: str, expected: object) -> None:
    # Alloy's otelcol.exporter.loadbalancing examples in collector YAML: the "client" block's
    # contents sit directly under protocol.otlp, "kubernetes" is "k8s", ports are numbers.
    cfg = load_text(
        tmp_path,
        RECEIVERS
        + f"""
        endpoint: "0.0.0.0:9411"
exporters:
  loadbalancing:
    resolver:
      {resolver_yaml}
    protocol:
      otlp:
        tls:
          insecure: true
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [loadbalancing]}}
    logs: {{receivers: [otlp], exporters: [loadbalancing]}}
""",
    )
    assert cfg.exporter.resolver == expected
    assert cfg.receivers.grpc == GRPCReceiverConfig(endpoint="0.0.0.0:9411")
    assert cfg.signals == ("traces", "logs")


def test_complete_example_in_the_docs_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    block = doc.split("<!-- complete-example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    monkeypatch.delenv("TENANT", raising=False)
    cfg = parse_config(yaml.load(block, Loader=yaml.SafeLoader))
    assert cfg.exporter.resolver == K8sResolverConfig(service="otelcol-tier2.observability")
    assert cfg.exporter.protocol.headers == (("x-scope-orgid", "anonymous"),)
    assert cfg.exporter.protocol.keepalive == KeepaliveConfig(time=30.0, timeout=10.0)
    assert cfg.signals == ("traces", "logs")
    # Apart from the values the comments call out, everything is the default.
    default = parse_config(patched(resolver({"k8s": {"service": "otelcol-tier2.observability"}})))
    assert cfg.receivers == ReceiverConfig(grpc=GRPCReceiverConfig(), http=HTTPReceiverConfig())
    assert cfg.exporter.sending_queue == default.exporter.sending_queue
    assert cfg.exporter.retry_on_failure == default.exporter.retry_on_failure
    assert cfg.exporter.protocol.sending_queue == default.exporter.protocol.sending_queue
    assert cfg.exporter.protocol.retry_on_failure == default.exporter.protocol.retry_on_failure
    assert cfg.telemetry == default.telemetry and cfg.shutdown == default.shutdown


@pytest.mark.parametrize(
    ("tls", "key", "fragment"),
    [
        ({"min_version": "1.1"}, "min_version", "TLS 1.2 and 1.3 only"),
        ({"min_version": "1.0"}, "min_version", "TLS 1.2 and 1.3 only"),
        ({"min_version": "", "max_version": "1.1"}, "max_version", "TLS 1.2 and 1.3 only"),
    ],
)
def test_tls_versions_the_exporter_cannot_speak_are_refused_not_ignored(tls, key, fragment) -> None:
    err = error_of(patched(otlp_patch({"tls": tls})))
    assert err.key_path == f"{OTLP}.tls.{key}"
    assert fragment in str(err)


def test_tls_1_3_pins_and_skip_verify_are_accepted() -> None:
    # The native exporter (rustls) honours them; before it, grpcio could not and they were refused.
    patch = otlp_patch({"tls": {"min_version": "1.3", "insecure_skip_verify": True}})
    tls = parse_config(patched(patch)).exporter.protocol.tls
    assert (tls.min_version, tls.insecure_skip_verify) == ("1.3", True)
    tls = parse_config(patched(otlp_patch({"tls": {"max_version": "1.2"}}))).exporter.protocol.tls
    assert tls.max_version == "1.2"


@pytest.mark.parametrize(
    ("compression", "params", "level"),
    [("gzip", {"level": 1}, 1), ("deflate", {"level": 9}, 9), ("zstd", {"level": 19}, 19), ("gzip", {}, 0),
     ("snappy", {"level": 0}, 0)],
)  # fmt: skip
def test_compression_params_level_is_read_per_codec(compression: str, params: dict[str, Any], level: int) -> None:
    patch = otlp_patch({"compression": compression, "compression_params": params})
    otlp = parse_config(patched(patch)).exporter.protocol
    assert (otlp.compression, otlp.compression_level) == (compression, level)


@pytest.mark.parametrize(
    ("compression", "params", "fragment"),
    [("gzip", {"level": 10}, "1..9"), ("deflate", {"level": -2}, "HuffmanOnly"), ("snappy", {"level": 3}, "no level"),
     ("none", {"level": 1}, "no level"), ("gzip", {"level": "fast"}, ""), ("gzip", {"lvl": 1}, "lvl")],
)  # fmt: skip
def test_a_bad_compression_level_is_refused_with_its_key_path(
    compression: str, params: dict[str, Any], fragment: str
) -> None:
    err = error_of(patched(otlp_patch({"compression": compression, "compression_params": params})))
    assert err.key_path.startswith(f"{OTLP}.compression_params")
    assert fragment in str(err)
