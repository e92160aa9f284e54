"""The envtest with kube-controller-manager: the controllers an operator relies on really act.

Deployments make ReplicaSets and Pods, the garbage collector deletes what an owner
leaves behind, namespaces get their ``default`` ServiceAccount and are really
deleted, and the ServiceAccount admission plugin refuses a Pod whose account does
not exist. No kubelet: Pods stay Pending, and a test marks one ready by patching
its status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from e2e.envtest import EnvTest
from tests.harness import wait_until

LABELS = {"app": "web"}


@pytest.fixture
def api(envtest_controllers: EnvTest) -> Iterator[Any]:
    with envtest_controllers.api_client() as api_client:
        yield api_client


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/web:1"}]},
            },
        },
    }


def pods(api: Any, namespace: str) -> list[Any]:
    return list(k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items)


def test_a_deployment_gets_a_replicaset_and_pending_pods_and_counts_a_pod_marked_ready(
    envtest_controllers: EnvTest, api: Any
) -> None:
    ns = envtest_controllers.new_namespace("kcm")
    apps: Any = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("web", 3))

    wait_until(lambda: len(pods(api, ns)) == 3, 60, what="3 pods from the Deployment")
    replicasets = apps.list_namespaced_replica_set(ns).items
    assert len(replicasets) == 1
    assert replicasets[0].metadata.owner_references[0].kind == "Deployment"
    assert {p.status.phase for p in pods(api, ns)} == {"Pending"}

    first = pods(api, ns)[0]
    k8s.CoreV1Api(api).patch_namespaced_pod_status(
        first.metadata.name,
        ns,
        {"status": {"phase": "Running", "podIP": "10.1.2.3",
                    "conditions": [{"type": "Ready", "status": "True"}]}},
    )  # fmt: skip
    wait_until(
        lambda: (apps.read_namespaced_deployment_status("web", ns).status.ready_replicas or 0) == 1,
        60,
        what="the Deployment to count the pod marked ready",
    )


def test_the_garbage_collector_deletes_the_dependents_of_a_deleted_owner(
    envtest_controllers: EnvTest, api: Any
) -> None:
    ns = envtest_controllers.new_namespace("kcm")
    apps: Any = k8s.AppsV1Api(api)
    core: Any = k8s.CoreV1Api(api)
    owner = apps.create_namespaced_deployment(ns, deployment("web", 1))
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    wait_until(lambda: len(pods(api, ns)) == 1, 60, what="the pod")

    apps.delete_namespaced_deployment("web", ns)

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", ns)
        except ApiException as exc:
            if exc.status == 404:
                return not pods(api, ns) and not apps.list_namespaced_replica_set(ns).items
            raise
        return False

    wait_until(gone, 90, what="the ConfigMap, ReplicaSet and Pod to be garbage-collected")


def test_namespaces_get_a_default_service_account_and_are_really_deleted(
    envtest_controllers: EnvTest, api: Any
) -> None:
    core: Any = k8s.CoreV1Api(api)
    ns = envtest_controllers.new_namespace("kcm")
    wait_until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(ns).items),
        60,
        what="the default ServiceAccount",
    )
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(
            ns,
            {"metadata": {"name": "p"},
             "spec": {"serviceAccountName": "missing", "containers": [{"name": "c", "image": "x"}]}},
        )  # fmt: skip
    assert refused.value.status == 403 and "serviceaccount" in str(refused.value.body).lower()

    core.delete_namespace(ns)

    def deleted() -> bool:
        try:
            core.read_namespace(ns)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_until(deleted, 90, what="the namespace to be deleted")
