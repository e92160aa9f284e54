"""The Argo CD health check for LoadBalancingExporter, run in gopher-lua (Argo CD's Lua engine).

The Go harness in argocd/luatest loads argocd/resource_customizations/**/health.lua and its
health_test.yaml the way Argo CD's own tests do; this test runs it and checks that every case in
health_test.yaml was really executed (a harness that found nothing must not pass).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from e2e.gotools import go_test

REPO = Path(__file__).resolve().parent.parent
CHECK_DIR = REPO / "argocd" / "resource_customizations" / "ringleader.dev" / "LoadBalancingExporter"


def test_health_check_gives_the_expected_status_for_every_testdata_case() -> None:
    proc = go_test(REPO / "argocd" / "luatest")
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
