"""Every Kubernetes object a ``LoadBalancingExporter`` owns, built as plain dicts.

Each ``build_*`` function is pure: the resource's identity (:class:`Owner`) and
its parsed spec in, one manifest out, ready for server-side apply. The handlers
never assemble objects themselves; they call :func:`build_all` and apply what it
returns::

    desired = build_all(Owner.from_metadata(meta), parse_spec(spec))
    for manifest in desired.owned:            # same namespace, controller ownerReference
        apply(manifest)
    for manifest in desired.cross_namespace:  # Role/RoleBinding next to a tier-2 Service elsewhere
        apply(manifest)                       # (owner labels instead of an ownerReference)

What the objects guarantee, by design:

- the data plane's config is in a ConfigMap named ``<name>-ringleader-<hash>``;
  the pod template carries the hash (annotation ``ringleader.dev/config-hash``)
  and mounts that ConfigMap, so a changed config rolls out and the old pods keep
  their old config until they are replaced (:func:`configmaps_to_prune` keeps a
  few);
- the pods run as a numeric non-root user, with a read-only root filesystem, no
  capabilities, no privilege escalation, the RuntimeDefault seccomp profile, an
  emptyDir for ``/tmp``, and a ServiceAccount token only when the ``k8s``
  resolver needs one;
- the ServiceAccount may get, list and watch EndpointSlices in the tier-2
  Service's namespace, and nothing else, and only with the ``k8s`` resolver;
- probes use the data plane's ``/healthz`` and ``/readyz`` on the metrics port;
  the pod gets a preStop pause and a termination grace period longer than the
  data plane's drain deadline, so queued data is delivered, not killed;
- pods are spread over nodes and zones unless ``topologySpreadConstraints`` says
  otherwise; the PodDisruptionBudget and the HPA (which scales the resource's
  scale subresource, never the Deployment) are optional.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataplane.config import parse_duration

from .owner import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    KIND,
    Owner,
    labels,
    owner_labels,
    owner_reference,
    selector_labels,
)
from .render import CONFIG_DIR, CONFIG_FILE, TLS_DIR, config_hash, header_env_name, render_config, validate_config
from .spec import ExporterSpec, K8sResolver, SpecError

__all__ = [
    "PRESTOP_SECONDS",
    "RUN_AS_USER",
    "Desired",
    "build_all",
    "build_configmap",
    "build_deployment",
    "build_hpa",
    "build_pdb",
    "build_role",
    "build_role_binding",
    "build_service",
    "build_service_account",
    "build_service_monitor",
    "configmap_name",
    "configmaps_to_prune",
    "resource_name",
    "role_name",
    "tier2_namespace",
]

RUN_AS_USER = 65532  # the conventional "nonroot" uid/gid of distroless images
PRESTOP_SECONDS = 5  # endpoints drop the pod before it stops accepting
GRACE_MARGIN_SECONDS = 10  # beyond preStop + drain: shutdown of the listeners and the process
MAX_NAME_LENGTH = 52  # "<name>-ringleader" must be a 63-character DNS label (the Service name)
CONTAINER = "dataplane"


def resource_name(owner: Owner) -> str:
    """Name of the Deployment, Service, ServiceAccount, PDB, HPA and ServiceMonitor."""
    return f"{owner.name}-ringleader"


def configmap_name(owner: Owner, digest: str) -> str:
    return f"{owner.name}-ringleader-{digest}"


def tier2_namespace(owner: Owner, spec: ExporterSpec) -> str | None:
    """The namespace the ``k8s`` resolver watches (None for the other resolvers)."""
    if isinstance(spec.resolver, K8sResolver):
        return spec.resolver.namespace or owner.namespace
    return None


def role_name(owner: Owner, spec: ExporterSpec) -> str:
    """Same namespace: ``<name>-ringleader``; elsewhere ``<namespace>.<name>-ringleader`` (namespaces
    have no dots, so two resources never share a name in a third namespace)."""
    if tier2_namespace(owner, spec) in (None, owner.namespace):
        return resource_name(owner)
    return f"{owner.namespace}.{resource_name(owner)}"


def _meta(owner: Owner, name: str, namespace: str | None = None) -> dict[str, Any]:
    if namespace is not None and namespace != owner.namespace:
        return {"name": name, "namespace": namespace, "labels": owner_labels(owner)}
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner),
        "ownerReferences": [owner_reference(owner)],
    }


# ------------------------------------------------------------------------ config
def build_configmap(owner: Owner, text: str) -> dict[str, Any]:
    """The data plane's config, named after its hash; immutable, since a change is a new ConfigMap."""
    digest = config_hash(text)
    meta = _meta(owner, configmap_name(owner, digest))
    meta["annotations"] = {CONFIG_HASH_ANNOTATION: digest}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "immutable": True,
        "data": {CONFIG_FILE: text},
    }


def configmaps_to_prune(existing: Sequence[Mapping[str, Any]], keep: int, current: str | None = None) -> list[str]:
    """Names of the old config ConfigMaps to delete: all but ``current`` and the ``keep`` newest others.

    ``existing`` are ConfigMap manifests (the operator lists them by its labels);
    age is ``metadata.creationTimestamp`` (RFC 3339, so it sorts as text), ties
    broken by name, so the answer does not depend on the listing's order.
    """
    if keep < 0:
        raise ValueError("keep must not be negative")
    old = [cm for cm in existing if cm["metadata"]["name"] != current]
    old.sort(key=lambda cm: (str(cm["metadata"].get("creationTimestamp") or ""), cm["metadata"]["name"]), reverse=True)
    return sorted(cm["metadata"]["name"] for cm in old[keep:])


# ---------------------------------------------------------------------- identity
def build_service_account(owner: Owner, spec: ExporterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(owner, resource_name(owner)),
        "automountServiceAccountToken": isinstance(spec.resolver, K8sResolver),
    }


def build_role(owner: Owner, spec: ExporterSpec) -> dict[str, Any] | None:
    """``k8s`` resolver only: get/list/watch EndpointSlices in the tier-2 Service's namespace."""
    namespace = tier2_namespace(owner, spec)
    if namespace is None:
        return None
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(owner, role_name(owner, spec), namespace),
        "rules": [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
        ],
    }


def build_role_binding(owner: Owner, spec: ExporterSpec) -> dict[str, Any] | None:
    namespace = tier2_namespace(owner, spec)
    if namespace is None:
        return None
    name = role_name(owner, spec)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(owner, name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": resource_name(owner), "namespace": owner.namespace}],
    }


# -------------------------------------------------------------------- workloads
def termination_grace_seconds(spec: ExporterSpec) -> int:
    """preStop pause + the data plane's drain deadline + a margin for the rest of the shutdown."""
    drain = parse_duration(spec.drain_timeout) or 0.0
    return PRESTOP_SECONDS + math.ceil(drain) + GRACE_MARGIN_SECONDS


def _spread(owner: Owner, spec: ExporterSpec) -> list[dict[str, Any]]:
    selector = {"matchLabels": selector_labels(owner)}
    if not spec.topology_spread_constraints:
        return [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector,
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ]
    return [{"labelSelector": selector, **dict(c)} for c in spec.topology_spread_constraints]


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_deployment(owner: Owner, spec: ExporterSpec, digest: str) -> dict[str, Any]:
    """The data plane pods, mounting ConfigMap ``configmap_name(owner, digest)``."""
    tls = spec.otlp.tls
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": configmap_name(owner, digest)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    if tls.secret_name:
        items = [{"key": "ca.crt", "path": "ca.crt"}]
        if tls.client_certificate:
            items += [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": tls.secret_name, "items": items, "defaultMode": 0o440}})
    env = [
        {
            "name": header_env_name(i),
            "valueFrom": {"secretKeyRef": {"name": h.secret_key_ref.name, "key": h.secret_key_ref.key}},
        }
        for i, h in enumerate(spec.otlp.headers)
        if h.secret_key_ref is not None
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["ringleader-dataplane"],
        "args": ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [
            {"name": "otlp-grpc", "containerPort": spec.ports.grpc, "protocol": "TCP"},
            {"name": "otlp-http", "containerPort": spec.ports.http, "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec.ports.metrics, "protocol": "TCP"},
        ],
        "env": env,
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "resources": dict(spec.resources),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    if not env:
        del container["env"]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": resource_name(owner),
        "automountServiceAccountToken": isinstance(spec.resolver, K8sResolver),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": _spread(owner, spec),
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.affinity:
        pod_spec["affinity"] = dict(spec.affinity)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, resource_name(owner)),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(owner)},
            # Never below the wanted capacity during a rollout: surge first, then retire.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(owner), "annotations": {CONFIG_HASH_ANNOTATION: digest}},
                "spec": pod_spec,
            },
        },
    }


def build_service(owner: Owner, spec: ExporterSpec) -> dict[str, Any]:
    """Where applications send OTLP: ``<name>-ringleader.<namespace>.svc`` (gRPC, HTTP, metrics)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, resource_name(owner)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner),
            "ports": [
                {"name": "otlp-grpc", "port": spec.ports.grpc, "targetPort": "otlp-grpc", "protocol": "TCP",
                 "appProtocol": "grpc"},
                {"name": "otlp-http", "port": spec.ports.http, "targetPort": "otlp-http", "protocol": "TCP",
                 "appProtocol": "http"},
                {"name": "metrics", "port": spec.ports.metrics, "targetPort": "metrics", "protocol": "TCP",
                 "appProtocol": "http"},
            ],
        },
    }  # fmt: skip


def build_pdb(owner: Owner, spec: ExporterSpec) -> dict[str, Any] | None:
    pdb = spec.pod_disruption_budget
    if not pdb.enabled:
        return None
    body: dict[str, Any] = {"selector": {"matchLabels": selector_labels(owner)}}
    if pdb.min_available is not None:
        body["minAvailable"] = pdb.min_available
    else:
        body["maxUnavailable"] = pdb.max_unavailable if pdb.max_unavailable is not None else 1
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, resource_name(owner)),
        "spec": body,
    }


def build_hpa(owner: Owner, spec: ExporterSpec) -> dict[str, Any] | None:
    """autoscaling/v2 on CPU, scaling the resource's scale subresource (the operator follows)."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, resource_name(owner)),
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": owner.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_service_monitor(owner: Owner, spec: ExporterSpec) -> dict[str, Any] | None:
    """A prometheus-operator ServiceMonitor for the metrics port (apply only where its CRD exists)."""
    if not spec.service_monitor.enabled:
        return None
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(owner, resource_name(owner)),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": spec.service_monitor.interval}],
        },
    }


# --------------------------------------------------------------------------- all
@dataclass(frozen=True)
class Desired:
    """Everything one resource should own, in apply order."""

    owned: tuple[dict[str, Any], ...]
    """Same namespace as the resource, each with a controller ownerReference."""
    cross_namespace: tuple[dict[str, Any], ...]
    """Role and RoleBinding in the tier-2 Service's namespace, tied to the resource by owner labels."""
    service_monitor: dict[str, Any] | None
    """Owned too; apply only where the ServiceMonitor CRD exists."""
    config_hash: str
    config_name: str
    config_text: str


def check_owner(owner: Owner) -> None:
    """The names derived from the resource's must be valid (the CRD refuses such names too)."""
    if len(owner.name) > MAX_NAME_LENGTH:
        raise SpecError(
            "metadata.name", f"must be at most {MAX_NAME_LENGTH} characters (the Service is named <name>-ringleader)"
        )
    if not owner.name[:1].isalpha() or "." in owner.name:
        raise SpecError("metadata.name", "must be a DNS label starting with a letter (it names a Service)")


def build_all(owner: Owner, spec: ExporterSpec, *, validate: bool = True) -> Desired:
    """Render and (by default) validate the config, then build every object.

    Raises :class:`SpecError` with the field's path when the data plane would
    refuse the config: nothing is built, so nothing running is touched.
    """
    check_owner(owner)
    text = render_config(owner, spec)
    if validate:
        validate_config(text)
    digest = config_hash(text)
    role = build_role(owner, spec)
    binding = build_role_binding(owner, spec)
    same_ns = tier2_namespace(owner, spec) in (None, owner.namespace)
    rbac = tuple(obj for obj in (role, binding) if obj is not None)
    owned = (
        build_configmap(owner, text),
        build_service_account(owner, spec),
        *(rbac if same_ns else ()),
        build_service(owner, spec),
        build_deployment(owner, spec, digest),
        *(obj for obj in (build_pdb(owner, spec), build_hpa(owner, spec)) if obj is not None),
    )
    return Desired(
        owned=owned,
        cross_namespace=() if same_ns else rbac,
        service_monitor=build_service_monitor(owner, spec),
        config_hash=digest,
        config_name=configmap_name(owner, digest),
        config_text=text,
    )
