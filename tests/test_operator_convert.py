"""Moving a tier-1 collector's loadbalancing block (or Alloy's component) to a LoadBalancingExporter.

The round trip is judged by the data plane itself: the original block and the config the operator renders
from the converted spec must load into the same LoadBalancingConfig.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataplane.config import parse_config
from dataplane.config_model import K8sResolverConfig, LoadBalancingConfig
from ringleader_operator.alloy import AlloyError, parse_alloy
from ringleader_operator.convert import (
    ConversionError,
    convert_alloy,
    convert_collector_block,
    convert_main,
    spec_from_collector_config,
)
from ringleader_operator.owner import Owner
from ringleader_operator.render import render_config
from ringleader_operator.spec import parse_spec

NAMESPACE = "observability"

# The tier-1 blocks of the two-tier tail-sampling guide (Examples 1-3 and the Cloud Map appendix).
GUIDE_DNS = """
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
"""
GUIDE_K8S = """
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
"""
GUIDE_RESILIENCY = """
loadbalancing:
  routing_key: traceID
  resolver:
    dns:
      hostname: otelcol-tier2-headless.observability.svc.cluster.local
      interval: 5s
  # Resiliency Level 1: Loadbalancer-level retry
  queue:
    enabled: true
    num_consumers: 10 # Start at 2-3x the number of Tier 2 Pods
    queue_size: 1000 # Estimate as batches/sec x max retry time (seconds)
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
"""
GUIDE_CLOUD_MAP = """
loadbalancing:
  resolver:
    aws_cloud_map:
      namespace: "otel-collectors"
      service_name: "tier2-collector"
      port: 4317
      interval: 30s
      timeout: 5s
"""
# Grafana Alloy's documented examples of otelcol.exporter.loadbalancing.
ALLOY_STATIC = """
otelcol.receiver.otlp "default" {
    grpc {}
    output {
        traces  = [otelcol.exporter.loadbalancing.default.input]
        logs    = [otelcol.exporter.loadbalancing.default.input]
    }
}

otelcol.exporter.loadbalancing "default" {
    resolver {
        static {
            hostnames = ["localhost:55690", "localhost:55700"]
        }
    }
    protocol {
        otlp {
            client {}
        }
    }
}
"""
ALLOY_DNS = """
otelcol.exporter.loadbalancing "default" {
  resolver {
    dns {
      hostname = "alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local"
      port = "34621"
    }
  }
  protocol {
    otlp {
      client {
        tls {
          insecure = true
        }
      }
    }
  }
}
"""
ALLOY_K8S = """
otelcol.exporter.logging "default" {
  verbosity = "detailed"
}

otelcol.exporter.loadbalancing "default" {
  resolver {
    kubernetes {
      service = "alloy-traces-sampling"
      ports = ["34621"]
    }
  }
  protocol {
    otlp {
      client {
        tls {
          insecure = true
        }
      }
    }
  }
}
"""


def exporter_of(block: dict[str, Any]) -> LoadBalancingConfig:
    """What the data plane makes of a loadbalancing block."""
    config = {"receivers": {"otlp": {"protocols": {"grpc": None}}}, "exporters": {"loadbalancing": block}}
    return parse_config(config).exporter


def rendered_exporter(spec: dict[str, Any]) -> LoadBalancingConfig:
    text = render_config(Owner("tier1", NAMESPACE, "uid"), parse_spec(spec))
    return parse_config(yaml.safe_load(text)).exporter


def in_namespace(lb: LoadBalancingConfig) -> LoadBalancingConfig:
    """A k8s Service without a namespace means the pod's namespace: the resource's."""
    r = lb.resolver
    if isinstance(r, K8sResolverConfig) and "." not in r.service:
        return dataclasses.replace(lb, resolver=dataclasses.replace(r, service=f"{r.service}.{NAMESPACE}"))
    return lb


@pytest.mark.parametrize("source", [GUIDE_DNS, GUIDE_K8S], ids=["dns", "k8s"])
def test_the_guides_blocks_round_trip(source: str) -> None:
    block = yaml.safe_load(source)["loadbalancing"]
    conversion = convert_collector_block(block)
    assert conversion.notes == ()
    assert rendered_exporter(conversion.spec) == exporter_of(block)


def test_a_block_without_routing_key_gets_trace_id_and_a_note_saying_so() -> None:
    block = yaml.safe_load(GUIDE_CLOUD_MAP)["loadbalancing"]
    conversion = convert_collector_block(block)
    (note,) = conversion.notes
    assert note.startswith("routing_key: not set: upstream routes traces by traceID but logs and metrics by service")
    assert "routingKey" not in conversion.spec  # the resource's default (traceID) applies
    assert rendered_exporter(conversion.spec) == exporter_of({**block, "routing_key": "traceID"})


def test_the_guides_resiliency_block_round_trips_with_queue_read_as_sending_queue() -> None:
    block = yaml.safe_load(GUIDE_RESILIENCY)["loadbalancing"]
    conversion = convert_collector_block(block)
    assert conversion.notes == (
        "queue: read as sending_queue (upstream's name; `queue` is refused by the collector)",
    )
    assert conversion.spec["sendingQueue"] == {"enabled": True, "numConsumers": 10, "queueSize": 1000}
    assert conversion.spec["retryOnFailure"]["maxElapsedTime"] == "300s"
    fixed = {("sending_queue" if k == "queue" else k): v for k, v in block.items()}  # what the guide meant
    assert rendered_exporter(conversion.spec) == exporter_of(fixed)


@pytest.mark.parametrize("source", [ALLOY_STATIC, ALLOY_DNS, ALLOY_K8S], ids=["static", "dns", "kubernetes"])
def test_alloys_examples_round_trip(source: str) -> None:
    conversion = convert_alloy(source)
    # Alloy's arguments, written the collector's way by hand: the data plane's reading of the original.
    cases: dict[str, dict[str, Any]] = {
        ALLOY_STATIC: {"resolver": {"static": {"hostnames": ["localhost:55690", "localhost:55700"]}}},
        ALLOY_DNS: {
            "resolver": {"dns": {"hostname": "alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local",
                                 "port": "34621"}},
            "protocol": {"otlp": {"tls": {"insecure": True}}},
        },
        ALLOY_K8S: {
            "resolver": {"k8s": {"service": "alloy-traces-sampling", "ports": [34621]}},
            "protocol": {"otlp": {"tls": {"insecure": True}}},
        },
    }  # fmt: skip
    by_hand = cases[source]
    assert conversion.spec["routingKey"] == "traceID"  # Alloy's documented default, made explicit
    assert rendered_exporter(conversion.spec) == in_namespace(exporter_of({**by_hand, "routing_key": "traceID"}))


def test_alloy_kubernetes_resolver_becomes_k8s_with_numeric_ports() -> None:
    conversion = convert_alloy(ALLOY_K8S)
    assert conversion.spec == {
        "routingKey": "traceID",
        "resolver": {"k8s": {"service": "alloy-traces-sampling", "ports": [34621]}},
        "otlp": {"tls": {"insecure": True}},
    }
    assert conversion.notes == ("resolver.k8s.service: no namespace given: the resource's own namespace is used",)


def test_alloy_client_queue_retry_and_keepalive_are_mapped() -> None:
    source = textwrap.dedent(
        """
        // comments are fine
        otelcol.exporter.loadbalancing "lb" {
          routing_key = "service"
          resolver {
            static { hostnames = ["a:4317"] }
          }
          protocol {
            otlp {
              timeout = "2s"
              client {
                compression = "zstd"
                headers = { "x-scope-orgid" = "team-a" }
                keepalive { ping_wait = "30s", ping_response_timeout = "10s" }
              }
              queue { queue_size = 50 }
              retry { max_elapsed_time = "1m" }
            }
          }
          debug_metrics { disable_high_cardinality_metrics = true }
        }
        """
    )
    spec = convert_alloy(source.replace('ping_wait = "30s", ', 'ping_wait = "30s"\n')).spec
    assert spec == {
        "routingKey": "service",
        "resolver": {"static": {"hostnames": ["a:4317"]}},
        "otlp": {
            "timeout": "2s",
            "compression": "zstd",
            "headers": [{"name": "x-scope-orgid", "value": "team-a"}],
            "sendingQueue": {"queueSize": 50},
            "retryOnFailure": {"maxElapsedTime": "1m"},
        },
        "extraConfig": {"protocol": {"otlp": {"keepalive": {"time": "30s", "timeout": "10s"}}}},
    }
    rendered_exporter(spec)  # and the data plane takes it


def test_what_cannot_move_by_itself_is_a_note_and_the_rest_still_converts() -> None:
    block: dict[str, Any] = {
        "routing_key": "attributes",
        "routing_attributes": ["tenant"],
        "timeout": 0,
        "sending_queue": {"blocking": True},
        "resolver": {"k8s": {"service": "tier2.sampling.svc.cluster.local", "return_hostnames": True,
                             "debounce": "1s"}},
        "protocol": {
            "otlp": {
                "endpoint": "ignored:4317",
                "compression": "",
                "tls": {"ca_file": "/etc/tls/ca.pem", "reload_interval": "1h", "min_version": "1.2"},
                "headers": {"x-scope-orgid": "${env:TENANT}", "authorization": "Bearer ${env:TOKEN}"},
                "auth": {"authenticator": "oauth2client"},
                "keepalive": {"time": "30s"},
                "wait_for_ready": True,
                "user_agent": "${env:AGENT}",
            }
        },
    }  # fmt: skip
    conversion = convert_collector_block(block)
    notes = "\n".join(conversion.notes)
    assert "protocol.otlp.endpoint: dropped" in notes
    assert "protocol.otlp.tls.ca_file: put the CA certificate in a Secret as key ca.crt" in notes
    assert (
        "protocol.otlp.headers.authorization: a credential: create the Secret it is read from, e.g. "
        "kubectl create secret generic otlp-headers --from-literal=authorization='<value>'"
    ) in notes
    assert "protocol.otlp.auth: authenticator extensions are not supported" in notes
    assert "protocol.otlp.user_agent: reads the collector's environment; write the value" in notes
    del block["protocol"]["otlp"]["user_agent"]
    conversion = convert_collector_block(block)
    spec = conversion.spec
    assert spec["resolver"] == {
        "k8s": {"service": "tier2", "namespace": "sampling", "returnHostnames": True, "debounce": "1s"}
    }
    assert spec["timeout"] == "0s"
    assert spec["sendingQueue"] == {"blockOnOverflow": True, "enabled": True}
    assert spec["otlp"]["compression"] == "none"
    assert spec["otlp"]["headers"] == [
        {"name": "x-scope-orgid", "value": "${env:TENANT}"},
        {"name": "authorization", "valueFrom": {"secretKeyRef": {"name": "otlp-headers", "key": "authorization"}}},
    ]
    assert "protocol.otlp.headers.x-scope-orgid: reads the collector's environment" in notes
    assert spec["extraConfig"] == {
        "protocol": {
            "otlp": {
                "tls": {"reload_interval": "1h", "min_version": "1.2"},
                "keepalive": {"time": "30s"},
                "wait_for_ready": True,
            }
        }
    }
    lb = rendered_exporter(spec)
    assert lb.routing_attributes == ("tenant",)
    assert lb.sending_queue.enabled and lb.sending_queue.block_on_overflow
    assert lb.protocol.tls.reload_interval == 3600 and lb.protocol.keepalive is not None


def test_a_whole_collector_config_is_accepted() -> None:
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": None}}},
        "processors": {"batch": None},
        "exporters": {"load_balancing/tier2": yaml.safe_load(GUIDE_K8S)["loadbalancing"], "debug": None},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["load_balancing/tier2"]}}},
    }
    assert spec_from_collector_config(config)["resolver"] == {
        "k8s": {"service": "otelcol-tier2", "namespace": "observability", "ports": [4317]}
    }


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"routing_key": "traceID"}, "resolver"),
        ({"resolver": {"consul": {}}}, "resolver.consul"),
        ({"resolver": {"dns": {"hostname": "x", "port": "http"}}}, "resolver.dns.port"),
        ({"resolver": {"static": {"hostnames": ["a"]}}, "protocol": {"otlphttp": {}}}, "protocol.otlphttp"),
    ],
)
def test_unconvertible_blocks_name_the_key(block: dict[str, Any], path: str) -> None:
    with pytest.raises(ConversionError) as err:
        convert_collector_block(block)
    assert err.value.path == path


def test_alloy_syntax_errors_name_the_line() -> None:
    with pytest.raises(AlloyError, match=r"line 3: expected \{"):
        parse_alloy('otelcol.exporter.loadbalancing "x" {\n  resolver {\n    static hostnames\n  }\n}\n')
    with pytest.raises(AlloyError, match=r"no otelcol\.exporter\.loadbalancing block"):
        parse_alloy('otelcol.exporter.otlp "x" {}')


def test_the_convert_command_prints_a_resource_and_the_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "collector.yaml"
    source.write_text(textwrap.dedent(GUIDE_RESILIENCY).replace("loadbalancing:", "exporters:\n loadbalancing:", 1)
                      .replace("\n  ", "\n   "), encoding="utf-8")  # fmt: skip
    assert convert_main([str(source), "--name", "tier1", "--namespace", "observability"]) == 0
    out, err = capsys.readouterr()
    manifest = yaml.safe_load(out)
    assert manifest["kind"] == "LoadBalancingExporter"
    assert manifest["metadata"] == {"name": "tier1", "namespace": "observability"}
    assert manifest["spec"]["sendingQueue"]["enabled"] is True
    assert err == "# note: queue: read as sending_queue (upstream's name; `queue` is refused by the collector)\n"

    alloy = tmp_path / "lb.alloy"
    alloy.write_text(ALLOY_K8S, encoding="utf-8")
    assert convert_main([str(alloy)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["resolver"]["k8s"]["ports"] == [34621]

    (tmp_path / "broken.alloy").write_text('otelcol.exporter.loadbalancing "x" { resolver = }', encoding="utf-8")
    assert convert_main([str(tmp_path / "broken.alloy")]) == 2
    assert "line 1: unexpected '}'" in capsys.readouterr().err

    broken = tmp_path / "broken.yaml"
    broken.write_text("exporters: {otlp: {}}\n", encoding="utf-8")
    assert convert_main([str(broken)]) == 2
    assert "expected exactly one loadbalancing exporter" in capsys.readouterr().err
