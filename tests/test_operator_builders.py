"""The operator's pure builders: each object's content, and that what they render the data plane accepts."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from dataplane.config import parse_config
from dataplane.config_model import K8sResolverConfig, StaticResolverConfig
from ringleader_operator.builders import (
    PRESTOP_SECONDS,
    RUN_AS_USER,
    build_all,
    build_deployment,
    build_hpa,
    build_pdb,
    build_role,
    build_role_binding,
    build_service,
    build_service_account,
    build_service_monitor,
    configmaps_to_prune,
)
from ringleader_operator.owner import Owner, scale_selector
from ringleader_operator.render import TLS_DIR, config_hash, render_config, spec_path_for, validate_config
from ringleader_operator.spec import SpecError, parse_spec

OWNER = Owner(name="tier1", namespace="observability", uid="0b4f5c2e-0000-4000-8000-000000000001", generation=3)
STATIC: dict[str, Any] = {"resolver": {"static": {"hostnames": ["tier2-0:4317", "tier2-1:4317"]}}}
K8S: dict[str, Any] = {"resolver": {"k8s": {"service": "otelcol-tier2"}}}
K8S_ELSEWHERE: dict[str, Any] = {"resolver": {"k8s": {"service": "otelcol-tier2", "namespace": "sampling"}}}
LABELS = {
    "app.kubernetes.io/name": "ringleader",
    "app.kubernetes.io/instance": "tier1",
    "app.kubernetes.io/component": "dataplane",
    "app.kubernetes.io/managed-by": "ringleader-operator",
}
SELECTOR = {key: value for key, value in LABELS.items() if key != "app.kubernetes.io/managed-by"}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    spec.update(changes)
    return spec


def controller_ref() -> dict[str, Any]:
    return {
        "apiVersion": "ringleader.dev/v1alpha1",
        "kind": "LoadBalancingExporter",
        "name": "tier1",
        "uid": OWNER.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# ------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "spec",
    [
        STATIC,
        K8S,
        K8S_ELSEWHERE,
        {"resolver": {"dns": {"hostname": "tier2-headless.observability.svc.cluster.local", "port": 4317}}},
        {"resolver": {"dns": {"hostname": "_otlp._tcp.tier2", "srv": True, "server": "10.96.0.10:53"}}},
        {"resolver": {"awsCloudMap": {"namespace": "otel", "serviceName": "tier2", "port": 4317}}},
        with_(STATIC, routingKey="attributes", routingAttributes=["tenant", "service.name"]),
        with_(STATIC, routingKey="service", ringAlgorithm="upstream", timeout="2s", logLevel="debug"),
        with_(
            K8S,
            sendingQueue={"enabled": True, "queueSize": 5000, "sizer": "items"},
            retryOnFailure={"enabled": True, "initialInterval": "1s", "maxInterval": "10s"},
            otlp={
                "timeout": "1s",
                "compression": "none",
                "tls": {"secretName": "tier2-tls", "clientCertificate": True, "serverName": "tier2.svc"},
                "headers": [
                    {"name": "x-scope-orgid", "value": "tenant-$1"},
                    {"name": "authorization", "valueFrom": {"secretKeyRef": {"name": "tier2-auth", "key": "token"}}},
                ],
                "sendingQueue": {"queueSize": 100},
                "retryOnFailure": {"initialInterval": "1s", "maxInterval": "10s", "maxElapsedTime": "0s"},
            },
            ports={"grpc": 14317, "http": 14318, "metrics": 18888},
            drainTimeout="45s",
            extraConfig={"protocol": {"otlp": {"keepalive": {"time": "30s"}, "wait_for_ready": True}}},
        ),
    ],
    ids=["static", "k8s", "k8s-elsewhere", "dns", "dns-srv", "aws", "attributes", "service-key", "everything"],
)
def test_every_rendered_config_passes_the_data_planes_validator(spec: dict[str, Any]) -> None:
    text = render_config(OWNER, parse_spec(spec))
    validate_config(text)  # raises SpecError if the data plane refuses it
    assert build_all(OWNER, parse_spec(spec)).config_text == text


def test_the_config_says_what_the_spec_says() -> None:
    cfg = parse_config(yaml.safe_load(render_config(OWNER, parse_spec(with_(STATIC, routingKey="traceID")))))
    assert cfg.exporter.resolver == StaticResolverConfig(hostnames=("tier2-0:4317", "tier2-1:4317"))
    assert cfg.exporter.routing_key == "traceID"
    assert cfg.exporter.sending_queue.enabled is False and cfg.exporter.protocol.sending_queue.enabled is True
    assert cfg.exporter.retry_on_failure.enabled is False and cfg.exporter.protocol.retry_on_failure.enabled is True
    assert cfg.signals == ("traces", "logs")


def test_k8s_resolver_service_defaults_to_the_resources_namespace() -> None:
    here = parse_config(yaml.safe_load(render_config(OWNER, parse_spec(K8S))))
    there = parse_config(yaml.safe_load(render_config(OWNER, parse_spec(K8S_ELSEWHERE))))
    assert isinstance(here.exporter.resolver, K8sResolverConfig)
    assert here.exporter.resolver.service == "otelcol-tier2.observability"
    assert isinstance(there.exporter.resolver, K8sResolverConfig)
    assert there.exporter.resolver.service == "otelcol-tier2.sampling"


def test_rendering_is_deterministic_and_the_hash_follows_the_content() -> None:
    a = render_config(OWNER, parse_spec(STATIC))
    assert render_config(OWNER, parse_spec(copy.deepcopy(STATIC))) == a
    assert config_hash(a) == config_hash(a) and len(config_hash(a)) == 10
    b = render_config(OWNER, parse_spec(with_(STATIC, timeout="1s")))
    assert config_hash(b) != config_hash(a)
    first, second = build_all(OWNER, parse_spec(STATIC)), build_all(OWNER, parse_spec(with_(STATIC, timeout="1s")))
    assert first.config_name == f"tier1-ringleader-{config_hash(a)}"
    assert second.config_name != first.config_name
    pod_a = deployment(first)["spec"]["template"]
    pod_b = deployment(second)["spec"]["template"]
    assert pod_a["metadata"]["annotations"]["ringleader.dev/config-hash"] == first.config_hash
    assert pod_b["metadata"]["annotations"]["ringleader.dev/config-hash"] == second.config_hash
    assert pod_b["spec"]["volumes"][0]["configMap"]["name"] == second.config_name


def test_no_secret_value_is_rendered_into_the_config() -> None:
    spec = parse_spec(
        with_(
            K8S,
            otlp={
                "tls": {"secretName": "tier2-tls", "clientCertificate": True},
                "headers": [{"name": "authorization", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "tok"}}}],
            },
        )
    )
    desired = build_all(OWNER, spec)
    lb = yaml.safe_load(desired.config_text)["exporters"]["loadbalancing"]
    assert lb["protocol"]["otlp"]["headers"] == {"authorization": "${env:RINGLEADER_HEADER_0}"}
    assert lb["protocol"]["otlp"]["tls"] == {
        "insecure": False,
        "ca_file": f"{TLS_DIR}/ca.crt",
        "cert_file": f"{TLS_DIR}/tls.crt",
        "key_file": f"{TLS_DIR}/tls.key",
    }
    container = deployment(desired)["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "RINGLEADER_HEADER_0", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "tok"}}}
    ]
    assert {"name": "tls", "mountPath": TLS_DIR, "readOnly": True} in container["volumeMounts"]
    volumes = {v["name"]: v for v in deployment(desired)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "tier2-tls"
    assert [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["ca.crt", "tls.crt", "tls.key"]


def test_literal_dollar_signs_stay_literal() -> None:
    spec = parse_spec(with_(STATIC, otlp={"headers": [{"name": "x-tenant", "value": "${env:HOME}"}]}))
    cfg = parse_config(yaml.safe_load(render_config(OWNER, spec)))
    assert cfg.exporter.protocol.headers == (("x-tenant", "${env:HOME}"),)


def test_a_config_the_data_plane_refuses_names_the_resource_field() -> None:
    # extraConfig reaches the data plane unjudged by the schema; the data plane's validator catches it.
    spec = parse_spec(with_(STATIC, extraConfig={"protocol": {"otlp": {"balancer_name": "random"}}}))
    with pytest.raises(SpecError) as err:
        build_all(OWNER, spec)
    assert err.value.path == "spec.extraConfig.protocol.otlp.balancer_name"
    assert "exporters.loadbalancing.protocol.otlp.balancer_name" in err.value.message


# ------------------------------------------------------------------------ objects
def deployment(desired: Any) -> dict[str, Any]:
    return next(obj for obj in desired.owned if obj["kind"] == "Deployment")


def test_owned_objects_carry_labels_and_a_controller_reference() -> None:
    desired = build_all(OWNER, parse_spec(K8S))
    kinds = [obj["kind"] for obj in desired.owned]
    assert kinds == [
        "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment", "PodDisruptionBudget"
    ]  # fmt: skip
    assert desired.cross_namespace == ()
    for obj in desired.owned:
        assert obj["metadata"]["namespace"] == "observability"
        assert obj["metadata"]["labels"] == LABELS
        assert obj["metadata"]["ownerReferences"] == [controller_ref()]


def test_cross_namespace_rbac_has_owner_labels_and_no_owner_reference() -> None:
    desired = build_all(OWNER, parse_spec(K8S_ELSEWHERE))
    assert [obj["kind"] for obj in desired.owned] == [
        "ConfigMap", "ServiceAccount", "Service", "Deployment", "PodDisruptionBudget"
    ]  # fmt: skip
    assert [obj["kind"] for obj in desired.cross_namespace] == ["Role", "RoleBinding"]
    for obj in desired.cross_namespace:
        assert obj["metadata"]["namespace"] == "sampling"
        assert obj["metadata"]["name"] == "observability.tier1-ringleader"
        assert "ownerReferences" not in obj["metadata"]
        assert obj["metadata"]["labels"] == {
            **LABELS,
            "ringleader.dev/owner-namespace": "observability",
            "ringleader.dev/owner-name": "tier1",
            "ringleader.dev/owner-uid": OWNER.uid,
        }


def test_rbac_is_exactly_get_list_watch_on_endpointslices() -> None:
    spec = parse_spec(K8S_ELSEWHERE)
    role = build_role(OWNER, spec)
    assert role is not None
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = build_role_binding(OWNER, spec)
    assert binding is not None
    name = role["metadata"]["name"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tier1-ringleader", "namespace": "observability"}]


@pytest.mark.parametrize("resolver", ["static", "dns", "awsCloudMap"])
def test_resolvers_other_than_k8s_get_no_rbac_and_no_token(resolver: str) -> None:
    body = {
        "static": {"hostnames": ["a:4317"]},
        "dns": {"hostname": "tier2"},
        "awsCloudMap": {"namespace": "n", "serviceName": "s"},
    }[resolver]
    spec = parse_spec({"resolver": {resolver: body}})
    assert build_role(OWNER, spec) is None and build_role_binding(OWNER, spec) is None
    assert build_service_account(OWNER, spec)["automountServiceAccountToken"] is False
    desired = build_all(OWNER, spec)
    assert {obj["kind"] for obj in desired.owned}.isdisjoint({"Role", "RoleBinding"})
    assert deployment(desired)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_pod_is_locked_down() -> None:
    pod = deployment(build_all(OWNER, parse_spec(K8S)))["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert pod["serviceAccountName"] == "tier1-ringleader"
    assert pod["automountServiceAccountToken"] is True  # the k8s resolver reads EndpointSlices


def test_probes_and_shutdown_outlast_the_drain_deadline() -> None:
    for drain, grace in (("30s", 45), ("2m", 135), ("0s", 15), ("1.5s", 17)):
        pod = deployment(build_all(OWNER, parse_spec(with_(STATIC, drainTimeout=drain))))["spec"]["template"]["spec"]
        cfg = parse_config(yaml.safe_load(build_all(OWNER, parse_spec(with_(STATIC, drainTimeout=drain))).config_text))
        assert pod["terminationGracePeriodSeconds"] == grace
        assert pod["terminationGracePeriodSeconds"] > PRESTOP_SECONDS + cfg.shutdown.drain_timeout
    container = pod["containers"][0]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 8888, "protocol": "TCP"} in container["ports"]


def test_service_has_named_ports_with_app_protocol() -> None:
    svc = build_service(OWNER, parse_spec(with_(STATIC, ports={"grpc": 14317, "http": 14318, "metrics": 19090})))
    assert svc["metadata"]["name"] == "tier1-ringleader"
    assert svc["spec"]["selector"] == SELECTOR
    assert [(p["name"], p["port"], p["targetPort"], p["appProtocol"]) for p in svc["spec"]["ports"]] == [
        ("otlp-grpc", 14317, "otlp-grpc", "grpc"),
        ("otlp-http", 14318, "otlp-http", "http"),
        ("metrics", 19090, "metrics", "http"),
    ]


def test_pdb_defaults_to_max_unavailable_one_and_can_be_disabled() -> None:
    pdb = build_pdb(OWNER, parse_spec(STATIC))
    assert pdb is not None
    assert pdb["spec"] == {"selector": {"matchLabels": SELECTOR}, "maxUnavailable": 1}
    pdb = build_pdb(OWNER, parse_spec(with_(STATIC, podDisruptionBudget={"minAvailable": "50%"})))
    assert pdb is not None and pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    assert build_pdb(OWNER, parse_spec(with_(STATIC, podDisruptionBudget={"enabled": False}))) is None


def test_hpa_targets_the_resources_scale_subresource() -> None:
    assert build_hpa(OWNER, parse_spec(STATIC)) is None
    scaling = {"minReplicas": 3, "maxReplicas": 12, "targetCPUUtilizationPercentage": 60}
    spec = parse_spec(with_(STATIC, autoscaling=scaling))
    hpa = build_hpa(OWNER, spec)
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "ringleader.dev/v1alpha1",
        "kind": "LoadBalancingExporter",
        "name": "tier1",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 60},
    }
    assert scale_selector(OWNER) == ",".join(f"{k}={v}" for k, v in SELECTOR.items())


def test_service_monitor_scrapes_the_metrics_port() -> None:
    sm = build_service_monitor(OWNER, parse_spec(STATIC))
    assert sm is not None
    assert sm["spec"] == {
        "selector": {"matchLabels": SELECTOR},
        "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
    }
    assert build_service_monitor(OWNER, parse_spec(with_(STATIC, serviceMonitor={"enabled": False}))) is None


def test_pods_spread_over_nodes_and_zones_by_default() -> None:
    spec = parse_spec(STATIC)
    pod = build_deployment(OWNER, spec, "abc")["spec"]["template"]["spec"]
    assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in pod["topologySpreadConstraints"]] == [
        ("kubernetes.io/hostname", "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", "ScheduleAnyway"),
    ]
    own = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    pod = build_deployment(OWNER, parse_spec(with_(STATIC, topologySpreadConstraints=[own])), "abc")
    (constraint,) = pod["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert constraint == {**own, "labelSelector": {"matchLabels": SELECTOR}}


def test_configmaps_to_prune_keeps_the_current_and_the_newest_old_ones() -> None:
    def cm(name: str, created: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "creationTimestamp": created}}

    existing = [
        cm("t-a", "2026-12-01T10:00:00Z"),
        cm("t-d", "2026-12-01T13:00:00Z"),
        cm("t-b", "2026-12-01T11:00:00Z"),
        cm("t-c", "2026-12-01T12:00:00Z"),
    ]
    assert configmaps_to_prune(existing, keep=2, current="t-d") == ["t-a"]
    assert configmaps_to_prune(existing, keep=1, current="t-d") == ["t-a", "t-b"]
    assert configmaps_to_prune(existing, keep=0, current="t-a") == ["t-b", "t-c", "t-d"]
    assert configmaps_to_prune(list(reversed(existing)), keep=1, current="t-d") == ["t-a", "t-b"]
    assert configmaps_to_prune(existing, keep=10, current="t-d") == []


@pytest.mark.parametrize(
    ("config_key", "field"),
    [
        ("", "spec"),
        ("receivers.otlp.protocols.grpc.endpoint", "spec.ports.grpc"),
        ("telemetry.endpoint", "spec.ports.metrics"),
        ("shutdown.drain_timeout", "spec.drainTimeout"),
        ("exporters.loadbalancing.routing_attributes[0]", "spec.routingAttributes[0]"),
        ("exporters.loadbalancing.sending_queue.queue_size", "spec.sendingQueue.queueSize"),
        ("exporters.loadbalancing.resolver.aws_cloud_map.service_name", "spec.resolver.awsCloudMap.serviceName"),
        ("exporters.loadbalancing.resolver.k8s.return_hostnames", "spec.resolver.k8s.returnHostnames"),
        ("exporters.loadbalancing.resolver.static.hostnames[2]", "spec.resolver.static.hostnames[2]"),
        ("exporters.loadbalancing.protocol.otlp.retry_on_failure.max_interval", "spec.otlp.retryOnFailure.maxInterval"),
        ("exporters.loadbalancing.protocol.otlp.tls.server_name_override", "spec.otlp.tls.serverName"),
        ("exporters.loadbalancing.protocol.otlp.tls.key_file", "spec.otlp.tls.secretName"),
        ("exporters.loadbalancing.protocol.otlp.headers.x-a", "spec.otlp.headers"),
        ("exporters.loadbalancing.protocol.otlp.tls.min_version", "spec.extraConfig.protocol.otlp.tls.min_version"),
        ("exporters.loadbalancing.protocol.otlp.keepalive.time", "spec.extraConfig.protocol.otlp.keepalive.time"),
    ],
)
def test_a_data_plane_config_key_maps_to_the_field_behind_it(config_key: str, field: str) -> None:
    assert spec_path_for(config_key) == field


def test_the_same_spec_builds_the_same_objects() -> None:
    from tests.crdutil import FULL_SPEC

    assert build_all(OWNER, parse_spec(FULL_SPEC)) == build_all(OWNER, parse_spec(copy.deepcopy(FULL_SPEC)))
