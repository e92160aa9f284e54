"""Helpers for tests that need the LoadBalancingExporter CRD in the envtest API server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.envtest import EnvTest

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "ringleader.dev_loadbalancingexporters.yaml"
GROUP, VERSION, PLURAL = "ringleader.dev", "v1alpha1", "loadbalancingexporters"
APPLY = "application/apply-patch+yaml"


def crd_manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    return data


def install_crd(env: EnvTest, timeout: float = 60.0) -> None:
    """Server-side apply the CRD (idempotent) and wait until it is Established and served."""
    manifest = crd_manifest()
    name = manifest["metadata"]["name"]
    with env.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        ext.patch_custom_resource_definition(
            name, manifest, field_manager="ringleader-tests", force=True, _content_type=APPLY
        )
        deadline = time.monotonic() + timeout
        while True:
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
            if conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established within {timeout}s: {conditions}")
            time.sleep(0.1)
        # Established can precede the first successful list by a moment (discovery / storage start).
        custom = client.CustomObjectsApi(api)
        while True:
            try:
                custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                return
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def resource(name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LoadBalancingExporter", "metadata": metadata, "spec": spec}


# A spec that sets every field of the CRD (tests check both halves: the CRD declares each path, and
# parse_spec, which refuses unknown fields, reads each one).
FULL_SPEC: dict[str, Any] = {
    "replicas": 3,
    "image": "registry.example/ringleader:0.1.0",
    "imagePullPolicy": "Always",
    "routingKey": "attributes",
    "routingAttributes": ["tenant", "service.name"],
    "ringAlgorithm": "upstream",
    "timeout": "2s",
    "resolver": {
        "k8s": {
            "service": "otelcol-tier2",
            "namespace": "sampling",
            "ports": [4317, 4319],
            "returnHostnames": True,
            "timeout": "30s",
            "debounce": "500ms",
        }
    },
    "sendingQueue": {"enabled": True, "numConsumers": 4, "queueSize": 2000, "sizer": "items", "blockOnOverflow": True},
    "retryOnFailure": {
        "enabled": True,
        "initialInterval": "1s",
        "randomizationFactor": 0.2,
        "multiplier": 2.0,
        "maxInterval": "10s",
        "maxElapsedTime": "2m",
    },
    "otlp": {
        "timeout": "3s",
        "compression": "deflate",
        "tls": {"insecure": False, "secretName": "tier2-tls", "clientCertificate": True, "serverName": "tier2.svc"},
        "headers": [
            {"name": "x-scope-orgid", "value": "team-a"},
            {"name": "authorization", "valueFrom": {"secretKeyRef": {"name": "tier2-auth", "key": "token"}}},
        ],
        "sendingQueue": {"enabled": True, "numConsumers": 2, "queueSize": 100, "sizer": "requests",
                         "blockOnOverflow": False},
        "retryOnFailure": {"enabled": True, "initialInterval": "500ms", "randomizationFactor": 0.5,
                           "multiplier": 1.5, "maxInterval": "5s", "maxElapsedTime": "0s"},
    },
    "ports": {"grpc": 14317, "http": 14318, "metrics": 18888},
    "drainTimeout": "20s",
    "logLevel": "debug",
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["observability"]}]}]}}},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "otel", "effect": "NoExecute",
                     "tolerationSeconds": 60}],
    "topologySpreadConstraints": [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "minDomains": 2, "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore",
        "matchLabelKeys": ["pod-template-hash"],
        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "full"},
                          "matchExpressions": [{"key": "tier", "operator": "In", "values": ["one"]}]},
    }],
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"},
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9, "targetCPUUtilizationPercentage": 65},
    "serviceMonitor": {"enabled": True, "interval": "15s"},
    "extraConfig": {"protocol": {"otlp": {"keepalive": {"time": "30s"}, "tls": {"reload_interval": "1h"}}}},
}  # fmt: skip


def schema_paths(schema: dict[str, Any], prefix: str = "spec") -> set[str]:
    """Every field path the CRD's spec schema declares (list items as ``[]``), stopping at opaque objects."""
    paths = {prefix}
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return paths
    for key, sub in schema.get("properties", {}).items():
        paths |= schema_paths(sub, f"{prefix}.{key}")
    if "items" in schema:
        paths |= schema_paths(schema["items"], f"{prefix}[]")
    return paths


def value_paths(value: Any, prefix: str = "spec") -> set[str]:
    paths = {prefix}
    if isinstance(value, dict):
        for key, sub in value.items():
            paths |= value_paths(sub, f"{prefix}.{key}")
    elif isinstance(value, list):
        for item in value:
            paths |= value_paths(item, f"{prefix}[]")
    return paths


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


# The fields FULL_SPEC cannot set together with its own (one resolver, one PDB bound).
FULL_VARIANTS: dict[str, dict[str, Any]] = {
    "k8s": FULL_SPEC,
    "dns": {
        **FULL_SPEC,
        "resolver": {"dns": {"hostname": "tier2-headless.sampling.svc.cluster.local", "port": 4317, "interval": "10s",
                             "timeout": "2s", "server": "10.96.0.10:53", "srv": False}},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
    },
    "static": {**FULL_SPEC, "resolver": {"static": {"hostnames": ["tier2-0:4317", "tier2-1"]}}},
    "awsCloudMap": {
        **FULL_SPEC,
        "resolver": {"awsCloudMap": {"namespace": "otel", "serviceName": "tier2", "port": 4317,
                                     "healthStatus": "HEALTHY_OR_ELSE_ALL", "interval": "1m", "timeout": "10s",
                                     "ownerAccount": "123456789012"}},
    },
}  # fmt: skip
