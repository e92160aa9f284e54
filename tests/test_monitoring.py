"""Ringleader's alerts and dashboard (charts/ringleader/files/), checked with the real tools and a real data plane.

- ``promtool check rules`` accepts the rule file, and ``promtool test rules`` (tests/monitoring/) passes with a
  firing case and a quiet case for every alert; a rule file with a broken threshold makes it fail.
- Every metric name the rules and the dashboard query is one a running data plane exposes on /metrics, so a
  renamed metric breaks this test instead of silently blanking a panel or an alert.
- The dashboard has the views the operations guide promises, each on the selectable Prometheus data source.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.gotools import tool
from tests.harness import DataPlaneProcess, static_config
from tests.slowbuild import untimed

REPO = Path(__file__).resolve().parent.parent
FILES = REPO / "charts" / "ringleader" / "files"
RULES = FILES / "ringleader.rules.yaml"
DASHBOARD = FILES / "dashboard.json"
RULE_TESTS = REPO / "tests" / "monitoring" / "ringleader.rules.test.yaml"
METRIC = re.compile(r"\b((?:ringleader|otelcol)_[a-z0-9_]+)\b")


@pytest.fixture(scope="module")
def promtool() -> Path:
    return untimed(lambda: tool("promtool"))


def promtool_run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alert_names() -> set[str]:
    return {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_rule_file_passes_promtool_check(promtool: Path) -> None:
    proc = promtool_run(promtool, "check", "rules", str(RULES), cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = sum(len(g["rules"]) for g in rule_groups())
    assert f"SUCCESS: {rules} rules found" in proc.stdout


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(promtool: Path) -> None:
    proc = promtool_run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alert_names() == firing == quiet
    assert len(alert_names()) >= 6


def test_promtool_unit_tests_fail_when_an_alert_threshold_is_wrong(promtool: Path, tmp_path: Path) -> None:
    broken = RULES.read_text().replace("ringleader:backend_skew:ratio5m > 2", "ringleader:backend_skew:ratio5m > 5")
    assert broken != RULES.read_text()
    (tmp_path / "rules.yaml").write_text(broken)
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = ["rules.yaml"]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = promtool_run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert proc.returncode != 0
    assert "RingleaderBackendSkew" in proc.stdout + proc.stderr


def exposed_metric_names(body: str) -> set[str]:
    """Sample names a scrape can carry: every declared family, with a histogram's series suffixes."""
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_rules_and_dashboard_query_only_metrics_the_data_plane_exposes(tmp_path: Path) -> None:
    # Two static backends (nothing listens; only the metric families matter) with the default per-backend queues.
    dataplane = DataPlaneProcess(tmp_path, static_config(["127.0.0.1:9", "127.0.0.2:9"])).start()
    try:
        status, body = dataplane.get("/metrics")
    finally:
        dataplane.stop()
    assert status == 200
    exposed = exposed_metric_names(body.decode())
    assert "otelcol_loadbalancer_num_backends" in exposed
    queried: dict[str, set[str]] = {}
    for source, exprs in (
        ("rules", [r["expr"] for g in rule_groups() for r in g["rules"]]),
        ("dashboard", dashboard_exprs()),
    ):
        for expr in exprs:
            for name in METRIC.findall(expr):
                queried.setdefault(name, set()).add(source)
    missing = {name: sorted(sources) for name, sources in queried.items() if name not in exposed}
    assert not missing, f"queried but not exposed by the data plane: {missing}"


def test_dashboard_has_the_promised_views_on_the_selectable_data_source() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {
        "Spans in per tier-1 pod",
        "Spans out per tier-1 pod",
        "Per-backend share of spans vs ideal",
        "Refusals by reason",
        "Drops by reason",
        "Queue fill per tier-1 pod",
        "Export latency",
        "Backend-set updates",
        "Backends per tier-1 pod",
    } <= titles
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in panels)
    assert all(t["expr"] for p in panels for t in p["targets"])
    assert dash["uid"] == "ringleader-tier1"
