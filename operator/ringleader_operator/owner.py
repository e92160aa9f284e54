"""The ``LoadBalancingExporter`` that owns the objects: identity, labels and references.

Every object the operator makes carries the project's four labels
(:func:`labels`); the pods are selected by :func:`selector_labels`, which is also
the resource's scale selector (``status.selector``, :func:`scale_selector`).
Objects in the resource's namespace get a controller :func:`owner_reference`, so
Kubernetes' garbage collector deletes them with the resource. Objects in another
namespace (the Role and RoleBinding of the ``k8s`` resolver, when the tier-2
Service lives elsewhere) cannot have one; they carry :func:`owner_labels`
instead, and the operator deletes them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Owner",
    "labels",
    "owner_labels",
    "owner_reference",
    "scale_selector",
    "selector_labels",
]

GROUP = "ringleader.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LoadBalancingExporter"
PLURAL = "loadbalancingexporters"

OWNER_NAMESPACE_LABEL = f"{GROUP}/owner-namespace"
OWNER_NAME_LABEL = f"{GROUP}/owner-name"
OWNER_UID_LABEL = f"{GROUP}/owner-uid"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"


@dataclass(frozen=True)
class Owner:
    """The resource's identity, from its ``metadata``."""

    name: str
    namespace: str
    uid: str
    generation: int = 1

    @classmethod
    def from_metadata(cls, metadata: Any) -> Owner:
        """From a resource's ``metadata`` mapping (kopf's ``meta`` or a plain dict)."""
        return cls(
            name=str(metadata["name"]),
            namespace=str(metadata["namespace"]),
            uid=str(metadata["uid"]),
            generation=int(metadata.get("generation") or 1),
        )


def selector_labels(owner: Owner) -> dict[str, str]:
    """The labels that select this resource's data-plane pods (immutable in a Deployment)."""
    return {
        "app.kubernetes.io/name": "ringleader",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": "dataplane",
    }


def labels(owner: Owner) -> dict[str, str]:
    """The labels on everything the operator makes."""
    return {**selector_labels(owner), "app.kubernetes.io/managed-by": "ringleader-operator"}


def owner_labels(owner: Owner) -> dict[str, str]:
    """Labels that tie an object in another namespace to its resource (no ownerReference possible)."""
    return {
        **labels(owner),
        OWNER_NAMESPACE_LABEL: owner.namespace,
        OWNER_NAME_LABEL: owner.name,
        OWNER_UID_LABEL: owner.uid,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    """A controller reference: Kubernetes deletes the object with the resource."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def scale_selector(owner: Owner) -> str:
    """``status.selector`` for the scale subresource (what an HPA counts pods by)."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(owner).items())
