"""Least privilege, both ways: the operator works with exactly its documented Role, and the RBAC it
writes for the data plane is enough to deliver traces and no more.

The operator runs namespaced (``run --namespace <app ns>``) as a ServiceAccount
holding only the Roles ``ringleader-operator rbac --namespace <app ns>
--tier2-namespace <tier-2 ns>`` prints: the ``watched`` rules where the resource
lives, the ``tier2`` rules where the tier-2 Service lives. The data plane then
runs with the config from the ConfigMap the operator rendered and the token of the
ServiceAccount the operator created, against the same API server, while the
tier-2 "pods" are sinks in a network namespace (as in tests/test_k8s_live.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from e2e.envtest import EnvTest
from e2e.loadgen import send_traces
from tests.harness import DataPlaneProcess, wait_until
from tests.netns import NetNamespace
from tests.operator_harness import Cluster, OperatorProcess, install_operator_rbac
from tests.test_k8s_live import (  # noqa: F401 - fixtures netns, start_sinks
    SINK_PORT,
    StartSinks,
    assert_each_trace_on_one_backend,
    assert_exactly_once,
    netns,
    pod,
    start_sinks,
    wait_all_arrived,
)


@pytest.fixture(scope="module")
def setup(envtest_controllers: EnvTest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.crdutil import install_crd

    install_crd(envtest_controllers)
    app = envtest_controllers.new_namespace("app")
    tier2 = envtest_controllers.new_namespace("sampling")
    system = envtest_controllers.new_namespace("ringleader-system")
    identity = install_operator_rbac(envtest_controllers, system, namespaces=[app], tier2_namespaces=[tier2])
    cluster = Cluster(envtest_controllers)
    proc = OperatorProcess(tmp_path_factory.mktemp("operator"), identity, "--namespace", app).start()
    try:
        yield {"app": app, "tier2": tier2, "cluster": cluster, "operator": proc, "identity": identity}
    finally:
        proc.stop()
        cluster.close()


def put_slice(api: Any, namespace: str, addresses: list[str]) -> None:
    discovery: Any = k8s.DiscoveryV1Api(api)
    discovery.create_namespaced_endpoint_slice(namespace, {
        "metadata": {"name": "tier2-a", "labels": {"kubernetes.io/service-name": "tier2",
                                                   "endpointslice.kubernetes.io/managed-by": "ringleader-tests"}},
        "addressType": "IPv4",
        "ports": [{"name": "otlp-grpc", "port": SINK_PORT, "protocol": "TCP"}],
        "endpoints": [pod(a) for a in addresses],
    })  # fmt: skip


def test_the_operator_does_its_job_with_exactly_its_documented_namespaced_roles(
    setup: dict[str, Any], envtest_controllers: EnvTest
) -> None:
    cluster: Cluster = setup["cluster"]
    app, tier2 = setup["app"], setup["tier2"]
    cluster.tier2_service(tier2)
    spec = {"replicas": 1, "resolver": {"k8s": {"service": "tier2", "namespace": tier2}},
            "otlp": {"tls": {"insecure": True}}}  # fmt: skip
    cluster.create(app, "tier1", spec)

    def converged() -> dict[str, Any] | None:
        status = cluster.get(app, "tier1").get("status") or {}
        return status if status.get("observedGeneration") == 1 and status.get("configHash") else None

    status = wait_until(converged, 60, interval=0.3, what="the operator to report")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Degraded"]["status"] == "False", conditions["Degraded"]
    assert cluster.exists(cluster.apps.read_namespaced_deployment, "tier1-ringleader", app)
    assert cluster.exists(cluster.rbac.read_namespaced_role, f"{app}.tier1-ringleader", tier2)
    assert status["tier2Service"] == f"{tier2}/tier2"
    # The operator's own identity is confined: nothing outside its namespaces, no secrets anywhere.
    with envtest_controllers.api_client(setup["identity"].kubeconfig) as api:
        for call in (
            lambda: k8s.CoreV1Api(api).list_namespaced_secret(app),
            lambda: k8s.CoreV1Api(api).list_namespaced_config_map(envtest_controllers.new_namespace("other")),
        ):
            with pytest.raises(ApiException) as denied:
                call()
            assert denied.value.status == 403
    assert "Forbidden" not in setup["operator"].tail(200_000), "the operator hit a permission it lacks"


def test_the_rbac_the_operator_writes_lets_the_data_plane_deliver_traces_and_nothing_more(
    setup: dict[str, Any],
    envtest_controllers: EnvTest,
    start_sinks: StartSinks,  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster: Cluster = setup["cluster"]
    app, tier2 = setup["app"], setup["tier2"]
    body = wait_until(lambda: (cluster.get(app, "tier1").get("status") or {}).get("configMapName"), 60,
                      interval=0.3, what="the resource of the previous test")  # fmt: skip
    pods = start_sinks(3)
    put_slice(cluster.api, tier2, [s.host for s in pods])
    wait_until(lambda: (cluster.get(app, "tier1").get("status") or {}).get("backends") == 3, 60, interval=0.3,
               what="status.backends to count the 3 ready tier-2 endpoints")  # fmt: skip

    # The config exactly as rendered; DataPlaneProcess only moves the listeners to free loopback ports.
    config = yaml.safe_load(cluster.core.read_namespaced_config_map(body, app).data["config.yaml"])
    assert config["exporters"]["loadbalancing"]["resolver"]["k8s"]["service"] == f"tier2.{tier2}"
    # The ServiceAccount the operator created, with a token as its pod would get.
    identity = envtest_controllers.service_account(app, "tier1-ringleader", create=False)
    monkeypatch.setenv("KUBECONFIG", str(identity.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    dp = DataPlaneProcess(tmp_path, config)
    try:
        dp.start(wait_ready=False)
        wait_until(lambda: dp.get("/readyz")[0] == 200 or dp._died(), 60, interval=0.2, what="the data plane ready")
        assert dp.get("/readyz")[0] == 200, dp.log.read_text()[-3000:]
        ring = json.loads(dp.get("/debug/ring")[1])
        assert sorted(ring["endpoints"]) == sorted(s.endpoint for s in pods)

        produced = send_traces(dp.grpc_endpoint, "grpc", traces=150, spans_per_trace=4, seed=61)
        assert len(produced) == 600
        wait_all_arrived(pods, produced)
        assert_exactly_once(pods, produced)
        assert_each_trace_on_one_backend(pods, produced)
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()

    # ... and nothing more: the same token may not list pods or read secrets, here or in the tier-2 namespace.
    with envtest_controllers.api_client(identity.kubeconfig) as api:
        core = k8s.CoreV1Api(api)
        for call in (
            lambda: core.list_namespaced_pod(app),
            lambda: core.list_namespaced_pod(tier2),
            lambda: core.list_namespaced_secret(app),
            lambda: core.read_namespaced_secret("anything", tier2),
            lambda: k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice(app),
        ):
            with pytest.raises(ApiException) as denied:
                call()
            assert denied.value.status == 403, denied.value
        assert len(k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice(tier2).items) == 1



def test_a_tier2_namespace_outside_the_operators_roles_is_reported_not_crashed_on(
    setup: dict[str, Any], envtest_controllers: EnvTest
) -> None:
    cluster: Cluster = setup["cluster"]
    app = setup["app"]
    elsewhere = envtest_controllers.new_namespace("unbound")
    cluster.tier2_service(elsewhere)
    cluster.create(app, "other", {"replicas": 1, "resolver": {"k8s": {"service": "tier2", "namespace": elsewhere}},
                                  "otlp": {"tls": {"insecure": True}}})  # fmt: skip

    def degraded() -> dict[str, Any] | None:
        condition = cluster.condition(app, "other", "Degraded")
        return condition if condition.get("status") == "True" else None

    condition = wait_until(degraded, 60, interval=0.3, what="Degraded on the resource")
    assert condition["reason"] == "ApplyFailed", condition
    assert "403" in condition["message"] and "docs/operator.md" in condition["message"], condition["message"]
    warnings = [(r, m) for t, r, m in cluster.events(app, "other") if t == "Warning"]
    assert any(r == "ApplyFailed" and elsewhere in m for r, m in warnings), warnings
    # The first resource is unaffected and the operator still serves it.
    assert cluster.condition(app, "tier1", "Degraded")["status"] == "False"
    assert setup["operator"].proc is not None and setup["operator"].proc.poll() is None
