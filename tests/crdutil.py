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
