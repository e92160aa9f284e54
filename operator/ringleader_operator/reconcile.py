"""One reconciliation of a ``LoadBalancingExporter``: build, adopt, apply, prune, observe, report.

The kopf handlers (:mod:`ringleader_operator.handlers`) only decide *when*; this
module is *what*, and it is the same every time, so it is safe to run again at any
moment (after a restart, on a timer, when an owned Deployment changes)::

    reconciler = Reconciler(KubeApi(api_client))
    await reconciler.reconcile("observability", "tier1")    # namespace, name
    await reconciler.finalize(body)                         # on delete

A reconciliation, in order:

1. reads the resource fresh (a queued trigger may be stale) and parses its spec;
   the objects are built by :func:`ringleader_operator.builders.build_all`, which
   also validates the rendered config with the data plane's own validator. A spec
   it refuses changes **nothing**: the resource becomes Degraded (``InvalidSpec``,
   naming the field) and the running pods keep their last good config;
2. checks the tier-2 Service of the ``k8s`` resolver exists (``Tier2ServiceNotFound``
   otherwise; the objects are applied anyway, so the data plane starts serving as
   soon as the Service appears);
3. applies every object with server-side apply (the ConfigMap first, so the
   Deployment never names a missing one). An object of the same name controlled
   by someone else is left alone (``NameConflict``). What was created or changed
   is posted as an Event; applying an unchanged object writes nothing;
4. prunes: config ConfigMaps beyond the :attr:`Options.keep_configmaps` newest
   old ones, optional objects no longer wanted (PDB, HPA, ServiceMonitor, RBAC
   after a resolver change) and the Role/RoleBinding left in a former tier-2
   namespace;
5. observes the Deployment, the tier-2 EndpointSlices and each ready pod's
   ``/debug/ring``, and writes ``status`` (:mod:`ringleader_operator.status`) only
   when it differs.

Errors the user must fix become Degraded reasons and Warning Events (posted once per
new problem, not on every resync); errors that may pass (a 5xx, a timeout) raise
:class:`RetryLater` so kopf retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import kopf
from kubernetes.client.exceptions import ApiException

from .apply import KubeApi
from .builders import Desired, build_all, configmaps_to_prune, resource_name, role_name, tier2_namespace
from .owner import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    KIND,
    OWNER_UID_LABEL,
    Owner,
    scale_selector,
    selector_labels,
)
from .spec import ExporterSpec, K8sResolver, SpecError, parse_spec
from .status import Observation, Problem, RingReport, compute_status, count_ready_endpoints, ring_report, utc_now

__all__ = ["Options", "Reconciler", "RetryLater"]

log = logging.getLogger("ringleader_operator")

RBAC_API = "rbac.authorization.k8s.io/v1"
# Optional objects, same namespace, named resource_name(owner): deleted when no longer wanted.
_OPTIONAL = (
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)


_SERVICE_MONITOR_API = ("monitoring.coreos.com/v1", "servicemonitors")


class RetryLater(Exception):
    """A transient failure (API unavailable, timeout, conflict): kopf should retry."""


@dataclass(frozen=True)
class Options:
    keep_configmaps: int = 3
    """Old config ConfigMaps kept for pods that have not rolled yet (besides the current one)."""
    ring_timeout: float = 3.0
    """Seconds to wait for one pod's ``/debug/ring``."""


def _controller_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _owned_by(obj: Mapping[str, Any], owner: Owner) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return _controller_uid(obj) == owner.uid or labels.get(OWNER_UID_LABEL) == owner.uid


def _foreign(obj: Mapping[str, Any] | None, owner: Owner) -> str | None:
    """Who else controls ``obj`` (None: nobody, or us)."""
    if obj is None:
        return None
    uid = _controller_uid(obj)
    if uid is not None and uid != owner.uid:
        refs = obj["metadata"].get("ownerReferences") or ()
        ref = next(r for r in refs if r.get("controller"))
        return f"{ref.get('kind')}/{ref.get('name')}"
    other = (obj["metadata"].get("labels") or {}).get(OWNER_UID_LABEL)
    if other is not None and other != owner.uid:
        return f"another {KIND} (uid {other})"
    return None


def _rbac_of(owner: Owner, status: Mapping[str, Any]) -> tuple[str, str] | None:
    """Where the data plane's Role/RoleBinding were, from the ``tier2Service`` last reported."""
    namespace, _, service = str(status.get("tier2Service") or "").partition("/")
    if not service:
        return None
    name = resource_name(owner) if namespace == owner.namespace else f"{owner.namespace}.{resource_name(owner)}"
    return namespace, name


def _event(body: Mapping[str, Any], type_: str, *, reason: str, message: str) -> None:
    """Post a Kubernetes Event about the resource (kopf sends it in the background)."""
    kopf.event(cast(kopf.Body, body), type=type_, reason=reason, message=message[:1024])


def _describe(manifest: Mapping[str, Any]) -> str:
    meta = manifest["metadata"]
    return f"{manifest['kind']} {meta.get('namespace')}/{meta['name']}"


def _api_error(exc: ApiException) -> str:
    import json

    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return f"{exc.status} {exc.reason}"


def _transient(exc: ApiException) -> bool:
    return exc.status in (0, 409, 429) or (exc.status or 0) >= 500


class Reconciler:
    """Reconciles resources; one at a time per resource, later triggers coalesced."""

    def __init__(self, api: KubeApi, options: Options | None = None) -> None:
        self.api = api
        self.options = options or Options()
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: set[str] = set()

    # -- entry points ----------------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> None:
        """Bring ``namespace/name``'s objects and status up to date. Triggers that arrive while one
        runs are merged into a single follow-up run (it reads the resource afresh anyway)."""
        key = f"{namespace}/{name}"
        if key in self._waiting:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting.add(key)
        try:
            await lock.acquire()
        finally:
            self._waiting.discard(key)
        try:
            body = await self.api.get(API_VERSION, KIND, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            await self._reconcile(body)
        except ApiException as exc:
            if _transient(exc):
                raise RetryLater(f"{key}: {exc.status} {_api_error(exc)}") from exc
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RetryLater(f"{key}: {exc}") from exc
        finally:
            lock.release()

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """On delete: remove what garbage collection cannot (the Role/RoleBinding in another
        namespace); the rest has ownerReferences and goes with the resource.

        Holds the resource's lock: a reconciliation under way finishes first, and any later one
        sees the deletion and does nothing, so nothing is re-created behind the finalizer."""
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                await self._finalize(body)
            except ApiException as exc:
                if _transient(exc):
                    raise RetryLater(f"{key}: {exc.status} {_api_error(exc)}") from exc
                raise
        if not lock.locked() and key not in self._waiting:
            self._locks.pop(key, None)  # the resource is gone: forget its lock

    async def _finalize(self, body: Mapping[str, Any]) -> None:
        owner = Owner.from_metadata(body["metadata"])
        targets: set[tuple[str, str]] = set()
        previous = _rbac_of(owner, body.get("status") or {})
        if previous is not None:
            targets.add(previous)
        with contextlib.suppress(SpecError):
            spec = parse_spec(body.get("spec") or {})
            namespace = tier2_namespace(owner, spec)
            if namespace is not None:
                targets.add((namespace, role_name(owner, spec)))
        for namespace, name in sorted(targets):
            if namespace == owner.namespace:
                continue
            for kind in ("RoleBinding", "Role"):
                try:
                    existing = await self.api.get(RBAC_API, kind, namespace, name)
                    if existing is not None and _owned_by(existing, owner):
                        await self.api.delete(RBAC_API, kind, namespace, name)
                        _event(body, "Normal", reason="Deleted", message=f"deleted {kind} {namespace}/{name}")
                except ApiException as exc:
                    if exc.status != 403:
                        raise
                    # Without rights there, the operator could not have created it either; do not block
                    # the deletion forever, say what may be left.
                    _event(body, "Warning", reason="CleanupForbidden",
                           message=f"may not delete {kind} {namespace}/{name} ({_api_error(exc)}); "
                                   "delete it by hand if it exists")  # fmt: skip

    # -- the steps -------------------------------------------------------------------------------
    async def _reconcile(self, body: Mapping[str, Any]) -> None:
        owner = Owner.from_metadata(body["metadata"])
        previous: Mapping[str, Any] = body.get("status") or {}
        problems: list[Problem] = []
        spec: ExporterSpec | None = None
        desired: Desired | None = None
        try:
            spec = parse_spec(body.get("spec") or {})
            desired = build_all(owner, spec)
        except SpecError as exc:
            problems.append(Problem(
                "InvalidSpec",
                f"{exc}. Fix that field; nothing was changed, the running data plane keeps its last valid config.",
            ))  # fmt: skip

        tier2_service: str | None = None
        ready_backends: int | None = None
        deployment: dict[str, Any] | None = None
        if spec is not None and desired is not None:
            if isinstance(spec.resolver, K8sResolver):
                tier2_ns = tier2_namespace(owner, spec) or owner.namespace
                tier2_service = f"{tier2_ns}/{spec.resolver.service}"
                problem, ready_backends = await self._tier2(tier2_ns, spec.resolver.service)
                if problem is not None:
                    problems.append(problem)
            applied, deployment = await self._apply_all(body, owner, desired)
            problems[:0] = applied  # apply failures outrank a missing tier-2 Service
            if not applied:
                await self._prune(body, owner, spec, desired, previous)
        else:
            deployment = await self.api.get("apps/v1", "Deployment", owner.namespace, resource_name(owner))

        rings = await self._rings(owner, spec) if spec is not None else []
        observation = Observation(
            generation=owner.generation,
            selector=scale_selector(owner),
            problems=problems,
            spec_valid=desired is not None,
            config_hash=desired.config_hash if desired else None,
            config_map=desired.config_name if desired else None,
            deployment=deployment,
            tier2_service=tier2_service,
            ready_backends=ready_backends,
            rings=rings,
        )
        status = compute_status(previous, observation, utc_now())
        self._announce_problem(body, previous, status)
        if _differs(previous, status):
            await self.api.patch_status(owner, status)

    async def _tier2(self, namespace: str, service: str) -> tuple[Problem | None, int | None]:
        try:
            found = await self.api.get("v1", "Service", namespace, service)
        except ApiException as exc:
            if exc.status != 403:
                raise
            return Problem(
                "Forbidden",
                f"the operator may not read Service {namespace}/{service}: {_api_error(exc)}. Bind the operator's "
                f"Role in namespace {namespace} too (docs/operator.md, RBAC).",
            ), None
        if found is None:
            return Problem(
                "Tier2ServiceNotFound",
                f"the tier-2 Service {namespace}/{service} (spec.resolver.k8s) does not exist: create it or fix "
                "spec.resolver.k8s.service/namespace. The data plane runs but is not ready until it has backends.",
            ), 0
        slices = await self.api.list(
            "discovery.k8s.io/v1", "EndpointSlice", namespace, f"kubernetes.io/service-name={service}"
        )
        return None, count_ready_endpoints(slices)

    async def _apply_all(
        self, body: Mapping[str, Any], owner: Owner, desired: Desired
    ) -> tuple[list[Problem], dict[str, Any] | None]:
        manifests = [*desired.owned, *desired.cross_namespace]
        if desired.service_monitor is not None and await self.api.api_group_has(*_SERVICE_MONITOR_API):
            manifests.append(desired.service_monitor)
        deployment: dict[str, Any] | None = None
        for manifest in manifests:
            meta = manifest["metadata"]
            try:
                existing = await self.api.get(
                    manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
                )
                other = _foreign(existing, owner)
                if other is not None:
                    return [Problem(
                        "NameConflict",
                        f"{_describe(manifest)} already exists and belongs to {other}; rename this resource or "
                        "remove that object.",
                    )], None  # fmt: skip
                result = await self.api.apply(manifest, before=existing)
            except ApiException as exc:
                if _transient(exc):
                    raise
                message = f"applying {_describe(manifest)} failed: {exc.status} {_api_error(exc)}"
                _event(body, "Warning", reason="ApplyFailed", message=message)
                hint = " Grant the operator this permission (docs/operator.md, RBAC)." if exc.status == 403 else ""
                return [Problem("ApplyFailed", message + "." + hint)], None
            if result.change != "unchanged":
                verb = "created" if result.change == "created" else "updated"
                _event(body, "Normal", reason=verb.capitalize(), message=f"{verb} {_describe(manifest)}")
                log.info("%s %s", verb, _describe(manifest))
            if manifest["kind"] == "Deployment":
                deployment = result.object
        return [], deployment

    async def _delete(self, body: Mapping[str, Any], api_version: str, kind: str, namespace: str, name: str) -> None:
        if await self.api.delete(api_version, kind, namespace, name):
            _event(body, "Normal", reason="Deleted", message=f"deleted {kind} {namespace}/{name}")
            log.info("deleted %s %s/%s", kind, namespace, name)

    async def _prune(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        spec: ExporterSpec,
        desired: Desired,
        previous: Mapping[str, Any],
    ) -> None:
        selector = ",".join(f"{k}={v}" for k, v in selector_labels(owner).items())
        configmaps = [
            cm
            for cm in await self.api.list("v1", "ConfigMap", owner.namespace, selector)
            if _owned_by(cm, owner) and CONFIG_HASH_ANNOTATION in (cm["metadata"].get("annotations") or {})
        ]
        for name in configmaps_to_prune(configmaps, self.options.keep_configmaps, desired.config_name):
            await self._delete(body, "v1", "ConfigMap", owner.namespace, name)

        monitor = (desired.service_monitor,) if desired.service_monitor is not None else ()
        wanted = {(m["apiVersion"], m["kind"], m["metadata"]["namespace"], m["metadata"]["name"])
                  for m in (*desired.owned, *desired.cross_namespace, *monitor)}  # fmt: skip
        candidates = [(api, kind, owner.namespace, resource_name(owner)) for api, kind in _OPTIONAL]
        if not monitor and await self.api.api_group_has(*_SERVICE_MONITOR_API):
            candidates.append(("monitoring.coreos.com/v1", "ServiceMonitor", owner.namespace, resource_name(owner)))
        candidates += [(RBAC_API, kind, owner.namespace, resource_name(owner)) for kind in ("RoleBinding", "Role")]
        old_rbac = _rbac_of(owner, previous)
        if old_rbac is not None:
            candidates += [(RBAC_API, kind, *old_rbac) for kind in ("RoleBinding", "Role")]
        for api_version, kind, namespace, name in dict.fromkeys(candidates):
            if (api_version, kind, namespace, name) in wanted:
                continue
            existing = await self.api.get(api_version, kind, namespace, name)
            if existing is not None and _owned_by(existing, owner):
                await self._delete(body, api_version, kind, namespace, name)

    async def _rings(self, owner: Owner, spec: ExporterSpec) -> list[RingReport]:
        """``/debug/ring`` of every ready pod that has an IP (pods of other resources excluded)."""
        selector = ",".join(f"{k}={v}" for k, v in selector_labels(owner).items())
        pods = await self.api.list("v1", "Pod", owner.namespace, selector)
        targets = []
        for pod in pods:
            status = pod.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
            )
            if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
                targets.append((str(pod["metadata"]["name"]), str(status["podIP"])))
        if not targets:
            return []
        timeout = aiohttp.ClientTimeout(total=self.options.ring_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return list(await asyncio.gather(
                *(self._ring(session, name, ip, spec.ports.metrics) for name, ip in sorted(targets))
            ))  # fmt: skip

    @staticmethod
    async def _ring(session: aiohttp.ClientSession, pod: str, ip: str, port: int) -> RingReport:
        host = f"[{ip}]" if ":" in ip else ip
        try:
            async with session.get(f"http://{host}:{port}/debug/ring") as response:
                if response.status != 200:
                    return RingReport(pod=pod, error=f"HTTP {response.status}")
                return ring_report(pod, await response.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return RingReport(pod=pod, error=str(exc) or type(exc).__name__)

    @staticmethod
    def _announce_problem(body: Mapping[str, Any], previous: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """A Warning Event when the Degraded condition changes to a (new) problem."""
        old: Mapping[str, Any] = next(
            (c for c in previous.get("conditions") or () if c.get("type") == "Degraded"), {}
        )
        new = next(c for c in status["conditions"] if c["type"] == "Degraded")
        if new["status"] == "True" and (old.get("reason"), old.get("message")) != (new["reason"], new["message"]):
            if new["reason"] != "ApplyFailed":  # already posted where it happened
                _event(body, "Warning", reason=new["reason"], message=new["message"])
        elif new["status"] == "False" and old.get("status") == "True":
            _event(body, "Normal", reason="Recovered", message=f"no longer degraded ({old.get('reason')})")


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _differs(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether merge-patching ``status`` onto ``previous`` would change any field it sets."""
    before = _without_nulls(previous)
    return any(before.get(key) != _without_nulls(value) for key, value in status.items())
