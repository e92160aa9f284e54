"""Generate the plain-kubectl install manifests from the Helm chart, and keep the chart's copies in step.

``python -m e2e.manifests`` (``make manifests``) does three things:

1. copies ``crds/*.yaml`` (the CRD's source of truth) to ``charts/ringleader/files/crds/``;
2. copies ``operator/ringleader_operator/rbac_rules.yaml`` (the operator's canonical RBAC rules) to
   ``charts/ringleader/files/operator-rbac.yaml``;
3. renders the chart with helm into ``deploy/install.yaml``: namespace ``ringleader-system``, the
   operator watching every namespace, no CRD (``kubectl apply --server-side -f crds/`` installs it) and
   no ``helm test`` pod.

``--check`` changes nothing and exits 1, naming each stale file, when any output differs: the test
``tests/test_chart.py`` runs it, so a chart change without ``make manifests`` fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from e2e.gotools import tool

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "ringleader"
INSTALL = REPO / "deploy" / "install.yaml"
RBAC_RULES = REPO / "operator" / "ringleader_operator" / "rbac_rules.yaml"
NAMESPACE = "ringleader-system"
KUBE_VERSION = "1.37.1"

HEADER = f"""\
# Ringleader operator for `kubectl apply`, GENERATED from charts/ringleader by `make manifests`
# (do not edit; tests/test_chart.py fails when it is stale). Install:
#   kubectl apply --server-side -f crds/
#   kubectl apply --server-side -f deploy/install.yaml
# It runs the operator in namespace {NAMESPACE}, watching every namespace (ClusterRole). For a
# namespaced install, use the chart (rbac.clusterWide=false, rbac.watchNamespaces) or
# `ringleader-operator rbac --namespace NS`.
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/name: ringleader
    pod-security.kubernetes.io/enforce: restricted
"""


def render_install(helm: Path) -> str:
    """The chart rendered for kubectl users (see the module docstring)."""
    rendered = subprocess.run(
        [
            str(helm), "template", "ringleader", str(CHART),
            "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
            "--set", "crds.create=false", "--set", "tests.enabled=false", "--set", "rbac.clusterWide=true",
        ],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    # Applied by kubectl, not managed by a Helm release.
    rendered = rendered.replace("app.kubernetes.io/managed-by: Helm", "app.kubernetes.io/managed-by: kubectl")
    return HEADER + rendered


def chart_copies() -> dict[Path, str]:
    """The chart's copies of files whose source of truth lives outside the chart."""
    files: dict[Path, str] = {}
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        files[CHART / "files" / "crds" / crd.name] = crd.read_text()
    if RBAC_RULES.is_file():
        files[CHART / "files" / "operator-rbac.yaml"] = RBAC_RULES.read_text()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files, change nothing")
    args = parser.parse_args(argv)
    helm = tool("helm")
    files = chart_copies()
    stale: list[Path] = []
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    extra = set((CHART / "files" / "crds").glob("*.yaml")) - set(files)
    for path in sorted(extra):
        stale.append(path)
        if not args.check:
            path.unlink()
    # Rendered from the chart files written above (in --check mode a stale copy is reported already).
    install = render_install(helm)
    if not INSTALL.is_file() or INSTALL.read_text() != install:
        stale.append(INSTALL)
        if not args.check:
            INSTALL.parent.mkdir(parents=True, exist_ok=True)
            INSTALL.write_text(install)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(REPO)}", file=sys.stderr)
    if args.check and stale:
        print("run `make manifests` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
