"""Grafana Alloy's ``otelcol.exporter.loadbalancing`` examples, read unedited from ``*.alloy`` files.

The examples are copied verbatim from Alloy's documentation
(/work/shared/reference/alloy-loadbalancing-exporter.md): the static, dns and
kubernetes resolver examples, and the load-balancer tier's ``alloy_lb.alloy``
from its Kubernetes example (receiver on :9411, a logging exporter beside the
load balancer, dns resolver on port 34621).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dataplane.config import ConfigError, load_config
from dataplane.config_model import (
    Config,
    DNSResolverConfig,
    GRPCReceiverConfig,
    K8sResolverConfig,
    StaticResolverConfig,
)

STATIC = """
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

# The dns and kubernetes examples show the exporter alone; each is paired with the
# static example's receiver, whose output names the exporter they define.
RECEIVER = STATIC.split('\notelcol.exporter.loadbalancing "default"', 1)[0]

DNS = """
otelcol.exporter.loadbalancing "default" {
    resolver {
        dns {
            hostname = "alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local"
            port     = "34621"
            interval = "5s"
            timeout  = "1s"
        }
    }
    protocol {
        otlp {
            client {}
        }
    }
}
"""

KUBERNETES = """
otelcol.exporter.loadbalancing "default" {
    resolver {
        kubernetes {
            service = "alloy-traces-headless"
            ports   = [ 34621 ]
        }
    }
    protocol {
        otlp {
            client {}
        }
    }
}
"""

ALLOY_LB = """
otelcol.receiver.otlp "default" {
  grpc {
    endpoint = "0.0.0.0:9411"
  }
  output {
    traces = [otelcol.exporter.loadbalancing.default.input,otelcol.exporter.logging.default.input]
  }
}

otelcol.exporter.logging "default" {
  verbosity = "detailed"
}

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


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.alloy"
    path.write_text(text)
    return load_config(path)


def test_the_examples_are_verbatim_from_alloy_s_documentation() -> None:
    name = "reference/alloy-loadbalancing-exporter.md"
    found = [
        p for p in (Path(__file__).resolve().parents[2] / "shared" / name, Path("/work/shared") / name) if p.exists()
    ]
    if not found:
        pytest.skip("the reference copy of Alloy's documentation (shared/) is not beside this checkout")
    doc = found[0]
    text = doc.read_text()
    for example in (STATIC, DNS, KUBERNETES):
        assert example.strip() in text
    indented = "\n".join("    " + line if line else "" for line in ALLOY_LB.strip().splitlines())
    assert indented in text


@pytest.mark.parametrize(
    ("text", "resolver", "signals"),
    [
        (STATIC, StaticResolverConfig(hostnames=("localhost:55690", "localhost:55700")), ("traces", "logs")),
        (
            RECEIVER + DNS,
            DNSResolverConfig(
                hostname="alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local", port="34621"
            ),
            ("traces", "logs"),
        ),
        (RECEIVER + KUBERNETES, K8sResolverConfig(service="alloy-traces-headless", ports=(34621,)), ("traces", "logs")),
    ],
    ids=["static", "dns", "kubernetes"],
)
def test_alloy_resolver_examples_load_unedited(
    tmp_path: Path, text: str, resolver: object, signals: tuple[str, ...]
) -> None:
    cfg = _load(tmp_path, text)
    assert cfg.exporter.resolver == resolver
    assert cfg.signals == signals
    assert cfg.receivers.grpc == GRPCReceiverConfig()
    assert cfg.receivers.http is None


def test_alloy_load_balancer_tier_loads_unedited_with_its_logging_exporter_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ringleader.config"):
        cfg = _load(tmp_path, ALLOY_LB)
    assert cfg.receivers.grpc == GRPCReceiverConfig(endpoint="0.0.0.0:9411")
    assert cfg.exporter.resolver == DNSResolverConfig(
        hostname="alloy-traces-sampling.grafana-cloud-monitoring.svc.cluster.local", port="34621"
    )
    assert cfg.exporter.protocol.tls.insecure
    assert cfg.signals == ("traces",)
    assert [m for m in caplog.messages if "exporters.debug/default is ignored" in m]


def test_alloy_dns_port_defaults_to_alloy_s_4317() -> None:
    from dataplane.config._alloy import alloy_to_collector

    data = alloy_to_collector(RECEIVER + DNS.replace('            port     = "34621"\n', ""))
    assert data["exporters"]["loadbalancing/default"]["resolver"]["dns"]["port"] == "4317"


def test_processors_on_the_path_become_the_pipeline_s_processors(tmp_path: Path) -> None:
    text = (
        RECEIVER.replace(
            "otelcol.exporter.loadbalancing.default.input", "otelcol.processor.memory_limiter.default.input"
        )
        + """
otelcol.processor.memory_limiter "default" {
    check_interval = "1s"
    limit = "1500MiB"
    output {
        traces = [otelcol.processor.batch.default.input]
        logs   = [otelcol.processor.batch.default.input]
    }
}
otelcol.processor.batch "default" {
    output {
        traces = [otelcol.exporter.loadbalancing.default.input]
        logs   = [otelcol.exporter.loadbalancing.default.input]
    }
}
"""
        + DNS
    )
    cfg = _load(tmp_path, text)
    assert cfg.memory.limit == 1500 << 20
    assert cfg.signals == ("traces", "logs")


def test_alloy_syntax_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid Alloy syntax at line 3"):
        _load(tmp_path, 'otelcol.receiver.otlp "default" {\n  grpc {}\n  output = = 1\n}\n')


ATTRIBUTES = """
otelcol.processor.attributes "default" {
  output {
    traces = [otelcol.exporter.loadbalancing.default.input]
    logs = [otelcol.exporter.loadbalancing.default.input]
  }
}
"""


def test_a_component_that_changes_data_is_refused(tmp_path: Path) -> None:
    to_attributes = RECEIVER.replace(
        "otelcol.exporter.loadbalancing.default.input", "otelcol.processor.attributes.default.input"
    )
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, to_attributes + ATTRIBUTES + DNS)
    assert info.value.key_path == "processors.attributes/default"
