"""The LoadBalancingExporter CRD against a real kube-apiserver (envtest): defaults, CEL refusals, apply.

The same bad specs are refused by :func:`ringleader_operator.spec.parse_spec`, so a spec means the same
with or without the API server; and the defaults the server writes are the ones parse_spec assumes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from e2e.envtest import EnvTest
from ringleader_operator.builders import build_all
from ringleader_operator.owner import Owner
from ringleader_operator.spec import SpecError, parse_spec
from tests.crdutil import (
    APPLY,
    FULL_VARIANTS,
    GROUP,
    PLURAL,
    ROOT,
    VERSION,
    crd_manifest,
    install_crd,
    resource,
)
from tests.harness import wait_until

EXAMPLES = sorted((ROOT / "examples").glob("loadbalancingexporter*.yaml"))
K8S: dict[str, Any] = {"resolver": {"k8s": {"service": "otelcol-tier2"}}}


@pytest.fixture(scope="module")
def crd_env(envtest: EnvTest) -> EnvTest:
    install_crd(envtest)
    return envtest


@pytest.fixture
def namespace(crd_env: EnvTest) -> str:
    return crd_env.new_namespace("lbe")


@pytest.fixture
def custom(crd_env: EnvTest) -> Iterator[client.CustomObjectsApi]:
    with crd_env.api_client() as api:
        yield client.CustomObjectsApi(api)


def create(custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, resource(name, spec))
    assert isinstance(created, dict)
    return created


def refusal(custom: client.CustomObjectsApi, namespace: str, spec: dict[str, Any], name: str = "bad") -> str:
    with pytest.raises(ApiException) as err:
        create(custom, namespace, name, spec)
    assert err.value.status == 422, err.value.body
    return str(json.loads(err.value.body or "{}")["message"])


def test_the_crd_is_served_with_short_name_subresources_and_columns(crd_env: EnvTest) -> None:
    with crd_env.api_client() as api:
        found = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    by_name = {r.name: r for r in found.resources}
    assert by_name[PLURAL].short_names == ["lbe"]
    assert by_name[PLURAL].namespaced is True
    assert by_name[PLURAL].kind == "LoadBalancingExporter"
    assert {f"{PLURAL}/status", f"{PLURAL}/scale"} <= set(by_name)
    columns = [c["name"] for c in crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:5] == ["Ready", "Replicas", "Backends", "Routing-Key", "Status"] and columns[-1] == "Age"


def test_the_printer_columns_render_as_a_table(custom: client.CustomObjectsApi, namespace: str) -> None:
    create(custom, namespace, "columns", K8S)
    api = custom.api_client
    response = api.rest_client.pool_manager.request(
        "GET",
        f"{api.configuration.host}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}",
        headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
            **{k: v for k, v in api.default_headers.items()},
            "Authorization": api.configuration.api_key.get("authorization")
            or api.configuration.get_api_key_with_prefix("BearerToken")
            or "",
        },
    )
    assert response.status == 200, response.data
    table = json.loads(response.data)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:6] == ["Name", "Ready", "Replicas", "Backends", "Routing-Key", "Status"]
    (row,) = table["rows"]
    cells = dict(zip(names, row["cells"], strict=True))
    assert cells["Name"] == "columns" and cells["Replicas"] == 2 and cells["Routing-Key"] == "traceID"


def test_the_api_server_applies_the_same_defaults_as_parse_spec(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    minimal = create(custom, namespace, "minimal", K8S)["spec"]
    assert minimal["replicas"] == 2
    assert minimal["routingKey"] == "traceID"
    assert minimal["resolver"]["k8s"] == {
        "service": "otelcol-tier2", "ports": [4317], "returnHostnames": False, "timeout": "1m", "debounce": "200ms"
    }  # fmt: skip
    assert minimal["ports"] == {"grpc": 4317, "http": 4318, "metrics": 8888}
    assert minimal["otlp"]["tls"] == {"insecure": False, "clientCertificate": False}
    assert parse_spec(minimal) == parse_spec(K8S)

    partial = {
        "resolver": {"dns": {"hostname": "tier2-headless"}},
        "sendingQueue": {"enabled": True},
        "retryOnFailure": {"enabled": True, "maxInterval": "10s", "initialInterval": "1s"},
        "otlp": {"sendingQueue": {"queueSize": 50}, "retryOnFailure": {"maxElapsedTime": "0s"}},
        "autoscaling": {"maxReplicas": 5},
        "podDisruptionBudget": {"minAvailable": "50%"},
        "serviceMonitor": {"enabled": False},
    }
    served = create(custom, namespace, "partial", partial)["spec"]
    assert served["sendingQueue"] == {
        "enabled": True, "numConsumers": 10, "queueSize": 1000, "sizer": "requests", "blockOnOverflow": False
    }  # fmt: skip
    assert served["otlp"]["sendingQueue"]["enabled"] is True
    assert served["autoscaling"] == {
        "enabled": True, "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70
    }  # fmt: skip
    assert parse_spec(served) == parse_spec(partial)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_accepted_and_builds(custom: client.CustomObjectsApi, namespace: str, example: Path) -> None:
    manifest = yaml.safe_load(example.read_text(encoding="utf-8"))
    served = create(custom, namespace, manifest["metadata"]["name"], manifest["spec"])
    assert parse_spec(served["spec"]) == parse_spec(manifest["spec"])
    owner = Owner(served["metadata"]["name"], namespace, served["metadata"]["uid"], served["metadata"]["generation"])
    build_all(owner, parse_spec(served["spec"]))  # renders, and the data plane's validator accepts it


@pytest.mark.parametrize("variant", sorted(FULL_VARIANTS))
def test_a_spec_setting_every_field_is_stored_as_written(
    custom: client.CustomObjectsApi, namespace: str, variant: str
) -> None:
    spec = FULL_VARIANTS[variant]
    served = create(custom, namespace, f"full-{variant.lower()}", spec)["spec"]
    assert served == spec  # nothing pruned, nothing defaulted over
    assert parse_spec(served) == parse_spec(spec)


def bad(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(K8S)
    spec.update(changes)
    return spec


HEADER_BOTH = {"name": "x-a", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
# (spec, what the API server says, the field parse_spec names)
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "two-resolvers": (
        {"resolver": {"k8s": {"service": "a"}, "static": {"hostnames": ["b:4317"]}}},
        "spec.resolver: Invalid value: exactly one resolver must be set",
        "spec.resolver",
    ),
    "no-resolver": ({"resolver": {}}, "exactly one resolver must be set", "spec.resolver"),
    "attributes-without-attributes-key": (
        bad(routingAttributes=["tenant"]),
        "spec.routingAttributes: Invalid value: routingAttributes is required with routingKey attributes, "
        "and only valid with it",
        "spec.routingAttributes",
    ),
    "attributes-key-without-attributes": (
        bad(routingKey="attributes"),
        "routingAttributes is required with routingKey attributes",
        "spec.routingAttributes",
    ),
    "receiver-port-out-of-range": (
        bad(ports={"grpc": 70000}),
        "spec.ports.grpc: Invalid value: 70000: spec.ports.grpc in body should be less than or equal to 65535",
        "spec.ports.grpc",
    ),
    "privileged-receiver-port": (
        bad(ports={"metrics": 80}),
        "spec.ports.metrics in body should be greater than or equal to 1024",
        "spec.ports.metrics",
    ),
    "same-port-twice": (
        bad(ports={"grpc": 4318}),
        "grpc, http and metrics must be different ports",
        "spec.ports",
    ),
    "resolver-port-out-of-range": (
        {"resolver": {"k8s": {"service": "a", "ports": [0]}}},
        "spec.resolver.k8s.ports[0] in body should be greater than or equal to 1",
        "spec.resolver.k8s.ports[0]",
    ),
    "header-value-and-secret": (
        bad(otlp={"headers": [HEADER_BOTH]}),
        "set exactly one of value and valueFrom",
        "spec.otlp.headers[0]",
    ),
    "credential-header-as-literal": (
        bad(otlp={"headers": [{"name": "Authorization", "value": "Bearer abc"}]}),
        "spec.otlp.headers[0].value: Invalid value: this header carries a credential",
        "spec.otlp.headers[0].value",
    ),
    "insecure-with-tls-secret": (
        bad(otlp={"tls": {"insecure": True, "secretName": "tier2-tls"}}),
        "spec.otlp.tls.insecure: Invalid value: insecure means plaintext",
        "spec.otlp.tls.insecure",
    ),
    "client-certificate-without-secret": (
        bad(otlp={"tls": {"clientCertificate": True}}),
        "clientCertificate needs secretName",
        "spec.otlp.tls.secretName",
    ),
    "autoscaling-min-above-max": (
        bad(autoscaling={"minReplicas": 5, "maxReplicas": 3}),
        "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        "spec.autoscaling.minReplicas",
    ),
    "pdb-both-bounds": (
        bad(podDisruptionBudget={"minAvailable": 1, "maxUnavailable": 1}),
        "set at most one of minAvailable and maxUnavailable",
        "spec.podDisruptionBudget",
    ),
    "pdb-bad-percentage": (
        bad(podDisruptionBudget={"maxUnavailable": "150%"}),
        "must be a non-negative integer or a percentage",
        "spec.podDisruptionBudget.maxUnavailable",
    ),
    "extra-config-owned-key": (
        bad(extraConfig={"resolver": {"static": {"hostnames": ["x"]}}}),
        "extraConfig must not set keys that spec fields own",
        "spec.extraConfig.resolver",
    ),
    "bad-duration": (bad(timeout="5 seconds"), "spec.timeout in body should match", "spec.timeout"),
    "retry-max-below-initial": (
        bad(retryOnFailure={"initialInterval": "10s", "maxInterval": "1s"}),
        "maxInterval must not be below initialInterval",
        "spec.retryOnFailure.maxInterval",
    ),
    "dns-srv-with-port": (
        {"resolver": {"dns": {"hostname": "_otlp._tcp.tier2", "srv": True, "port": 4317}}},
        "port cannot be used with srv",
        "spec.resolver.dns.port",
    ),
    "toleration-seconds-without-no-execute": (
        bad(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]),
        "tolerationSeconds is only valid with effect NoExecute",
        "spec.tolerations[0].tolerationSeconds",
    ),
    "bad-service-name": (
        {"resolver": {"k8s": {"service": "Tier2.other"}}},
        "spec.resolver.k8s.service in body should match",
        "spec.resolver.k8s.service",
    ),
    "too-many-hostnames": (
        {"resolver": {"static": {"hostnames": [f"t{i}:4317" for i in range(257)]}}},
        "must have at most 256 items",
        "spec.resolver.static.hostnames",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_spec_is_refused_by_the_api_server_and_by_parse_spec(
    custom: client.CustomObjectsApi, namespace: str, case: str
) -> None:
    spec, server_says, field = REFUSED[case]
    message = refusal(custom, namespace, spec)
    assert server_says in message, message
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert err.value.path == field, err.value


def test_a_name_too_long_for_the_service_is_refused(custom: client.CustomObjectsApi, namespace: str) -> None:
    message = refusal(custom, namespace, K8S, name="t" * 53)
    assert "metadata.name must be a DNS label of at most 52 characters" in message
    with pytest.raises(SpecError, match=r"metadata\.name: must be at most 52 characters"):
        build_all(Owner("t" * 53, namespace, "uid"), parse_spec(K8S))
    create(custom, namespace, "t" * 52, K8S)  # the longest name that fits


def test_server_side_apply_of_the_sample_twice_changes_nothing(
    custom: client.CustomObjectsApi, namespace: str
) -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "loadbalancingexporter.yaml").read_text(encoding="utf-8"))
    manifest["metadata"]["namespace"] = namespace
    name = manifest["metadata"]["name"]

    def apply() -> dict[str, Any]:
        # (the client returns None for the first apply's 201 Created: read the object back)
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, manifest, field_manager="gitops", _content_type=APPLY
        )
        current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        assert isinstance(current, dict)
        return current

    first = apply()
    second = apply()
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert second["metadata"]["generation"] == first["metadata"]["generation"] == 1
    assert second["spec"] == first["spec"]


def test_the_scale_subresource_drives_spec_replicas(custom: client.CustomObjectsApi, namespace: str) -> None:
    create(custom, namespace, "scaled", K8S)
    selector = "app.kubernetes.io/name=ringleader,app.kubernetes.io/instance=scaled"
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "scaled", {"status": {"replicas": 2, "selector": selector}}
    )
    custom.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "scaled", {"spec": {"replicas": 5}})
    scaled = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "scaled")
    assert isinstance(scaled, dict) and scaled["spec"]["replicas"] == 5
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "scaled")
    assert isinstance(scale, dict)
    assert scale["spec"]["replicas"] == 5
    assert scale["status"] == {"replicas": 2, "selector": selector}


@pytest.mark.parametrize("variant", sorted(FULL_VARIANTS))
def test_every_object_build_all_makes_is_valid_for_the_api_server(crd_env: EnvTest, variant: str) -> None:
    """Server-side dry run of each built object, as admin: the API server's own validation of the manifests
    (pod template, probes, preStop sleep, HPA, PDB, RBAC), without controllers acting on them."""
    namespace = crd_env.new_namespace("built")
    spec = copy.deepcopy(FULL_VARIANTS[variant])
    if variant == "k8s":
        spec["resolver"]["k8s"]["namespace"] = crd_env.new_namespace("tier2")  # cross-namespace RBAC
    desired = build_all(Owner("full", namespace, "0b4f5c2e-0000-4000-8000-000000000001"), parse_spec(spec))
    kinds = []
    with crd_env.api_client() as api:
        resources = dynamic.DynamicClient(api).resources
        for obj in (*desired.owned, *desired.cross_namespace):
            resource_api = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            try:
                resource_api.server_side_apply(
                    body=obj,
                    name=obj["metadata"]["name"],
                    namespace=obj["metadata"]["namespace"],
                    field_manager="ringleader-operator",
                    dry_run="All",
                )
            except ApiException as exc:
                pytest.fail(f"{obj['kind']} refused: {json.loads(exc.body or '{}').get('message')}")
            kinds.append(obj["kind"])
    expected = ["ConfigMap", "ServiceAccount", "Service", "Deployment", "PodDisruptionBudget"]
    expected.append("HorizontalPodAutoscaler")
    if variant == "k8s":
        expected += ["Role", "RoleBinding"]
    assert sorted(kinds) == sorted(expected)


@pytest.mark.parametrize("where", ["same-namespace", "other-namespace"])
def test_the_built_rbac_lets_the_data_plane_read_endpointslices_there_and_nothing_else(
    crd_env: EnvTest, where: str
) -> None:
    """The built ServiceAccount, Role and RoleBinding applied for real; the ServiceAccount's own token
    is then allowed exactly get/list/watch on EndpointSlices in the tier-2 namespace."""
    namespace = crd_env.new_namespace("rbac")
    tier2 = namespace if where == "same-namespace" else crd_env.new_namespace("tier2")
    elsewhere = crd_env.new_namespace("elsewhere")
    spec = parse_spec({"resolver": {"k8s": {"service": "otelcol-tier2", "namespace": tier2}}})
    desired = build_all(Owner("tier1", namespace, "0b4f5c2e-0000-4000-8000-000000000001"), spec)
    with crd_env.api_client() as api:
        resources = dynamic.DynamicClient(api).resources
        for obj in (*desired.owned, *desired.cross_namespace):
            if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                resource_api = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                resource_api.server_side_apply(
                    body=obj,
                    name=obj["metadata"]["name"],
                    namespace=obj["metadata"]["namespace"],
                    field_manager="ringleader-operator",
                )
    account = crd_env.service_account(namespace, "tier1-ringleader", create=False)

    def allowed(verb: str, resource: str, ns: str, group: str = "") -> bool:
        with crd_env.api_client(account.kubeconfig) as api:
            review = client.AuthorizationV1Api(api).create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(
                        resource_attributes=client.V1ResourceAttributes(
                            verb=verb, resource=resource, group=group, namespace=ns
                        )
                    )
                )
            )
        return bool(review.status and review.status.allowed)

    wait_until(lambda: allowed("watch", "endpointslices", tier2, "discovery.k8s.io"), 30, what="RBAC to take effect")
    for verb in ("get", "list", "watch"):
        assert allowed(verb, "endpointslices", tier2, "discovery.k8s.io")
    for verb in ("create", "update", "patch", "delete"):
        assert not allowed(verb, "endpointslices", tier2, "discovery.k8s.io")
    assert not allowed("list", "endpointslices", elsewhere, "discovery.k8s.io")
    assert not allowed("list", "pods", tier2)
    assert not allowed("get", "secrets", tier2)
    assert not allowed("list", "endpoints", tier2)
    if where == "other-namespace":
        assert not allowed("list", "endpointslices", namespace, "discovery.k8s.io")
    # And a real list with the token, as the resolver makes it.
    with crd_env.api_client(account.kubeconfig) as api:
        assert client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(tier2).items == []
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).list_namespaced_secret(tier2)
        assert err.value.status == 403


def test_a_full_status_is_stored_as_written(custom: client.CustomObjectsApi, namespace: str) -> None:
    create(custom, namespace, "status", K8S)
    status = {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 1,
        "updatedReplicas": 2,
        "selector": "app.kubernetes.io/name=ringleader,app.kubernetes.io/instance=status",
        "backends": 3,
        "configHash": "0123456789",
        "configMapName": "status-ringleader-0123456789",
        "tier2Service": f"{namespace}/otelcol-tier2",
        "ring": {
            "replicasReporting": 2,
            "consistent": False,
            "backendSets": [
                {"id": "aaaaaaaaaa", "backends": 3, "pods": ["status-ringleader-1"]},
                {"id": "bbbbbbbbbb", "backends": 2, "pods": ["status-ringleader-2"]},
            ],
            "unreachable": ["status-ringleader-3"],
        },
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "1 of 2 ready",
             "observedGeneration": 1, "lastTransitionTime": "2026-12-02T13:00:00Z"},
            {"type": "Degraded", "status": "True", "reason": "BackendSetDisagreement", "message": "...",
             "observedGeneration": 1, "lastTransitionTime": "2026-12-02T13:00:00Z"},
        ],
    }  # fmt: skip
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "status", {"status": status})
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "status")
    assert isinstance(stored, dict)
    assert stored["status"] == status  # nothing pruned: the CRD declares every field the operator writes
