"""What a ``LoadBalancingExporter`` reports in ``status``: pure functions, no API calls.

The handlers observe the cluster (the Deployment's status, the tier-2
EndpointSlices, each ready pod's ``/debug/ring``) into an :class:`Observation`;
:func:`compute_status` turns it and the previous ``status`` into the new one::

    status = compute_status(previous=body.get("status", {}), observation=obs, now=utc_now())

The result, field by field (docs/operator.md has the user's view):

- ``observedGeneration``: the ``metadata.generation`` this status describes;
- ``replicas``, ``readyReplicas``, ``updatedReplicas`` (from the Deployment) and
  ``selector`` (the pods' label selector: the ``scale`` subresource reads it, so
  ``kubectl scale`` and an HPA work);
- ``configHash`` and ``configMapName``: the config the pod template asks for (the
  last one applied; unchanged while the spec is invalid);
- ``tier2Service`` (``namespace/name``) and ``backends``, the number of ready
  tier-2 endpoints in that Service's EndpointSlices, for the ``k8s`` resolver;
- ``ring``: what the ready data-plane replicas report at ``/debug/ring``:
  ``consistent`` is false when they disagree about the backend set;
- ``conditions``: ``Ready``, ``Progressing`` and ``Degraded`` (kstatus style),
  each with ``observedGeneration``, a CamelCase ``reason`` and a ``message`` that
  says what to do; ``lastTransitionTime`` changes only when ``status`` does.

Degraded reasons, most important first: ``InvalidSpec`` (the message names the
field; nothing was changed, the running pods keep serving), ``ApplyFailed``,
``NameConflict``, ``Tier2ServiceNotFound``, ``BackendSetDisagreement``; otherwise
``AsExpected``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "CONDITION_TYPES",
    "Observation",
    "Problem",
    "RingReport",
    "compute_status",
    "count_ready_endpoints",
    "merge_conditions",
    "ring_report",
    "utc_now",
]

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


def utc_now() -> str:
    """RFC 3339 with seconds, as Kubernetes writes times."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Problem:
    """Why the resource is degraded: a CamelCase reason and a message that says what to do."""

    reason: str
    message: str


@dataclass(frozen=True)
class RingReport:
    """One ready replica's ``/debug/ring``: which backends its ring holds (or why it could not say)."""

    pod: str
    endpoints: tuple[str, ...] = ()
    version: int | None = None
    error: str | None = None


def ring_report(pod: str, body: Mapping[str, Any]) -> RingReport:
    """A :class:`RingReport` from a ``/debug/ring`` JSON document (see :mod:`dataplane.admin`)."""
    endpoints = tuple(sorted(str(e) for e in body.get("endpoints") or ()))
    version = body.get("version")
    return RingReport(pod=pod, endpoints=endpoints, version=int(version) if isinstance(version, int) else None)


@dataclass(frozen=True)
class Observation:
    """Everything one reconciliation saw or did, as input to :func:`compute_status`."""

    generation: int
    selector: str
    problems: Sequence[Problem] = ()
    """In priority order; the first one names the Degraded reason."""
    spec_valid: bool = True
    config_hash: str | None = None
    config_map: str | None = None
    deployment: Mapping[str, Any] | None = None
    """The Deployment as read back (``metadata``, ``spec``, ``status``), None when it does not exist."""
    tier2_service: str | None = None
    ready_backends: int | None = None
    rings: Sequence[RingReport] = field(default_factory=tuple)


def count_ready_endpoints(slices: Sequence[Mapping[str, Any]]) -> int:
    """Distinct ready addresses over a Service's EndpointSlices (what the ``k8s`` resolver would use).

    An endpoint without ``conditions.ready`` counts as ready, as the API documents ("nil means unknown,
    interpret as ready"); a terminating one does not.
    """
    addresses: set[str] = set()
    for item in slices:
        for endpoint in item.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            addresses.update(str(a) for a in endpoint.get("addresses") or ())
    return len(addresses)


def _ring_summary(rings: Sequence[RingReport]) -> tuple[dict[str, Any] | None, Problem | None]:
    if not rings:
        return None, None
    answered = [r for r in rings if r.error is None]
    sets: dict[tuple[str, ...], list[str]] = {}
    for report in answered:
        sets.setdefault(report.endpoints, []).append(report.pod)
    summary: dict[str, Any] = {
        "replicasReporting": len(answered),
        "consistent": len(sets) <= 1,
        "backendSets": [
            {
                "id": hashlib.sha256(",".join(endpoints).encode()).hexdigest()[:10],
                "backends": len(endpoints),
                "pods": sorted(pods),
            }
            for endpoints, pods in sorted(sets.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ],
    }
    # Always present (None: a merge patch removes an old list).
    summary["unreachable"] = sorted(r.pod for r in rings if r.error is not None) or None
    if len(sets) <= 1:
        return summary, None
    described = "; ".join(
        f"{', '.join(sorted(pods))}: {len(endpoints)} backends" for endpoints, pods in sorted(sets.items())
    )
    return summary, Problem(
        "BackendSetDisagreement",
        f"data-plane replicas disagree about the tier-2 backend set ({described}), so a trace may be split "
        "across backends. This is normal for seconds during a tier-2 rollout; if it persists, compare the "
        "replicas' /debug/ring and their resolver errors.",
    )


def _deployment_numbers(deployment: Mapping[str, Any] | None) -> dict[str, int]:
    if deployment is None:
        return {"wanted": 0, "replicas": 0, "ready": 0, "updated": 0, "available": 0, "observed": 0, "generation": 0}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    return {
        "wanted": int(spec["replicas"]) if spec.get("replicas") is not None else 1,
        "replicas": int(status.get("replicas") or 0),
        "ready": int(status.get("readyReplicas") or 0),
        "updated": int(status.get("updatedReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0),
        "observed": int(status.get("observedGeneration") or 0),
        "generation": int(meta.get("generation") or 0),
    }


def _conditions(obs: Observation, degraded: Problem | None) -> list[dict[str, Any]]:
    n = _deployment_numbers(obs.deployment)
    rolled_out = (
        obs.deployment is not None
        and n["observed"] >= n["generation"]
        and n["updated"] >= n["wanted"]
        and n["replicas"] <= n["wanted"]
        and n["ready"] >= n["wanted"]
    )
    if obs.deployment is None:
        progressing = ("False" if not obs.spec_valid else "True", "DeploymentMissing",
                       "the Deployment does not exist yet; it is created on the next reconciliation")
    elif rolled_out:
        progressing = ("False", "RolloutComplete", f"all {n['wanted']} replicas run the current config")
    else:
        progressing = ("True", "RollingOut",
                       f"{n['updated']}/{n['wanted']} replicas updated, {n['ready']}/{n['wanted']} ready; "
                       "if this lasts, check the pods' events (image, scheduling, probes)")  # fmt: skip

    if not obs.spec_valid and degraded is not None:
        ready = ("False", degraded.reason, f"the current spec is not applied: {degraded.message}")
    elif obs.deployment is None:
        ready = ("False", "DeploymentMissing", "no data-plane Deployment yet")
    elif n["ready"] == 0:
        ready = ("False", "NoReadyReplicas",
                 f"0/{n['wanted']} replicas ready; a data plane is ready once it listens and has at least one "
                 "tier-2 backend: check the pods' /readyz and the tier-2 Service")  # fmt: skip
    elif not rolled_out:
        ready = ("False", "RollingOut", f"{n['ready']}/{n['wanted']} replicas ready, rollout in progress")
    else:
        ready = ("True", "Available", f"{n['ready']}/{n['wanted']} replicas ready")

    if degraded is None:
        degraded_cond = ("False", "AsExpected", "no problem found")
    else:
        degraded_cond = ("True", degraded.reason, degraded.message)

    return [
        {"type": kind, "status": s, "reason": r, "message": m, "observedGeneration": obs.generation}
        for kind, (s, r, m) in zip(CONDITION_TYPES, (ready, progressing, degraded_cond), strict=True)
    ]


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], now: str
) -> list[dict[str, Any]]:
    """``current`` with ``lastTransitionTime`` kept from ``previous`` unless ``status`` changed."""
    before = {str(c.get("type")): c for c in previous}
    merged = []
    for condition in current:
        old = before.get(str(condition["type"]))
        changed = old is None or old.get("status") != condition["status"] or not old.get("lastTransitionTime")
        merged.append({**condition, "lastTransitionTime": now if changed else old["lastTransitionTime"]})  # type: ignore[index]
    return merged


def compute_status(previous: Mapping[str, Any], observation: Observation, now: str) -> dict[str, Any]:
    """The full new ``status`` (a merge patch with it replaces every field this module owns)."""
    ring, disagreement = _ring_summary(observation.rings)
    problems = list(observation.problems) + ([disagreement] if disagreement else [])
    degraded = problems[0] if problems else None
    n = _deployment_numbers(observation.deployment)
    status: dict[str, Any] = {
        "observedGeneration": observation.generation,
        "replicas": n["replicas"],
        "readyReplicas": n["ready"],
        "updatedReplicas": n["updated"],
        "selector": observation.selector,
        "configHash": observation.config_hash or previous.get("configHash"),
        "configMapName": observation.config_map or previous.get("configMapName"),
        "tier2Service": observation.tier2_service or (None if observation.spec_valid else previous.get("tier2Service")),
        "backends": (
            observation.ready_backends or 0
            if observation.tier2_service
            else (None if observation.spec_valid else previous.get("backends"))
        ),
        "ring": ring,
        "conditions": merge_conditions(
            previous.get("conditions") or (), _conditions(observation, degraded), now
        ),
    }
    return status
