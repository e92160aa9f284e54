"""Ringleader's alerts and dashboard (charts/ringleader/files/), checked with the real tools and a real data plane.

- ``promtool check rules`` accepts the rule file, and ``promtool test rules`` (tests/monitoring/) passes with a
  firing case and a quiet case for every alert; a rule file with a broken threshold makes it fail.
- The dashboard has the views the operations guide promises, each on the selectable Prometheus data source.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.gotools import tool
from tests.slowbuild import untimed

REPO = Path(__file__).resolve().parent.parent
FILES = REPO / "charts" / "ringleader" / "files"
RULES = FILES / "ringleader.rules.yaml"
DASHBOARD = FILES / "dashboard.json"
RULE_TESTS = REPO / "tests" / "monitoring" / "ringleader.rules.test.yaml"


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
