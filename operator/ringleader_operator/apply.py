"""The apply layer: the few Kubernetes API calls the operator makes, for the few kinds it owns.

Objects are written with **server-side apply** under the field manager
``ringleader-operator`` (with ``force``: the operator owns the fields it sets and
takes them back from whoever edited them by hand). Applying what is already there
changes nothing, not even ``resourceVersion``, which is what makes a restart of
the operator, or a periodic resync, harmless::

    api = KubeApi(api_client)                     # a kubernetes.client.ApiClient
    result = await api.apply(manifest)            # Applied(object, change="created"|"updated"|"unchanged")
    await api.delete("v1", "ConfigMap", "ns", "name")
    await api.patch_status(owner, {"observedGeneration": 3, ...})

The ``kubernetes`` client is synchronous; every call runs in a worker thread so
the kopf event loop never blocks. Errors surface as
:class:`kubernetes.client.exceptions.ApiException` (``status`` 403, 404, 409, 422...).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import EllipsisType
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from .owner import GROUP, PLURAL, VERSION, Owner

__all__ = ["FIELD_MANAGER", "KINDS", "Applied", "Kind", "KubeApi"]

FIELD_MANAGER = "ringleader-operator"
REQUEST_TIMEOUT = 30.0  # seconds; a cut connection must not hang a reconciliation


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def collection(self, namespace: str | None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace is not None:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("v1", "Service", "services"),
        Kind("v1", "Pod", "pods"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("rbac.authorization.k8s.io/v1", "Role", "roles"),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
        Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
        Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices"),
        Kind(f"{GROUP}/{VERSION}", "LoadBalancingExporter", PLURAL),
    )
}

Change = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class Applied:
    """The object as the API server stored it, and whether applying it changed anything."""

    object: dict[str, Any]
    change: Change


def kind_of(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} ({api_version})") from None


class KubeApi:
    """Thin async wrapper over a ``kubernetes.client.ApiClient`` for the operator's kinds."""

    def __init__(self, api_client: Any, field_manager: str = FIELD_MANAGER) -> None:
        self.client = api_client
        self.field_manager = field_manager

    # -- raw -------------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if not hasattr(self.client, "param_serialize"):  # kubernetes < 34: the older generated client
            data = self.client.call_api(
                path, method, query_params=list((query or {}).items()), header_params=headers, body=body,
                auth_settings=["BearerToken"], response_type="object", _return_http_data_only=True,
            )  # fmt: skip
            return dict(data or {})
        _, url, headers, body, _ = self.client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )  # fmt: skip
        response = self.client.call_api(method, url, headers, body, _request_timeout=REQUEST_TIMEOUT)
        raw = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response, body=raw.decode(errors="replace"), data=None)
        return dict(json.loads(raw) or {}) if raw else {}

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self._call, method, path, **kwargs)

    # -- objects ---------------------------------------------------------------------------------
    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        path = f"{kind_of(api_version, kind).collection(namespace)}/{name}"
        try:
            return await self.call("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else {}
        body = await self.call("GET", kind_of(api_version, kind).collection(namespace), query=query)
        return [dict(item) for item in body.get("items") or ()]

    async def apply(
        self, manifest: Mapping[str, Any], before: Mapping[str, Any] | EllipsisType | None = ...
    ) -> Applied:
        """Server-side apply ``manifest`` (force: the operator's fields are the operator's).

        ``before`` is the object as just read (None: absent), if the caller has it; else it is read
        here, to tell "created", "updated" and "unchanged" apart."""
        meta = manifest["metadata"]
        kind = kind_of(str(manifest["apiVersion"]), str(manifest["kind"]))
        path = f"{kind.collection(meta.get('namespace'))}/{meta['name']}"
        if before is ...:
            before = await self.get(kind.api_version, kind.kind, meta.get("namespace"), meta["name"])
        stored = await self.call(
            "PATCH",
            path,
            query={"fieldManager": self.field_manager, "force": "true"},
            # JSON is YAML: the apply content type takes it as it is.
            body=json.dumps(manifest),
            content_type="application/apply-patch+yaml",
        )
        if before is None:
            change: Change = "created"
        elif before["metadata"].get("resourceVersion") == stored["metadata"].get("resourceVersion"):
            change = "unchanged"
        else:
            change = "updated"
        return Applied(stored, change)

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete in the background (dependents follow via the garbage collector); False if absent."""
        path = f"{kind_of(api_version, kind).collection(namespace)}/{name}"
        try:
            await self.call("DELETE", path, body={"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- the resource ----------------------------------------------------------------------------
    async def patch_status(self, owner: Owner, status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the resource's ``status`` subresource (never ``spec``). A patch that changes
        nothing leaves ``resourceVersion`` as it was."""
        kind = kind_of(f"{GROUP}/{VERSION}", "LoadBalancingExporter")
        path = f"{kind.collection(owner.namespace)}/{owner.name}/status"
        return await self.call(
            "PATCH", path, body={"status": dict(status)}, content_type="application/merge-patch+json"
        )

    async def api_group_has(self, group_version: str, plural: str) -> bool:
        """Whether the API serves ``plural`` in ``group_version`` (e.g. is the ServiceMonitor CRD installed)."""
        try:
            body = await self.call("GET", f"/apis/{group_version}")
        except ApiException as exc:
            if exc.status in (403, 404):
                return False
            raise
        return any(r.get("name") == plural for r in body.get("resources") or ())
