"""parse_spec: the resource's spec in, typed objects or a SpecError naming the camelCase field out."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from ringleader_operator.spec import (
    MANAGED_EXTRA_CONFIG_KEYS,
    TLS,
    Autoscaling,
    DNSResolver,
    ExporterSpec,
    Header,
    K8sResolver,
    PodDisruptionBudget,
    Ports,
    Queue,
    Retry,
    SecretKeyRef,
    SpecError,
    StaticResolver,
    parse_spec,
)
from tests.crdutil import FULL_SPEC, FULL_VARIANTS, crd_manifest, schema_paths, spec_schema, value_paths

K8S: dict[str, Any] = {"resolver": {"k8s": {"service": "otelcol-tier2"}}}


def with_(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(K8S)
    spec.update(changes)
    return spec


def test_a_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(K8S)
    assert spec == ExporterSpec(resolver=K8sResolver(service="otelcol-tier2"))
    assert spec.replicas == 2 and spec.routing_key == "traceID" and spec.ring_algorithm == "ringleader"
    assert spec.resolver == K8sResolver("otelcol-tier2", None, (4317,), False, "1m", "200ms")
    assert spec.sending_queue == Queue(enabled=False) and spec.retry_on_failure == Retry(enabled=False)
    assert spec.otlp.sending_queue == Queue(enabled=True) and spec.otlp.retry_on_failure == Retry(enabled=True)
    assert spec.otlp.tls == TLS(insecure=False)
    assert spec.ports == Ports(4317, 4318, 8888)
    assert spec.pod_disruption_budget == PodDisruptionBudget(enabled=True, max_unavailable=1)
    assert spec.autoscaling is None
    assert spec.resources == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert spec.drain_timeout == "30s"


def test_every_field_is_read() -> None:
    spec = parse_spec(FULL_SPEC)
    assert spec.routing_attributes == ("tenant", "service.name")
    assert spec.resolver == K8sResolver("otelcol-tier2", "sampling", (4317, 4319), True, "30s", "500ms")
    assert spec.sending_queue == Queue(True, 4, 2000, "items", True)
    assert spec.retry_on_failure == Retry(True, "1s", 0.2, 2.0, "10s", "2m")
    assert spec.otlp.tls == TLS(False, "tier2-tls", True, "tier2.svc")
    assert spec.otlp.headers == (
        Header("x-scope-orgid", value="team-a"),
        Header("authorization", secret_key_ref=SecretKeyRef("tier2-auth", "token")),
    )
    assert spec.autoscaling == Autoscaling(3, 9, 65)
    assert spec.pod_disruption_budget == PodDisruptionBudget(True, None, "25%")
    assert spec.tolerations[0]["tolerationSeconds"] == 60
    assert spec.extra_config == FULL_SPEC["extraConfig"]
    assert isinstance(parse_spec(FULL_VARIANTS["dns"]).resolver, DNSResolver)
    assert isinstance(parse_spec(FULL_VARIANTS["static"]).resolver, StaticResolver)


def test_the_crd_declares_exactly_the_fields_parse_spec_reads() -> None:
    declared = schema_paths(spec_schema())
    written = set().union(*(value_paths(spec) for spec in FULL_VARIANTS.values()))
    opaque = ("spec.affinity.", "spec.extraConfig.", "spec.resources.requests.", "spec.resources.limits.",
              "spec.nodeSelector.", "spec.topologySpreadConstraints[].labelSelector.matchLabels.")  # fmt: skip
    assert declared - written == set(), "CRD fields no test spec sets (add them to FULL_VARIANTS)"
    assert {p for p in written - declared if not p.startswith(opaque)} == set(), "fields the CRD does not declare"
    for spec in FULL_VARIANTS.values():
        parse_spec(spec)  # parse_spec refuses unknown fields, so it reads every declared one


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({}, "spec.resolver", "required"),
        ({"resolver": {"k8s": {}}}, "spec.resolver.k8s.service", "required"),
        (with_(replicas=-1), "spec.replicas", "must be between 0 and 1000, got -1"),
        (with_(replicas="2"), "spec.replicas", "expected an integer, got string"),
        (with_(routingKey="spanID"), "spec.routingKey", "must be one of traceID, service"),
        (with_(timeout="5"), "spec.timeout", 'invalid duration \'5\': expected a Go duration such as "5s"'),
        (with_(timeout="-1s"), "spec.timeout", "must not be negative"),
        (with_(drainTimeout=30), "spec.drainTimeout", "expected a string, got integer"),
        (with_(unknown=1), "spec.unknown", "unknown field (valid fields here: replicas, image"),
        (with_(otlp={"tls": {"ca": "x"}}), "spec.otlp.tls.ca", "unknown field (valid fields here: insecure, secret"),
        (with_(otlp={"compression": "lz4"}), "spec.otlp.compression", "must be one of gzip, zstd, snappy"),
        (with_(otlp={"headers": [{"name": "bad header", "value": "x"}]}), "spec.otlp.headers[0].name",
         "is not an HTTP header name"),
        (with_(otlp={"headers": [{"name": "a", "value": "1"}, {"name": "A", "value": "2"}]}),
         "spec.otlp.headers[1].name", "header 'A' is listed twice"),
        (with_(otlp={"headers": [{"name": "a"}]}), "spec.otlp.headers[0]", "set exactly one of value and valueFrom"),
        (with_(otlp={"headers": [{"name": "a", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}),
         "spec.otlp.headers[0].valueFrom.secretKeyRef.key", "required"),
        (with_(otlp={"tls": {"secretName": "Not_A_Secret"}}), "spec.otlp.tls.secretName", "is not a Secret name"),
        ({"resolver": {"k8s": {"service": "t", "ports": [4317, 4317]}}}, "spec.resolver.k8s.ports",
         "must not list a port twice"),
        ({"resolver": {"k8s": {"service": "t", "namespace": "Bad_NS"}}}, "spec.resolver.k8s.namespace",
         "is not a namespace name"),
        ({"resolver": {"static": {"hostnames": []}}}, "spec.resolver.static.hostnames", "must list at least one"),
        ({"resolver": {"static": {"hostnames": [""]}}}, "spec.resolver.static.hostnames[0]", "must not be empty"),
        ({"resolver": {"awsCloudMap": {"namespace": "n"}}}, "spec.resolver.awsCloudMap.serviceName", "required"),
        (with_(resources=[]), "spec.resources", "expected an object, got list"),
        (with_(nodeSelector={"a": 1}), "spec.nodeSelector.a", "expected a string, got integer"),
        (with_(extraConfig={"protocol": {"otlp": {"headers": {"a": "b"}}}}),
         "spec.extraConfig.protocol.otlp.headers", "is set by spec.otlp.headers; set it there"),
        (with_(extraConfig={"protocol": {"otlp": {"tls": {"key_pem": "-----BEGIN"}}}}),
         "spec.extraConfig.protocol.otlp.tls.key_pem", "a private key belongs in a Secret"),
        (with_(extraConfig={"protocol": {"otlp": {"endpoint": "x:4317"}}}),
         "spec.extraConfig.protocol.otlp.endpoint", "the resolver sets each backend's endpoint"),
        (with_(extraConfig={"protocol": {"otlp": {"authority": "${env:HOME}"}}}),
         "spec.extraConfig.protocol.otlp.authority", "environment references are not available here"),
        (with_(extraConfig={"protocol": {"otlp": {"user_agent": "a-$${HOME}-${PATH}"}}}),
         "spec.extraConfig.protocol.otlp.user_agent", "environment references are not available here"),
    ],
)
def test_a_bad_spec_names_the_field(spec: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert err.value.path == path
    assert message in err.value.message
    assert str(err.value) == f"{path}: {err.value.message}"


def test_every_key_a_field_owns_is_refused_in_extra_config() -> None:
    for dotted, owner in MANAGED_EXTRA_CONFIG_KEYS.items():
        extra: dict[str, Any] = {}
        node = extra
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = "x"
        with pytest.raises(SpecError) as err:
            parse_spec(with_(extraConfig=extra))
        assert err.value.path == f"spec.extraConfig.{dotted}"
        assert owner in err.value.message


def test_a_literal_dollar_in_extra_config_is_written_as_in_the_collector() -> None:
    extra = {"protocol": {"otlp": {"user_agent": "cost-$$5 $${HOME}"}}}
    assert parse_spec(with_(extraConfig=extra)).extra_config == extra


def test_autoscaling_disabled_means_no_autoscaler() -> None:
    assert parse_spec(with_(autoscaling={"enabled": False, "minReplicas": 9, "maxReplicas": 1})).autoscaling is None
    assert parse_spec(with_(autoscaling={})).autoscaling == Autoscaling(2, 10, 70)


def test_parse_spec_copies_what_it_keeps() -> None:
    source = copy.deepcopy(FULL_SPEC)
    spec = parse_spec(source)
    source["extraConfig"]["protocol"]["otlp"]["keepalive"]["time"] = "1s"
    source["tolerations"][0]["key"] = "changed"
    assert spec.extra_config["protocol"]["otlp"]["keepalive"]["time"] == "30s"
    assert spec.tolerations[0]["key"] == "dedicated"


def test_docs_describe_every_field_of_the_crd() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "operator.md").read_text(encoding="utf-8")
    opaque = ("spec.affinity.", "spec.resources.", "spec.nodeSelector.", "spec.tolerations[].",
              "spec.topologySpreadConstraints[].", "spec.extraConfig.", "spec.podDisruptionBudget.")  # fmt: skip
    missing = sorted(
        path
        for path in schema_paths(spec_schema())
        if path != "spec" and not path.startswith(opaque) and not path.endswith("[]")
        and not re.search(rf"[`.{{ ]{path.rsplit('.', 1)[-1]}\b", docs)
    )  # fmt: skip
    assert missing == []


def test_every_string_list_and_map_in_the_crd_is_bounded() -> None:
    unbounded: list[str] = []

    def walk(schema: dict[str, Any], path: str) -> None:
        kind = schema.get("type")
        if kind == "string" and not ({"maxLength", "enum"} & set(schema) or schema.get("format") == "date-time"):
            unbounded.append(path)
        if kind == "array" and "maxItems" not in schema:
            unbounded.append(path)
        if isinstance(schema.get("additionalProperties"), dict):
            if "maxProperties" not in schema:
                unbounded.append(path)
            walk(schema["additionalProperties"], f"{path}{{}}")
        for key, sub in schema.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        if "items" in schema:
            walk(schema["items"], f"{path}[]")

    root = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    walk(root, "")
    assert unbounded == [".apiVersion", ".kind"]  # the API server bounds those itself


def test_kopfs_views_of_the_body_are_read_like_plain_dicts() -> None:
    import kopf

    from ringleader_operator.owner import Owner

    raw: Any = {"metadata": {"name": "tier1", "namespace": "obs", "uid": "u-1", "generation": 4}, "spec": FULL_SPEC}
    body = kopf.Body(raw)
    assert parse_spec(kopf.Spec(body)) == parse_spec(FULL_SPEC)
    assert Owner.from_metadata(kopf.Meta(body)) == Owner("tier1", "obs", "u-1", 4)
