"""rbac.py / `ringleader-operator rbac`: the operator's RBAC comes from ringleader_operator/rbac_rules.yaml only."""

from __future__ import annotations

from typing import Any

import yaml

from ringleader_operator.__main__ import main
from ringleader_operator.rbac import RBAC_FILE, rbac_manifests, rules


def kinds(manifests: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in manifests]


def test_namespaced_variant_binds_the_watched_rules_per_namespace_and_the_tier2_rules_elsewhere() -> None:
    out = rbac_manifests(namespaces=["a", "b"], tier2_namespaces=["b", "t"], operator_namespace="sys")
    assert kinds(out) == [
        ("ServiceAccount", "sys", "ringleader-operator"),
        ("Role", "a", "ringleader-operator"), ("RoleBinding", "a", "ringleader-operator"),
        ("Role", "b", "ringleader-operator"), ("RoleBinding", "b", "ringleader-operator"),
        ("Role", "t", "ringleader-operator-tier2"), ("RoleBinding", "t", "ringleader-operator-tier2"),
    ]  # fmt: skip
    file = yaml.safe_load(RBAC_FILE.read_text())
    assert out[1]["rules"] == file["watched"] and out[5]["rules"] == file["tier2"]
    assert all(s == [{"kind": "ServiceAccount", "name": "ringleader-operator", "namespace": "sys"}]
               for s in (m.get("subjects") for m in out if m["kind"] == "RoleBinding"))  # fmt: skip


def test_cluster_wide_variant_is_one_clusterrole_and_peering_rules_only_when_asked() -> None:
    out = rbac_manifests(namespaces=None)
    assert [m["kind"] for m in out] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert out[1]["rules"] == rules("watched")
    with_peering = rbac_manifests(namespaces=None, peering=True)[1]["rules"]
    assert with_peering == rules("watched") + rules("peering")


def test_no_rule_reaches_secrets_or_grants_wildcards_or_escalation() -> None:
    for scope in ("watched", "tier2", "peering"):
        for rule in rules(scope):
            assert "secrets" not in rule["resources"] and "*" not in rule["resources"] + rule["verbs"], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_the_rbac_command_prints_the_manifests_as_yaml(capsys: Any) -> None:
    assert main(["rbac", "--namespace", "obs", "--tier2-namespace", "sampling"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == rbac_manifests(namespaces=["obs"], tier2_namespaces=["sampling"])
