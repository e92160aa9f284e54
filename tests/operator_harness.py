"""Running ``ringleader-operator`` against the envtest, as a ServiceAccount holding exactly its documented RBAC.

:class:`OperatorProcess` starts ``python -m ringleader_operator run ...`` with a
kubeconfig of the operator's ServiceAccount (made from ``rbac_rules.yaml``
by :func:`install_operator_rbac`), waits for its liveness endpoint, and stops it.
:class:`Cluster` is the admin's view used to create resources and check what the
operator made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from e2e.envtest import EnvTest, ServiceAccountCredentials
from ringleader_operator.rbac import rbac_manifests
from tests.harness import PYTHON, ROOT, free_port, wait_until
from tests.netns import die_with_parent

GROUP, VERSION, PLURAL, KIND = "ringleader.dev", "v1alpha1", "loadbalancingexporters", "LoadBalancingExporter"
APPLY = "application/apply-patch+yaml"


def apply_manifest(api: Any, manifest: dict[str, Any], manager: str = "ringleader-tests") -> dict[str, Any]:
    """Server-side apply any manifest as admin (through the generic REST path)."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    plural = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
              "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
              "Service": "services", KIND: PLURAL}[kind]  # fmt: skip
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = manifest["metadata"].get("namespace")
    path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
    _, url, headers, body, _ = api.param_serialize(
        "PATCH", f"{path}/{manifest['metadata']['name']}",
        query_params=[("fieldManager", manager), ("force", "true")],
        header_params={"Content-Type": APPLY, "Accept": "application/json"},
        body=json.dumps(manifest), auth_settings=["BearerToken"],
    )  # fmt: skip
    response = api.call_api("PATCH", url, headers, body)
    raw = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response, body=raw.decode(errors="replace"), data=None)
    result: dict[str, Any] = json.loads(raw)
    return result


def install_operator_rbac(
    env: EnvTest,
    operator_namespace: str,
    *,
    namespaces: list[str] | None,
    tier2_namespaces: Sequence[str] = (),
) -> ServiceAccountCredentials:
    """Apply exactly the documented RBAC and return the operator ServiceAccount's credentials."""
    with env.api_client() as api:
        for manifest in rbac_manifests(
            namespaces=namespaces, tier2_namespaces=list(tier2_namespaces), operator_namespace=operator_namespace
        ):
            apply_manifest(api, manifest)
    return env.service_account(operator_namespace, "ringleader-operator", create=False)


class OperatorProcess:
    """``ringleader-operator run`` as a subprocess with ``identity``'s kubeconfig."""

    def __init__(self, workdir: Path, identity: ServiceAccountCredentials, *scope: str, resync: float = 5.0) -> None:
        self.workdir = workdir
        self.identity = identity
        self.scope = list(scope) or ["--all-namespaces"]
        self.resync = resync
        self.log = workdir / "operator.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        self.port = free_port()
        env = dict(os.environ, KUBECONFIG=str(self.identity.kubeconfig), PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "operator")]))  # fmt: skip
        env.pop("KUBERNETES_SERVICE_HOST", None)
        liveness = f"http://127.0.0.1:{self.port}/healthz"
        args = [PYTHON, "-m", "ringleader_operator", "run", *self.scope,
                "--liveness", liveness, "--resync-seconds", str(self.resync)]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        wait_until(lambda: self._alive() or self._exited(), 60, interval=0.2, what="the operator's liveness")
        if self._exited():
            raise AssertionError(f"operator exited:\n{self.tail()}")
        return self

    def _exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def _alive(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class Cluster:
    """The admin's view: create resources, read what the operator made."""

    def __init__(self, env: EnvTest) -> None:
        self.env = env
        self.api: Any = env.api_client()
        self.core: Any = k8s.CoreV1Api(self.api)
        self.apps: Any = k8s.AppsV1Api(self.api)
        self.rbac: Any = k8s.RbacAuthorizationV1Api(self.api)
        self.policy: Any = k8s.PolicyV1Api(self.api)
        self.custom: Any = k8s.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    def create(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name}, "spec": spec}
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        return created

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return got

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
        )
        return patched

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def exists(self, read: Any, *args: Any) -> bool:
        try:
            read(*args)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any]:
        conditions = (self.get(namespace, name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == kind), {})

    def tier2_service(self, namespace: str, name: str = "tier2", port: int = 4317) -> None:
        self.core.create_namespaced_service(
            namespace,
            {"metadata": {"name": name}, "spec": {"clusterIP": "None", "ports": [{"name": "otlp-grpc", "port": port}]}},
        )

    def events(self, namespace: str, name: str) -> list[tuple[str, str, str]]:
        items = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return [(e.type, e.reason, e.message) for e in items]
