"""The kopf handlers: when to reconcile. What a reconciliation does is :mod:`ringleader_operator.reconcile`.

:func:`register` puts these handlers into a kopf registry (``ringleader-operator run``
does it; so can a test running the operator in-process)::

    registry = kopf.OperatorRegistry()
    register(registry, reconciler, resync_seconds=30)
    kopf.run(registry=registry, settings=operator_settings(), namespaces=["observability"])

For ``LoadBalancingExporter`` resources:

- **create, update of ``spec``, resume** (the operator started and finds the
  resource): reconcile. Resuming after a restart applies the same objects again,
  which changes nothing in a converged cluster, and finishes any half-done work;
- **timer** every ``resync_seconds``: reconcile, which puts back owned objects
  edited or deleted by hand, prunes, and refreshes ``status`` (ready replicas,
  tier-2 backends, the replicas' ring agreement);
- **delete**: remove the cross-namespace Role and RoleBinding, then kopf drops the
  finalizer ``ringleader.dev/finalizer``; Kubernetes' garbage collector deletes
  the owned objects.

For the Deployments the operator made (label ``app.kubernetes.io/managed-by:
ringleader-operator``): any change or deletion reconciles the owning resource at
once, so a hand-edited replica count or a deleted Deployment is restored within
seconds and ``status`` follows the rollout.

Transient API failures post a ``RetryLater`` Warning Event and raise
``kopf.TemporaryError`` (kopf retries); an unexpected error posts ``ReconcileFailed``.
Anything the user must fix is reported in ``status`` and Events instead of being
retried in a loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from .owner import GROUP, KIND, PLURAL, VERSION
from .reconcile import Reconciler, RetryLater

__all__ = ["MANAGED_BY", "register"]

MANAGED_BY = {"app.kubernetes.io/managed-by": "ringleader-operator"}
RETRY_DELAY = 10.0


def _owner_of(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("apiVersion") == f"{GROUP}/{VERSION}":
            return str(ref.get("name"))
    return None


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler, *, resync_seconds: float = 30.0) -> None:
    """Register the operator's handlers in ``registry`` (see the module docstring)."""

    async def reconcile(namespace: str | None, name: str, body: kopf.Body | None = None) -> None:
        """Reconcile; a failure becomes a Warning Event on the resource (when we have it) and a retry."""
        assert namespace is not None, "LoadBalancingExporter is namespaced"
        try:
            await reconciler.reconcile(namespace, name)
        except RetryLater as exc:
            if body is not None:
                kopf.warn(body, reason="RetryLater", message=f"{exc}; retrying in {RETRY_DELAY:.0f}s")
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc
        except Exception as exc:
            if body is not None:
                kopf.exception(body, reason="ReconcileFailed", message="unexpected error:", exc=exc)
            raise

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the apply layer: in-cluster ServiceAccount, else $KUBECONFIG.
        return kopf.login_via_client(**kwargs)

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", field="spec", registry=registry)
    async def spec_changed(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        await reconcile(namespace, name, body)

    @kopf.timer(GROUP, VERSION, PLURAL, id="resync", interval=resync_seconds, initial_delay=resync_seconds,
                registry=registry)  # fmt: skip
    async def resync(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        await reconcile(namespace, name, body)

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="finalize", registry=registry)
    async def deleted(body: kopf.Body, **_: Any) -> None:
        try:
            await reconciler.finalize(body)
        except RetryLater as exc:
            kopf.warn(body, reason="RetryLater", message=f"{exc}; retrying in {RETRY_DELAY:.0f}s")
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY) from exc

    @kopf.on.event("apps", "v1", "deployments", id="owned-deployment", labels=MANAGED_BY, registry=registry)
    async def owned_deployment_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        owner = _owner_of(body)
        if owner is not None and namespace is not None:
            await reconcile(namespace, owner)
