"""The operator against a real API server with kube-controller-manager (no mock API, no kubelet).

One operator process runs for the module, cluster-wide, as the ServiceAccount
``ringleader-operator`` holding exactly the ClusterRole of operator/ringleader_operator/rbac_rules.yaml.
Each test works in fresh namespaces. Deployments really make ReplicaSets and
Pods (which stay Pending: nothing runs them) and the garbage collector really
deletes owned objects.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from dataplane.config import parse_config
from e2e.envtest import EnvTest
from tests.harness import DataPlaneProcess, free_port, static_config, wait_until
from tests.operator_harness import GROUP, KIND, Cluster, OperatorProcess, apply_manifest, install_operator_rbac

HASH = "ringleader.dev/config-hash"


@pytest.fixture(scope="module")
def cluster(envtest_controllers: EnvTest) -> Iterator[Cluster]:
    from tests.crdutil import install_crd

    install_crd(envtest_controllers)
    view = Cluster(envtest_controllers)
    yield view
    view.close()


@pytest.fixture(scope="module")
def operator(
    envtest_controllers: EnvTest, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    system = envtest_controllers.new_namespace("ringleader-system")
    identity = install_operator_rbac(envtest_controllers, system, namespaces=None)
    proc = OperatorProcess(tmp_path_factory.mktemp("operator"), identity).start()
    yield proc
    proc.stop()


def k8s_spec(service: str = "tier2", namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    resolver: dict[str, Any] = {"service": service}
    if namespace:
        resolver["namespace"] = namespace
    return {"replicas": 2, "resolver": {"k8s": resolver}, "otlp": {"tls": {"insecure": True}}, **extra}


def owned_by(obj: Any, uid: str) -> bool:
    refs = obj.metadata.owner_references or []
    return any(r.uid == uid and r.controller and r.kind == KIND for r in refs)


def converged(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    """Wait until the operator reported on the current generation; return the resource."""

    def done() -> dict[str, Any] | None:
        body = cluster.get(ns, name)
        status = body.get("status") or {}
        if status.get("observedGeneration") == body["metadata"]["generation"] and status.get("configHash"):
            return body
        return None

    return dict(wait_until(done, 60, interval=0.2, what=f"status of {ns}/{name} for its generation"))


def settled(cluster: Cluster, ns: str, name: str) -> None:
    """Wait until the status says all that will happen without a kubelet has happened: both pods exist
    with the current template (none ready), and the rollout is reported."""

    def done() -> bool:
        status = cluster.get(ns, name).get("status") or {}
        conditions = {c["type"]: c.get("reason") for c in status.get("conditions") or ()}
        return status.get("replicas") == status.get("updatedReplicas") == 2 and conditions == {
            "Ready": "NoReadyReplicas", "Progressing": "RollingOut", "Degraded": "AsExpected"}

    wait_until(done, 60, interval=0.2, what="the rollout of 2 pending pods to be reported")


def test_a_new_resource_gets_every_object_with_its_content_and_owner_and_reports_progressing(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    uid = cluster.create(ns, "tier1", k8s_spec())["metadata"]["uid"]
    body = converged(cluster, ns, "tier1")
    status = body["status"]

    name = "tier1-ringleader"
    cm = cluster.core.read_namespaced_config_map(status["configMapName"], ns)
    assert cm.metadata.name == f"tier1-ringleader-{status['configHash']}"
    config = parse_config(yaml.safe_load(cm.data["config.yaml"]))  # the data plane accepts it as it is
    assert config.exporter.resolver.service == f"tier2.{ns}"  # type: ignore[union-attr]
    deployment = cluster.apps.read_namespaced_deployment(name, ns)
    assert deployment.spec.template.metadata.annotations[HASH] == status["configHash"]
    assert deployment.spec.replicas == 2
    assert {v.config_map.name for v in deployment.spec.template.spec.volumes if v.config_map} == {cm.metadata.name}
    container = deployment.spec.template.spec.containers[0]
    assert container.security_context.read_only_root_filesystem and container.security_context.run_as_non_root
    sa = cluster.core.read_namespaced_service_account(name, ns)
    service = cluster.core.read_namespaced_service(name, ns)
    assert {p.name for p in service.spec.ports} == {"otlp-grpc", "otlp-http", "metrics"}
    role = cluster.rbac.read_namespaced_role(name, ns)
    assert [(r.api_groups, r.resources, sorted(r.verbs)) for r in role.rules] == [
        (["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"])
    ]
    binding = cluster.rbac.read_namespaced_role_binding(name, ns)
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", name, ns)]
    pdb = cluster.policy.read_namespaced_pod_disruption_budget(name, ns)
    for obj in (cm, deployment, sa, service, role, binding, pdb):
        assert owned_by(obj, uid), f"{obj.kind or type(obj).__name__} {obj.metadata.name} is not owned"
        assert obj.metadata.labels["app.kubernetes.io/managed-by"] == "ringleader-operator"

    # The controllers act: pods exist but never become ready (no kubelet), so the rollout is in progress.
    wait_until(lambda: len(cluster.core.list_namespaced_pod(ns).items) == 2, 60, interval=0.2, what="2 pods")
    progressing = wait_until(
        lambda: (c := cluster.condition(ns, "tier1", "Progressing")).get("reason") == "RollingOut" and c,
        60, interval=0.2, what="Progressing/RollingOut",
    )  # fmt: skip
    assert progressing["status"] == "True"
    body = cluster.get(ns, "tier1")
    generation = body["metadata"]["generation"]
    assert body["status"]["observedGeneration"] == generation
    assert all(c["observedGeneration"] == generation for c in body["status"]["conditions"])
    assert cluster.condition(ns, "tier1", "Ready")["status"] == "False"
    assert cluster.condition(ns, "tier1", "Degraded")["status"] == "False"
    assert body["status"]["selector"] == (
        "app.kubernetes.io/name=ringleader,app.kubernetes.io/instance=tier1,app.kubernetes.io/component=dataplane"
    )
    assert body["status"]["tier2Service"] == f"{ns}/tier2" and body["status"]["backends"] == 0
    reasons = {reason for _, reason, _ in cluster.events(ns, "tier1")}
    assert "Created" in reasons, cluster.events(ns, "tier1")


def test_a_spec_update_makes_a_new_configmap_rolls_the_pod_template_and_keeps_the_old_configmap(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    cluster.create(ns, "tier1", k8s_spec())
    first = converged(cluster, ns, "tier1")["status"]

    cluster.patch_spec(ns, "tier1", {"otlp": {"timeout": "9s"}})
    second = converged(cluster, ns, "tier1")["status"]

    assert second["configHash"] != first["configHash"]
    assert second["observedGeneration"] == 2
    new_cm = cluster.core.read_namespaced_config_map(second["configMapName"], ns)
    assert "timeout: 9s" in new_cm.data["config.yaml"]
    assert cluster.exists(cluster.core.read_namespaced_config_map, first["configMapName"], ns), "old ConfigMap kept"
    wait_until(
        lambda: cluster.apps.read_namespaced_deployment("tier1-ringleader", ns).spec.template.metadata.annotations[
            HASH
        ] == second["configHash"],
        30, interval=0.2, what="the pod template to carry the new hash",
    )  # fmt: skip
    # The Deployment controller rolls: a second ReplicaSet for the new template.
    wait_until(lambda: len(cluster.apps.list_namespaced_replica_set(ns).items) == 2, 60, interval=0.2,
               what="a new ReplicaSet")  # fmt: skip


def test_a_spec_the_crd_refuses_is_refused_by_the_api_server_with_the_reason(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    spec = k8s_spec()
    spec["resolver"]["dns"] = {"hostname": "tier2.example.svc"}
    with pytest.raises(ApiException) as refused:
        cluster.create(ns, "tier1", spec)
    assert refused.value.status == 422
    assert "resolver" in str(refused.value.body) and "exactly one" in str(refused.value.body).lower()


def test_a_spec_only_the_data_plane_refuses_changes_nothing_and_degrades_with_the_key_path(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    cluster.create(ns, "tier1", k8s_spec())
    good = converged(cluster, ns, "tier1")["status"]
    settled(cluster, ns, "tier1")  # the Deployment controller has stopped writing its status
    deployment = cluster.apps.read_namespaced_deployment("tier1-ringleader", ns)
    before = {
        "deployment": deployment.metadata.resource_version,
        "configmaps": sorted(c.metadata.name for c in cluster.core.list_namespaced_config_map(
            ns, label_selector="app.kubernetes.io/instance=tier1").items),
    }  # fmt: skip

    cluster.patch_spec(ns, "tier1", {"extraConfig": {"no_such_key": 1}})
    body = converged(cluster, ns, "tier1")
    degraded = cluster.condition(ns, "tier1", "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec", degraded
    assert "spec.extraConfig.no_such_key" in degraded["message"], degraded["message"]
    assert degraded["observedGeneration"] == body["metadata"]["generation"] == 2
    assert cluster.condition(ns, "tier1", "Ready")["reason"] == "InvalidSpec"
    assert body["status"]["configHash"] == good["configHash"]
    after = {
        "deployment": cluster.apps.read_namespaced_deployment("tier1-ringleader", ns).metadata.resource_version,
        "configmaps": sorted(c.metadata.name for c in cluster.core.list_namespaced_config_map(
            ns, label_selector="app.kubernetes.io/instance=tier1").items),
    }  # fmt: skip
    assert after == before
    assert any(t == "Warning" and r == "InvalidSpec" for t, r, _ in cluster.events(ns, "tier1"))


def test_a_missing_tier2_service_is_a_degraded_reason_and_clears_when_it_appears(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.create(ns, "tier1", k8s_spec())
    converged(cluster, ns, "tier1")
    degraded = cluster.condition(ns, "tier1", "Degraded")
    assert degraded["reason"] == "Tier2ServiceNotFound", degraded
    assert f"{ns}/tier2" in degraded["message"]
    assert cluster.exists(cluster.apps.read_namespaced_deployment, "tier1-ringleader", ns)

    cluster.tier2_service(ns)
    wait_until(lambda: cluster.condition(ns, "tier1", "Degraded").get("status") == "False", 60, interval=0.3,
               what="Degraded to clear")  # fmt: skip


def test_a_deleted_or_hand_scaled_deployment_is_put_back(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    cluster.create(ns, "tier1", k8s_spec())
    converged(cluster, ns, "tier1")
    name = "tier1-ringleader"
    old_uid = cluster.apps.read_namespaced_deployment(name, ns).metadata.uid

    cluster.apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": 5}})
    wait_until(lambda: cluster.apps.read_namespaced_deployment(name, ns).spec.replicas == 2, 60, interval=0.2,
               what="replicas restored to 2")  # fmt: skip

    cluster.apps.delete_namespaced_deployment(name, ns)

    def recreated() -> bool:
        try:
            return bool(cluster.apps.read_namespaced_deployment(name, ns).metadata.uid != old_uid)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_until(recreated, 60, interval=0.2, what="the Deployment to be recreated")


def test_deleting_the_resource_removes_everything_it_made_including_rbac_in_the_tier2_namespace(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    tier2_ns = envtest_controllers.new_namespace("tier2")
    cluster.tier2_service(tier2_ns)
    cluster.create(ns, "tier1", k8s_spec(namespace=tier2_ns))
    converged(cluster, ns, "tier1")
    rbac_name = f"{ns}.tier1-ringleader"
    role = cluster.rbac.read_namespaced_role(rbac_name, tier2_ns)
    assert role.metadata.labels[f"{GROUP}/owner-name"] == "tier1"
    assert cluster.exists(cluster.rbac.read_namespaced_role_binding, rbac_name, tier2_ns)
    assert not cluster.exists(cluster.rbac.read_namespaced_role, "tier1-ringleader", ns)
    wait_until(lambda: len(cluster.core.list_namespaced_pod(ns).items) == 2, 60, interval=0.2, what="2 pods")

    cluster.delete(ns, "tier1")

    leftovers: list[Any] = []

    def everything_gone() -> bool:
        labelled = "app.kubernetes.io/instance=tier1"
        leftovers[:] = [
            *cluster.core.list_namespaced_config_map(ns, label_selector=labelled).items,
            *cluster.core.list_namespaced_service_account(ns, label_selector=labelled).items,
            *cluster.core.list_namespaced_service(ns, label_selector=labelled).items,
            *cluster.apps.list_namespaced_deployment(ns, label_selector=labelled).items,
            *cluster.apps.list_namespaced_replica_set(ns).items,
            *cluster.core.list_namespaced_pod(ns).items,
            *cluster.policy.list_namespaced_pod_disruption_budget(ns, label_selector=labelled).items,
            *cluster.rbac.list_namespaced_role(tier2_ns, label_selector=labelled).items,
            *cluster.rbac.list_namespaced_role_binding(tier2_ns, label_selector=labelled).items,
        ]
        if cluster.exists(cluster.get, ns, "tier1"):
            leftovers.append("the resource")
        return not leftovers

    # The garbage collector follows a CRD created during the run within ~30 s of discovery resync.
    try:
        wait_until(everything_gone, 120, interval=0.5, what="every object of the resource to be deleted")
    except AssertionError:
        names = [x if isinstance(x, str) else f"{type(x).__name__}/{x.metadata.name}" for x in leftovers]
        raise AssertionError(f"left behind: {names}\n{operator.tail()}") from None


def test_applying_the_same_resource_again_after_convergence_changes_nothing(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    manifest = {"apiVersion": f"{GROUP}/v1alpha1", "kind": KIND, "metadata": {"name": "tier1", "namespace": ns},
                "spec": k8s_spec()}  # fmt: skip
    apply_manifest(cluster.api, manifest, manager="gitops")
    converged(cluster, ns, "tier1")
    settled(cluster, ns, "tier1")
    before = cluster.get(ns, "tier1")

    first = apply_manifest(cluster.api, manifest, manager="gitops")
    second = apply_manifest(cluster.api, manifest, manager="gitops")

    assert first["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert second["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert first["metadata"]["generation"] == 1
    # The operator never owns a field of spec: GitOps sees no diff.
    for entry in first["metadata"]["managedFields"]:
        if entry["manager"] != "gitops":
            assert "f:spec" not in entry.get("fieldsV1", {}), entry


def test_a_restarted_operator_changes_nothing_in_a_converged_cluster(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    cluster.create(ns, "tier1", k8s_spec())
    converged(cluster, ns, "tier1")
    settled(cluster, ns, "tier1")

    def versions() -> dict[str, str]:
        objs = [
            *cluster.core.list_namespaced_config_map(ns).items,
            *cluster.core.list_namespaced_service_account(ns).items,
            *cluster.core.list_namespaced_service(ns).items,
            *cluster.apps.list_namespaced_deployment(ns).items,
            *cluster.rbac.list_namespaced_role(ns).items,
            *cluster.rbac.list_namespaced_role_binding(ns).items,
            *cluster.policy.list_namespaced_pod_disruption_budget(ns).items,
        ]
        found = {f"{type(o).__name__}/{o.metadata.name}": o.metadata.resource_version for o in objs}
        found["resource"] = cluster.get(ns, "tier1")["metadata"]["resourceVersion"]
        return found

    before, resource_before = versions(), cluster.get(ns, "tier1")
    operator.stop()
    operator.start()
    # Resuming reconciles every resource once; wait for this one's resume handler to have finished.
    wait_until(lambda: f"[{ns}/tier1] Handler 'reconcile' succeeded" in operator.tail(200_000), 60,
               interval=0.3, what="the resumed operator to handle the resource")  # fmt: skip
    after = versions()
    if after["resource"] != before["resource"]:  # say what changed
        resource_after = cluster.get(ns, "tier1")
        for body in (resource_before, resource_after):
            body["metadata"].pop("managedFields", None)
            body["metadata"].pop("resourceVersion", None)
        assert resource_after == resource_before
    assert after == before


def test_a_restarted_operator_finishes_what_changed_while_it_was_down(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    cluster.create(ns, "tier1", k8s_spec())
    first = converged(cluster, ns, "tier1")["status"]

    operator.stop()
    cluster.patch_spec(ns, "tier1", {"replicas": 3, "otlp": {"compression": "none"}})
    cluster.core.delete_namespaced_service("tier1-ringleader", ns)
    operator.start()

    second = converged(cluster, ns, "tier1")["status"]
    assert second["configHash"] != first["configHash"]
    deployment = cluster.apps.read_namespaced_deployment("tier1-ringleader", ns)
    assert deployment.spec.replicas == 3
    assert deployment.spec.template.metadata.annotations[HASH] == second["configHash"]
    wait_until(lambda: cluster.exists(cluster.core.read_namespaced_service, "tier1-ringleader", ns), 60,
               interval=0.3, what="the Service deleted while the operator was down to be re-created")  # fmt: skip


class RingServer:
    """A real data plane whose /debug/ring answers at ``address:port``, standing in for a pod."""

    def __init__(self, workdir: Any, name: str, address: str, port: int, backends: list[str]) -> None:
        cfg = static_config(backends)
        self.dp = DataPlaneProcess(workdir, cfg, name=name)
        config = yaml.safe_load(self.dp.config_path.read_text())
        config["telemetry"]["endpoint"] = f"{address}:{port}"
        self.dp.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.url = f"http://{address}:{port}/debug/ring"

    def start(self) -> RingServer:
        self.dp.start(wait_ready=False)

        def ring_built() -> bool:  # what a pod's readiness (/readyz: backends > 0) would wait for
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    return bool(json.loads(resp.read()).get("endpoints"))
            except OSError:
                return bool(self.dp._died())

        wait_until(ring_built, 30, interval=0.2, what=f"a ring at {self.url}")
        assert not self.dp._died(), self.dp.log.read_text()[-2000:]
        return self

    def stop(self) -> None:
        self.dp.stop()


def test_replicas_that_disagree_about_the_backend_set_are_reported_until_they_agree(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest, tmp_path: Any
) -> None:
    # Two "pods": real data planes on 127.0.0.2 and 127.0.0.3 (the same metrics port, as pods have),
    # whose static resolvers hold different backend sets; nothing is sent to those backends.
    port = free_port()
    both, one = ["10.9.9.1:4317", "10.9.9.2:4317"], ["10.9.9.1:4317"]
    ns = envtest_controllers.new_namespace("op")
    spec = {"replicas": 2, "resolver": {"static": {"hostnames": both}}, "otlp": {"tls": {"insecure": True}},
            "ports": {"metrics": port}}  # fmt: skip
    cluster.create(ns, "tier1", spec)
    converged(cluster, ns, "tier1")
    wait_until(lambda: len(cluster.core.list_namespaced_pod(ns).items) == 2, 60, interval=0.2, what="2 pods")
    servers = [RingServer(tmp_path, "pod-a", "127.0.0.2", port, both).start(),
               RingServer(tmp_path, "pod-b", "127.0.0.3", port, one).start()]  # fmt: skip
    try:
        pods = sorted(p.metadata.name for p in cluster.core.list_namespaced_pod(ns).items)
        for name, address in zip(pods, ("127.0.0.2", "127.0.0.3"), strict=True):
            cluster.core.patch_namespaced_pod_status(name, ns, {"status": {
                "phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
                "conditions": [{"type": "Ready", "status": "True"}]}})  # fmt: skip

        def ring() -> dict[str, Any]:
            return dict((cluster.get(ns, "tier1").get("status") or {}).get("ring") or {})

        wait_until(lambda: ring().get("consistent") is False, 60, interval=0.3, what="the disagreement reported")
        assert ring()["replicasReporting"] == 2
        assert sorted((s["backends"], s["pods"]) for s in ring()["backendSets"]) == [(1, [pods[1]]), (2, [pods[0]])]
        degraded = cluster.condition(ns, "tier1", "Degraded")
        assert degraded["reason"] == "BackendSetDisagreement", degraded
        wait_until(lambda: cluster.condition(ns, "tier1", "Ready").get("status") == "True", 60, interval=0.3,
                   what="Ready: both replicas are ready")  # fmt: skip

        # The lagging replica catches up (here: restarted with the full set): the report clears.
        servers[1].stop()
        servers[1] = RingServer(tmp_path, "pod-b2", "127.0.0.3", port, both).start()
        wait_until(lambda: ring().get("consistent") is True, 60, interval=0.3, what="agreement reported")
        wait_until(lambda: cluster.condition(ns, "tier1", "Degraded").get("status") == "False", 60, interval=0.3,
                   what="Degraded to clear")  # fmt: skip
        assert any(r == "BackendSetDisagreement" for _, r, _ in cluster.events(ns, "tier1"))
    finally:
        for server in servers:
            server.stop()


def test_the_scale_subresource_and_optional_objects_follow_the_spec(
    cluster: Cluster, operator: OperatorProcess, envtest_controllers: EnvTest
) -> None:
    ns = envtest_controllers.new_namespace("op")
    cluster.tier2_service(ns)
    uid = cluster.create(ns, "tier1", k8s_spec(autoscaling={"minReplicas": 2, "maxReplicas": 6}))["metadata"]["uid"]
    converged(cluster, ns, "tier1")
    name = "tier1-ringleader"
    hpa: Any = k8s.AutoscalingV2Api(cluster.api).read_namespaced_horizontal_pod_autoscaler(name, ns)
    assert (hpa.spec.scale_target_ref.kind, hpa.spec.scale_target_ref.name) == (KIND, "tier1")
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 6) and owned_by(hpa, uid)

    # `kubectl scale lbe tier1 --replicas 4` (what an HPA does too): the scale subresource.
    cluster.custom.patch_namespaced_custom_object_scale(GROUP, "v1alpha1", ns, "loadbalancingexporters", "tier1",
                                                        {"spec": {"replicas": 4}})  # fmt: skip
    wait_until(lambda: cluster.apps.read_namespaced_deployment(name, ns).spec.replicas == 4, 60, interval=0.2,
               what="the Deployment to follow the scale subresource")  # fmt: skip
    scale = wait_until(
        lambda: (s := cluster.custom.get_namespaced_custom_object_scale(
            GROUP, "v1alpha1", ns, "loadbalancingexporters", "tier1")) and s["status"].get("replicas") == 4 and s,
        60, interval=0.3, what="the scale subresource to report 4 replicas",
    )  # fmt: skip
    assert scale["status"]["selector"].startswith("app.kubernetes.io/name=ringleader")

    # Optional objects the spec no longer wants are deleted.
    cluster.custom.patch_namespaced_custom_object(
        GROUP, "v1alpha1", ns, "loadbalancingexporters", "tier1",
        {"spec": {"autoscaling": None, "podDisruptionBudget": {"enabled": False}}},
    )  # fmt: skip
    autoscaling: Any = k8s.AutoscalingV2Api(cluster.api)
    wait_until(
        lambda: not cluster.exists(autoscaling.read_namespaced_horizontal_pod_autoscaler, name, ns)
        and not cluster.exists(cluster.policy.read_namespaced_pod_disruption_budget, name, ns),
        60, interval=0.3, what="the HPA and the PDB to be deleted",
    )  # fmt: skip
    assert any(r == "Deleted" and "HorizontalPodAutoscaler" in m for _, r, m in cluster.events(ns, "tier1"))
