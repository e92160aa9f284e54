"""The operator's own RBAC as manifests, from the canonical rules in ``rbac_rules.yaml`` (beside this module).

:func:`rbac_manifests` gives a ServiceAccount and the roles and bindings for one
of two scopes::

    rbac_manifests(namespaces=["observability"])              # Role + RoleBinding per watched namespace
    rbac_manifests(namespaces=None)                          # ClusterRole + ClusterRoleBinding
    rbac_manifests(namespaces=["obs"], tier2_namespaces=["sampling"])   # + the tier-2 rules there

The rules themselves are data, never repeated in code: ``watched`` (every
namespace the operator watches), ``tier2`` (a namespace holding only a tier-2
Service) and ``peering`` (only with ``run --peering``). ``ringleader-operator
rbac`` prints the result; docs/operator.md explains each rule.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RBAC_FILE", "rbac_manifests", "rules"]

# Package data, so `ringleader-operator rbac` works from a wheel or the image as well as from the repository.
RBAC_FILE = Path(__file__).resolve().with_name("rbac_rules.yaml")
NAME = "ringleader-operator"
RBAC_API = "rbac.authorization.k8s.io/v1"


@cache
def _load() -> dict[str, list[dict[str, Any]]]:
    if not RBAC_FILE.is_file():
        raise FileNotFoundError(f"{RBAC_FILE} is missing (the operator's canonical RBAC rules)")
    data = yaml.safe_load(RBAC_FILE.read_text())
    return {key: list(value) for key, value in data.items()}


def rules(scope: str) -> list[dict[str, Any]]:
    """The rules of ``scope`` (``watched``, ``tier2`` or ``peering``), as a fresh copy."""
    return copy.deepcopy(_load()[scope])


def _subject(service_account: str, namespace: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "ringleader-operator", "app.kubernetes.io/component": "operator"}


def rbac_manifests(
    *,
    namespaces: Sequence[str] | None,
    tier2_namespaces: Sequence[str] = (),
    operator_namespace: str = "ringleader-system",
    service_account: str = NAME,
    peering: bool = False,
) -> list[dict[str, Any]]:
    """ServiceAccount + Role/RoleBinding per namespace in ``namespaces``, or (``None``) ClusterRole +
    ClusterRoleBinding; plus the ``tier2`` rules in each of ``tier2_namespaces`` not watched anyway."""
    subject = _subject(service_account, operator_namespace)
    watched = rules("watched") + (rules("peering") if peering else [])
    out: list[dict[str, Any]] = [{
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": service_account, "namespace": operator_namespace, "labels": _labels()},
    }]  # fmt: skip
    if namespaces is None:
        out.append({"apiVersion": RBAC_API, "kind": "ClusterRole",
                    "metadata": {"name": NAME, "labels": _labels()}, "rules": watched})  # fmt: skip
        out.append({
            "apiVersion": RBAC_API,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": _labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [subject],
        })
        return out
    scoped = [(ns, watched) for ns in dict.fromkeys(namespaces)]
    scoped += [(ns, rules("tier2")) for ns in dict.fromkeys(tier2_namespaces) if ns not in namespaces]
    for namespace, namespace_rules in scoped:
        name = NAME if namespace_rules is watched else f"{NAME}-tier2"
        out.append({"apiVersion": RBAC_API, "kind": "Role",
                    "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
                    "rules": namespace_rules})  # fmt: skip
        out.append({
            "apiVersion": RBAC_API,
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        })
    return out
