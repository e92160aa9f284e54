"""The Helm chart charts/ringleader, with a real helm (v3.22, built from Go modules) and a real API server.

- ``helm lint --strict`` for every values file of the matrix in charts/ringleader/ci/;
- values.schema.json refuses unknown keys and wrong types, naming the path;
- every object ``helm template`` renders for each matrix entry is accepted by kube-apiserver (server-side
  apply with ``dryRun=All``), the example LoadBalancingExporter included (its CRD is installed first);
- the PrometheusRule appears only where ``monitoring.coreos.com/v1`` serves it, and carries the rule file
  that promtool checks (tests/test_monitoring.py);
- the chart's RBAC is exactly the operator's canonical rules, and its CRD is crds/'s plus ``keep``;
- ``helm install``, ``helm upgrade`` with a changed value and ``helm uninstall`` against a dedicated API
  server: the CRD and the users' resources outlive the release;
- ``deploy/install.yaml`` and the chart's copies are what ``make manifests`` generates now.

``helm test`` needs running pods: it belongs to the real-cluster lab (docs/install.md).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from e2e.envtest import EnvTest, ensure_binaries
from e2e.gotools import tool
from tests.crdutil import install_crd
from tests.operator_harness import OperatorProcess
from tests.slowbuild import untimed

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "ringleader"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.37.1"
PROM_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"


@pytest.fixture(scope="module")
def helm() -> Path:
    return untimed(lambda: tool("helm"))


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def template(helm: Path, *args: str, namespace: str = "obs") -> list[dict[str, Any]]:
    out = run_helm(helm, "template", "rl", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_chart_passes_helm_lint_strict(helm: Path, values: Path) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values), "--kube-version", KUBE_VERSION)
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--set", "replicas=2", "additional properties 'replicas' not allowed"),
        ("--set", "image.tag=1.0,image.registry=x", "at '/image': additional properties 'registry' not allowed"),
        ("--set", "rbac.clusterwide=true", "at '/rbac': additional properties 'clusterwide' not allowed"),
        ("--set-string", "rbac.clusterWide=yes", "at '/rbac/clusterWide': got string, want boolean"),
        ("--set-string", "operator.healthPort=80a", "at '/operator/healthPort': got string, want integer"),
        ("--set", "operator.healthPort=70000", "at '/operator/healthPort'"),
        ("--set", "image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("--set", "image.digest=latest", "at '/image/digest'"),
        ("--set", "rbac.watchNamespaces[0]=Not_A_Namespace", "at '/rbac/watchNamespaces/0'"),
        ("--set", "monitoring.dashboard.enable=true", "additional properties 'enable' not allowed"),
    ],
)
def test_values_schema_refuses_unknown_keys_and_wrong_types(helm: Path, flag: str, value: str, message: str) -> None:
    proc = run_helm(helm, "template", "rl", str(CHART), "--kube-version", KUBE_VERSION, flag, value, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def _ensure_namespaces(api: Any, docs: list[dict[str, Any]]) -> None:
    core = client.CoreV1Api(api)
    for ns in {d["metadata"].get("namespace") for d in docs} - {None}:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        except ApiException as exc:
            if exc.status != 409:
                raise


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_rendered_object_is_accepted_by_the_api_server(helm: Path, envtest: EnvTest, values: Path) -> None:
    namespace = envtest.new_namespace("chart")
    docs = template(helm, "-f", str(values), namespace=namespace)
    assert docs
    install_crd(envtest)  # the example LoadBalancingExporter needs its kind served
    with envtest.api_client() as api:
        _ensure_namespaces(api, docs)
        dyn = DynamicClient(api)
        accepted = []
        for doc in docs:
            resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            try:
                dyn.server_side_apply(
                    resource, body=doc, field_manager="ringleader-chart-test", force_conflicts=True, dry_run="All"
                )
            except Exception as exc:
                raise AssertionError(f"{values.name}: {doc['kind']} {doc['metadata']['name']} refused: {exc}") from exc
            accepted.append(doc["kind"])
    assert "Deployment" in accepted


def test_prometheus_rule_is_rendered_only_where_its_crd_is_served(helm: Path) -> None:
    values = ["-f", str(CHART / "ci" / "clusterwide-values.yaml")]
    assert by_kind(template(helm, *values), "PrometheusRule") == []
    [rule] = by_kind(template(helm, *values, "--api-versions", PROM_RULE_API), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "ringleader.rules.yaml").read_text())


def test_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard(helm: Path) -> None:
    docs = template(helm, "-f", str(CHART / "ci" / "clusterwide-values.yaml"))
    [cm] = by_kind(docs, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["ringleader-tier1.json"] == (CHART / "files" / "dashboard.json").read_text().rstrip("\n")
    assert by_kind(template(helm), "ConfigMap") == []


def test_rbac_is_the_operator_canonical_rules_in_the_chosen_scope(helm: Path) -> None:
    rules = yaml.safe_load((CHART / "files" / "operator-rbac.yaml").read_text())
    namespaced = template(helm, "-f", str(CHART / "ci" / "namespaced-values.yaml"))
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r["rules"] for r in by_kind(namespaced, "Role")}
    assert roles == {
        ("ringleader-ci-apps", "rl-ringleader"): rules["watched"],
        ("ringleader-ci-edge", "rl-ringleader"): rules["watched"],
        ("ringleader-ci-sampling", "rl-ringleader-tier2"): rules["tier2"],
    }
    assert by_kind(namespaced, "ClusterRole") == []
    [deployment] = by_kind(namespaced, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    watched = [a for a in args if a.startswith("--namespace")]
    assert watched == ["--namespace=ringleader-ci-apps", "--namespace=ringleader-ci-edge"]
    default = template(helm)
    assert [r["metadata"]["namespace"] for r in by_kind(default, "Role")] == ["obs"]
    clusterwide = template(helm, "--set", "rbac.clusterWide=true")
    [cluster_role] = by_kind(clusterwide, "ClusterRole")
    assert cluster_role["rules"] == rules["watched"]
    assert by_kind(clusterwide, "Role") == []
    [deployment] = by_kind(clusterwide, "Deployment")
    assert "--all-namespaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_operator_pod_is_non_root_with_a_read_only_root_filesystem(helm: Path) -> None:
    [deployment] = by_kind(template(helm), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"]


def test_crd_template_is_the_crds_directory_plus_keep(helm: Path) -> None:
    [crd] = by_kind(template(helm), "CustomResourceDefinition")
    [source] = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["spec"] == source["spec"]
    assert by_kind(template(helm, "--set", "crds.create=false"), "CustomResourceDefinition") == []


def test_generated_manifests_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "e2e.manifests", "--check"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr


# -- helm install / upgrade / uninstall on a dedicated API server ---------------------------------------------


@pytest.fixture(scope="module")
def own_apiserver() -> Iterator[EnvTest]:
    """Its own API server: the release owns the CRD, which must not clash with other tests' CRD."""
    with EnvTest(ensure_binaries()) as env:
        yield env


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def operator_args(apps: client.AppsV1Api, namespace: str) -> list[str]:
    deployment: Any = apps.read_namespaced_deployment("rl-ringleader", namespace)
    return list(deployment.spec.template.spec.containers[0].args)


def test_install_upgrade_uninstall_keeps_the_crd_and_users_resources(helm: Path, own_apiserver: EnvTest) -> None:
    env = own_apiserver
    ns = env.new_namespace("release")
    kube = ["--kubeconfig", str(env.admin_kubeconfig), "-n", ns]
    # The rule is asked for, but this API server has no prometheus-operator CRD: the install must still work,
    # and NOTES.txt says why no rule was installed.
    installed = run_helm(helm, "install", "rl", str(CHART), *kube, "--set", "monitoring.prometheusRule.enabled=true")
    assert f"helm test rl -n {ns}" in installed.stdout
    assert "does not serve monitoring.coreos.com/v1" in installed.stdout
    with env.api_client() as api:
        apps, ext = client.AppsV1Api(api), client.ApiextensionsV1Api(api)
        custom = client.CustomObjectsApi(api)
        crd_name = "loadbalancingexporters.ringleader.dev"

        def served() -> bool:
            try:
                custom.list_namespaced_custom_object("ringleader.dev", "v1alpha1", ns, "loadbalancingexporters")
                return True
            except ApiException:
                return False

        _wait(served, "the CRD installed by the release to be served")
        args = operator_args(apps, ns)
        assert "--resync-seconds=30" in args
        resolver = {"static": {"hostnames": ["10.9.0.1"]}}
        users: dict[str, Any] = {
            "apiVersion": "ringleader.dev/v1alpha1",
            "kind": "LoadBalancingExporter",
            "metadata": {"name": "users-tier1"},
            "spec": {"resolver": resolver},
        }
        custom.create_namespaced_custom_object("ringleader.dev", "v1alpha1", ns, "loadbalancingexporters", users)

        # An upgrade with a changed value reaches the Deployment; the example resource can now be added too.
        run_helm(helm, "upgrade", "rl", str(CHART), *kube, "--set", "operator.resyncSeconds=45",
                 "--set", "example.create=true")  # fmt: skip
        args = operator_args(apps, ns)
        assert "--resync-seconds=45" in args and "--resync-seconds=30" not in args
        custom.get_namespaced_custom_object("ringleader.dev", "v1alpha1", ns, "loadbalancingexporters", "tier1")
        history = run_helm(helm, "history", "rl", *kube, "-o", "yaml").stdout
        assert [h["revision"] for h in yaml.safe_load(history)] == [1, 2]

        run_helm(helm, "uninstall", "rl", *kube)
        with pytest.raises(ApiException) as gone:
            apps.read_namespaced_deployment("rl-ringleader", ns)
        assert gone.value.status == 404
        crd: Any = ext.read_custom_resource_definition(crd_name)
        assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
        kept: Any = custom.get_namespaced_custom_object(
            "ringleader.dev", "v1alpha1", ns, "loadbalancingexporters", "users-tier1"
        )
        assert kept["spec"]["resolver"] == resolver


# -- the kubectl path: crds/ + deploy/install.yaml + an example, applied for real --------------------------------


def _apply_all(dyn: DynamicClient, docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """Server-side apply every document as one field manager; their resourceVersions afterwards."""
    versions: dict[tuple[str, str, str], str] = {}
    for doc in docs:
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        meta = doc["metadata"]
        dyn.server_side_apply(resource, body=doc, field_manager="gitops-test")
        live = resource.get(name=meta["name"], namespace=meta.get("namespace"))
        versions[(doc["kind"], meta.get("namespace", ""), meta["name"])] = live.metadata.resourceVersion
    return versions


def test_every_file_under_crds_and_deploy_is_a_kubernetes_manifest() -> None:
    """`kubectl apply -f crds/ -f deploy/` reads every file there: a file that is not a manifest (say, a rules
    file other code reads) would make that documented command fail."""
    for directory in ("crds", "deploy"):
        files = sorted((REPO / directory).iterdir())
        assert files, directory
        for path in files:
            assert path.suffix in {".yaml", ".yml", ".json"}, path
            for doc in (d for d in yaml.safe_load_all(path.read_text()) if d):
                assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: not a manifest"


def test_kubectl_install_applies_and_a_second_apply_changes_nothing(envtest: EnvTest) -> None:
    """What `kubectl apply --server-side -f crds/ -f deploy/ -f examples/...` does, twice: the second apply must
    be a no-op (same resourceVersion everywhere), or GitOps tools would see endless drift."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    install = [d for p in sorted((REPO / "deploy").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    example = yaml.safe_load((REPO / "examples" / "loadbalancingexporter.yaml").read_text())
    assert {d["kind"] for d in install} >= {"Namespace", "ServiceAccount", "ClusterRole", "Deployment"}
    with envtest.api_client() as api:
        _ensure_namespaces(api, [example])
        install_crd(envtest)
        dyn = DynamicClient(api)
        first = _apply_all(dyn, [*crds, *install, example])
        second = _apply_all(dyn, [*crds, *install, example])
    assert first == second


def test_the_operator_reconciles_with_exactly_the_charts_rbac_and_args(
    helm: Path, own_apiserver: EnvTest, tmp_path: Path
) -> None:
    """The chart's namespaced install, with its own ServiceAccount and Role, is enough for the operator: run
    ``ringleader-operator`` with the Deployment's args as that ServiceAccount, and it makes a data plane."""
    env = own_apiserver
    install_crd(env)  # this release leaves the CRD to whoever installed it (crds.create=false)
    ns = env.new_namespace("operator")
    kube = ["--kubeconfig", str(env.admin_kubeconfig), "-n", ns]
    run_helm(helm, "install", "op", str(CHART), *kube, "--set", "crds.create=false")
    with env.api_client() as api:
        apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
        deployment: Any = apps.read_namespaced_deployment("op-ringleader", ns)
        args = list(deployment.spec.template.spec.containers[0].args)
        assert args[:2] == ["run", f"--namespace={ns}"]
        scope = [a for a in args if a.startswith("--namespace")]
        identity = env.service_account(ns, deployment.spec.template.spec.service_account_name, create=False)
        operator = OperatorProcess(tmp_path, identity, *scope).start()
        try:
            body = {
                "apiVersion": "ringleader.dev/v1alpha1",
                "kind": "LoadBalancingExporter",
                "metadata": {"name": "tier1"},
                "spec": {"resolver": {"static": {"hostnames": ["10.9.0.1:4317", "10.9.0.2:4317"]}}},
            }
            custom.create_namespaced_custom_object("ringleader.dev", "v1alpha1", ns, "loadbalancingexporters", body)

            def observed() -> bool:
                lbe: Any = custom.get_namespaced_custom_object(
                    "ringleader.dev", "v1alpha1", ns, "loadbalancingexporters", "tier1"
                )
                status = lbe.get("status") or {}
                return bool(status.get("observedGeneration") == lbe["metadata"]["generation"])

            _wait(observed, "the operator to observe the resource", timeout=120)
            made: Any = apps.read_namespaced_deployment("tier1-ringleader", ns)
            assert made.metadata.owner_references[0].kind == "LoadBalancingExporter"
            assert "forbidden" not in operator.tail(200_000).lower()

            # The `helm test` pod's check, run against this operator's liveness endpoint (address from the
            # service-link variable a pod would get, as in clusters without cluster DNS).
            [pod] = by_kind(template(helm, "--set", f"operator.healthPort={operator.port}", namespace=ns), "Pod")
            [container] = pod["spec"]["containers"]
            assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
            check = subprocess.run(
                [sys.executable, *container["command"][1:]],
                env={"RL_RINGLEADER_SERVICE_HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"},
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert check.returncode == 0, check.stdout + check.stderr
            assert f"http://127.0.0.1:{operator.port}/healthz 200" in check.stdout
        finally:
            operator.stop()


def _doc_commands(doc: Path, program: str) -> list[list[str]]:
    """Complete ``program`` command lines from a doc's sh blocks (backslash continuations joined)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].split("&&", 1)[0].strip()
            if line.startswith(f"{program} "):
                commands.append(shlex.split(line))
    return commands


def test_every_helm_install_in_the_docs_renders_with_its_values(helm: Path) -> None:
    """Each `helm install` the docs show passes the values schema and renders (as `helm template`)."""
    commands = [c for doc in (REPO / "README.md", REPO / "docs" / "install.md") for c in _doc_commands(doc, "helm")]
    installs = [c for c in commands if c[1] == "install"]
    assert len(installs) >= 3
    for command in installs:
        release, chart, *flags = command[2:]
        assert (release, chart) == ("ringleader", "charts/ringleader"), command
        docs = template(helm, *[f for f in flags if f != "--create-namespace"], namespace="ringleader-system")
        assert by_kind(docs, "Deployment"), command
