"""``ringleader-operator``: the command line.

ringleader-operator run --namespace observability          watch one namespace (repeat for several)
ringleader-operator run --all-namespaces                   watch every namespace (cluster-wide RBAC)
ringleader-operator rbac --namespace observability         print the operator's RBAC for those namespaces
ringleader-operator rbac --all-namespaces                  ... or the cluster-wide variant
ringleader-operator convert tier1-collector.yaml ...       a collector's loadbalancing block as a resource

``run`` options: ``--liveness`` (default ``http://0.0.0.0:8080/healthz``; ``""`` turns it
off), ``--peering NAME`` to run several replicas of which one is active (default:
standalone, run one replica with the ``Recreate`` strategy), ``--priority``,
``--resync-seconds`` (how often every resource is reconciled even when nothing
changed: drift repair and status refresh), ``--keep-configmaps``, ``--verbose``.

Credentials: in a pod, its ServiceAccount; elsewhere ``$KUBECONFIG`` or
``~/.kube/config``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

__all__ = ["main"]


def _api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _run(ns: argparse.Namespace) -> int:
    import kopf

    from .apply import KubeApi
    from .handlers import register
    from .reconcile import Options, Reconciler
    from .settings import operator_settings

    # kopf's formatter prefixes each line about a resource with "[namespace/name]".
    kopf.configure(verbose=ns.verbose, log_prefix=True)
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    clusterwide = bool(ns.all_namespaces)
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(KubeApi(_api_client()), Options(keep_configmaps=ns.keep_configmaps))
    register(registry, reconciler, resync_seconds=ns.resync_seconds)
    settings = operator_settings(peering=ns.peering, clusterwide=clusterwide, priority=ns.priority)
    kopf.run(
        registry=registry,
        settings=settings,
        standalone=ns.peering is None,
        peering_name=ns.peering,
        priority=ns.priority,
        clusterwide=clusterwide,
        namespaces=ns.namespace or (),
        liveness_endpoint=ns.liveness or None,
    )
    return 0


def _rbac(ns: argparse.Namespace) -> int:
    import yaml

    from .rbac import rbac_manifests

    documents = rbac_manifests(
        operator_namespace=ns.operator_namespace,
        service_account=ns.service_account,
        namespaces=None if ns.all_namespaces else ns.namespace,
        tier2_namespaces=ns.tier2_namespace,
        peering=ns.peering,
    )
    sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False))
    return 0


def _scope(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--namespace", "-n", action="append", metavar="NS",
        help="a namespace to watch (repeat for several); also every namespace a tier-2 Service lives in",
    )  # fmt: skip
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["convert"]:  # its own parser and --help (ringleader_operator.convert)
        from .convert import convert_main

        return convert_main(args[1:])
    parser = argparse.ArgumentParser(
        prog="ringleader-operator", description="Kubernetes operator for Ringleader (LoadBalancingExporter)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("convert", help="convert a collector's or Alloy's loadbalancing config (see convert --help)")

    run = sub.add_parser("run", help="run the operator")
    _scope(run)
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL ('' = off)")
    run.add_argument("--peering", default=None, metavar="NAME", help="peering object name (several replicas)")
    run.add_argument("--priority", type=int, default=0, help="peering priority (highest is active)")
    run.add_argument("--resync-seconds", type=float, default=30.0, help="reconcile every resource this often")
    run.add_argument("--keep-configmaps", type=int, default=3, help="old config ConfigMaps kept per resource")
    run.add_argument("--verbose", "-v", action="store_true")

    rbac = sub.add_parser("rbac", help="print the operator's least-privilege RBAC as YAML")
    _scope(rbac)
    rbac.add_argument("--operator-namespace", default="ringleader-system", help="where the operator runs")
    rbac.add_argument("--service-account", default="ringleader-operator", help="the operator's ServiceAccount")
    rbac.add_argument("--tier2-namespace", action="append", default=[], metavar="NS",
                      help="a namespace holding only a tier-2 Service (namespaced variant; repeatable)")
    rbac.add_argument("--peering", action="store_true", help="add the rules for run --peering")

    ns = parser.parse_args(args)
    if ns.command == "run":
        if ns.keep_configmaps < 0 or ns.resync_seconds <= 0:
            parser.error("--keep-configmaps must be >= 0 and --resync-seconds > 0")
        return _run(ns)
    return _rbac(ns)


if __name__ == "__main__":
    sys.exit(main())
