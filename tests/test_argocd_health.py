"""The Argo CD health check for LoadBalancingExporter, run in gopher-lua (Argo CD's Lua engine).

The Go harness in argocd/luatest loads argocd/resource_customizations/**/health.lua and its
health_test.yaml the way Argo CD's own tests do; this test runs it and checks that every case in
health_test.yaml was really executed (a harness that found nothing must not pass).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from e2e.envtest import EnvTest
from e2e.gotools import go_test
from tests.crdutil import GROUP, PLURAL, VERSION, install_crd
from tests.slowbuild import untimed

REPO = Path(__file__).resolve().parent.parent
CHECK_DIR = REPO / "argocd" / "resource_customizations" / "ringleader.dev" / "LoadBalancingExporter"


def test_health_check_gives_the_expected_status_for_every_testdata_case() -> None:
    proc = untimed(lambda: go_test(REPO / "argocd" / "luatest"))  # the first run downloads gopher-lua
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]
    passed = set(re.findall(r"--- PASS: TestHealthScripts/ringleader.dev/LoadBalancingExporter/(\S+)", proc.stdout))
    assert passed == {c["inputPath"] for c in cases}
    assert {c["healthStatus"]["status"] for c in cases} >= {"Healthy", "Progressing", "Degraded"}
    assert {"testdata/no_status.yaml", "testdata/stale_observed_generation.yaml"} <= passed


def test_gitops_doc_installs_exactly_this_health_check() -> None:
    doc = (REPO / "docs" / "gitops.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc, re.S)]
    [argocd_cm] = [b for b in blocks if b.get("kind") == "ConfigMap"]
    script = argocd_cm["data"]["resource.customizations.health.ringleader.dev_LoadBalancingExporter"]
    assert script == (CHECK_DIR / "health.lua").read_text()
    [application] = [b for b in blocks if b.get("kind") == "Application"]
    options = set(application["spec"]["syncPolicy"]["syncOptions"])
    assert {"ServerSideApply=true", "RespectIgnoreDifferences=true"} <= options
    [ignored] = application["spec"]["ignoreDifferences"]
    assert (ignored["group"], ignored["kind"], ignored["jsonPointers"]) == (
        "ringleader.dev",
        "LoadBalancingExporter",
        ["/spec/replicas"],
    )
    assert application["spec"]["source"]["path"] == "charts/ringleader"


def test_every_testdata_status_is_one_the_crd_stores(envtest: EnvTest) -> None:
    """The health check's inputs must be statuses the operator can really write: the API server stores each
    testdata object's spec and status (through the status subresource) without pruning anything."""
    install_crd(envtest)
    namespace = envtest.new_namespace("argocd-health")
    with envtest.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for path in sorted((CHECK_DIR / "testdata").glob("*.yaml")):
            obj = yaml.safe_load(path.read_text())
            name = path.stem.replace("_", "-")
            body = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {"name": name},
                    "spec": obj["spec"]}  # fmt: skip
            created: Any = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            if "status" not in obj:
                continue
            created["status"] = obj["status"]
            stored: Any = custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, created
            )
            assert stored["status"] == obj["status"], path.name
