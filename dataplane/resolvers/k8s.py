"""The ``k8s`` resolver: the ready pods of a Kubernetes Service, from its EndpointSlices.

    resolver:
      k8s:
        service: tier2-sampler.observability   # name, or name.namespace
        ports: [4317]                           # each ready address x each port
        timeout: 1m                             # bound on the initial list and each request
        return_hostnames: false                 # <hostname>.<service>.<namespace>:<port> instead of IPs
        debounce: 200ms                         # Ringleader extension

It lists the ``discovery.k8s.io/v1`` EndpointSlices labelled
``kubernetes.io/service-name=<service>`` in the namespace, then watches them
from the list's resourceVersion (with bookmarks), merging every slice of the
Service into one set. Which endpoints count:

- ``conditions.ready == false``: left out (as upstream since #50444);
- ``conditions.terminating == true``: left out at once, even when ``ready`` or
  ``serving`` is still true (a Service with ``publishNotReadyAddresses``) so a
  tier-2 pod in its preStop drain stops receiving new data (upstream #50436);
- ``conditions.ready`` unset: ready, per the API contract ("nil should be
  interpreted as true"); ``serving`` is not consulted otherwise;
- with ``return_hostnames``, endpoints without a ``hostname`` are left out
  (as the newest upstream does) and a warning names how many.

Changes are debounced: the set is published once no slice changed for
``debounce`` seconds, and at the latest ``5 x debounce`` after the first
unpublished change, so a rollout that rewrites slices many times per second
gives a few ring rebuilds instead of dozens. ``debounce: 0`` publishes on every
event. The initial list (and a re-list) is published at once.

Failures never stop the resolver and never empty the ring: a denied list or
watch (RBAC), an unreachable API server or a broken stream is logged once per
distinct reason as one line, stored in ``last_error`` (``/readyz``), counted in
``otelcol_loadbalancer_num_resolutions{resolver="k8s",success="false"}`` and
retried with exponential backoff (1s doubling to 30s, with jitter); the last
good set stays in use. A watch whose connection breaks resumes at once from the
last resourceVersion seen (not a failure unless that fails too); an expired
resourceVersion (410 Gone) triggers a fresh list. A Service whose
EndpointSlices list no ready endpoint publishes the empty set: that is the
truth, and the data plane refuses data with ``no_backends`` until pods return.

Credentials: see :mod:`dataplane.resolvers.kubeclient` (kubeconfig or the pod's
service account). The RBAC needed is get/list/watch on ``endpointslices`` in
API group ``discovery.k8s.io`` in the Service's namespace; docs/resolvers/k8s.md
has the Role and RoleBinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backoff import Backoff
from ..config_model import K8sResolverConfig
from ..hostport import join_host_port
from ..telemetry import Telemetry
from .base import Resolver
from .kubeclient import SERVICEACCOUNT_DIR, KubeAPIError, KubeClient, KubeConfigError, WatchInterrupted

log = logging.getLogger("ringleader.resolver.k8s")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# A burst that never pauses is still published at most this many debounce periods late.
MAX_DEBOUNCE_PERIODS = 5


def parse_service(service: str, serviceaccount_dir: str = SERVICEACCOUNT_DIR) -> tuple[str, str]:
    """``name`` or ``name.namespace`` -> (name, namespace).

    Without a namespace, the pod's own namespace (service-account ``namespace``
    file) is used, else ``default``. A namespace never contains a dot, so
    ``name.ns.svc.cluster.local`` is accepted as ``name.ns`` (upstream would
    look for a namespace called ``ns.svc.cluster.local`` and find nothing).
    """
    name, _, rest = service.strip().partition(".")
    if not name:
        raise ValueError(f"k8s resolver: invalid service {service!r}: expected name or name.namespace")
    if rest:
        return name, rest.split(".", 1)[0]
    try:
        namespace = (Path(serviceaccount_dir) / "namespace").read_text().strip()
    except OSError:
        namespace = ""
    return name, namespace or "default"


def endpoint_counts(endpoint: Mapping[str, Any]) -> bool:
    """Whether one EndpointSlice endpoint belongs in the ring (rules in the module docstring)."""
    conditions = endpoint.get("conditions") or {}
    if conditions.get("ready") is False:
        return False
    return conditions.get("terminating") is not True


@dataclass(frozen=True)
class SliceView:
    """What one EndpointSlice contributes: hosts (IPs or FQDNs) and those left out."""

    hosts: frozenset[str]
    missing_hostname: int = 0

    @classmethod
    def of(cls, obj: Mapping[str, Any], return_hostnames: bool, name: str, namespace: str) -> SliceView:
        hosts: set[str] = set()
        missing = 0
        for endpoint in obj.get("endpoints") or ():
            if not endpoint_counts(endpoint):
                continue
            if return_hostnames:
                hostname = endpoint.get("hostname")
                if hostname:
                    hosts.add(f"{hostname}.{name}.{namespace}")
                else:
                    missing += 1
            else:
                hosts.update(str(a) for a in endpoint.get("addresses") or ())
        return cls(frozenset(hosts), missing)


class K8sResolver(Resolver):
    """Watch a Service's EndpointSlices and publish its ready endpoints.

    ``kubeconfig``, ``serviceaccount_dir`` and ``environ`` override where the
    credentials and the default namespace come from (embedding, tests);
    ``watch_timeout`` is how long the API server keeps one watch open before we
    re-watch (default: random 5 to 10 minutes, like client-go).
    """

    kind = "k8s"

    def __init__(
        self,
        telemetry: Telemetry,
        cfg: K8sResolverConfig,
        *,
        kubeconfig: str | None = None,
        serviceaccount_dir: str = SERVICEACCOUNT_DIR,
        environ: Mapping[str, str] | None = None,
        watch_timeout: int | None = None,
    ) -> None:
        super().__init__(telemetry)
        self.cfg = cfg
        self.name, self.namespace = parse_service(cfg.service, serviceaccount_dir)
        self._kubeconfig = kubeconfig
        self._serviceaccount_dir = serviceaccount_dir
        self._environ = environ
        self._watch_timeout = watch_timeout
        self._client: KubeClient | None = None
        self._slices: dict[str, SliceView] = {}
        self._resource_version: str | None = None  # None: the next step is a (re-)list
        self._missing_hostnames = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._dirty_since: float | None = None
        self._backoff = Backoff(initial=1.0, maximum=30.0)
        self._path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        self._params = {"labelSelector": f"{SERVICE_NAME_LABEL}={self.name}"}

    @property
    def _timeout(self) -> float | None:
        return self.cfg.timeout or None

    # -- lifecycle ----------------------------------------------------------------------------
    async def _first_resolution(self) -> None:
        try:
            await self._list()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: start anyway, _run retries
            self._record_failure(self._describe(exc))

    async def _run(self) -> None:
        backoff = self._backoff
        try:
            if self.last_error is not None:  # the first attempt in start() failed: wait before the next
                await asyncio.sleep(backoff.next())
            while True:
                try:
                    if self._resource_version is None:
                        await self._list()
                        backoff.reset()
                    started = asyncio.get_running_loop().time()
                    try:
                        delivered = await self._watch()
                    except WatchInterrupted as exc:
                        # Not a failure yet: the re-watch right after decides.
                        log.info("k8s resolver: %s; resuming from resourceVersion %s", exc, self._resource_version)
                        delivered = False
                    if not delivered and asyncio.get_running_loop().time() - started < 1.0:
                        # A watch that ends or breaks at once must not make us spin.
                        await asyncio.sleep(1.0)
                except asyncio.CancelledError:
                    raise
                except KubeAPIError as exc:
                    if exc.expired:
                        log.info(
                            "k8s resolver: resourceVersion %s expired (%s); re-listing", self._resource_version, exc
                        )
                        self._resource_version = None
                        continue
                    self._record_failure(self._describe(exc))
                    await asyncio.sleep(backoff.next())
                except Exception as exc:
                    # Unexpected (malformed object, credentials vanished...): resync from a list.
                    self._resource_version = None
                    self._record_failure(self._describe(exc))
                    await asyncio.sleep(backoff.next())
        finally:
            self._cancel_flush()
            if self._client is not None:
                await self._client.close()
                self._client = None

    async def stop(self) -> None:
        await super().stop()
        self._cancel_flush()
        if self._client is not None:  # stopped before _run ever started
            await self._client.close()
            self._client = None

    # -- API ----------------------------------------------------------------------------------
    def _get_client(self) -> KubeClient:
        if self._client is None:
            self._client = KubeClient.from_environment(self._kubeconfig, self._serviceaccount_dir, self._environ)
            log.info(
                "k8s resolver: watching EndpointSlices of service %s in namespace %s at %s (%s)",
                self.name,
                self.namespace,
                self._client.host,
                self._client.source,
            )
        return self._client

    async def _list(self) -> None:
        client = self._get_client()
        try:
            items, rv = await asyncio.wait_for(client.list(self._path, self._params, self._timeout), self._timeout)
        except TimeoutError:
            raise KubeAPIError(f"list endpointslices: timed out after {self.cfg.timeout:g}s") from None
        self._slices = {
            str(item["metadata"]["name"]): SliceView.of(item, self.cfg.return_hostnames, self.name, self.namespace)
            for item in items
        }
        self._resource_version = rv
        self._flush()

    async def _watch(self) -> bool:
        """One watch stream until the server ends it; True if it delivered anything."""
        assert self._resource_version is not None
        client = self._get_client()
        server_timeout = self._watch_timeout or random.randint(300, 600)
        delivered = False
        stream = client.watch(self._path, self._params, self._resource_version, self._timeout, server_timeout)
        async with contextlib.aclosing(stream):
            async for event in stream:
                delivered |= self._apply(event)
        return delivered

    def _apply(self, event: Mapping[str, Any]) -> bool:
        """Fold one watch event into the view; True if it was a real event."""
        kind = event.get("type")
        if kind == "OPEN":
            self._backoff.reset()
            if self.last_error is not None:
                self._record_success()
            return False
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if kind in ("ADDED", "MODIFIED"):
            self._slices[str(meta["name"])] = SliceView.of(obj, self.cfg.return_hostnames, self.name, self.namespace)
            self._schedule_flush()
        elif kind == "DELETED":
            self._slices.pop(str(meta["name"]), None)
            self._schedule_flush()
        # BOOKMARK only moves the resourceVersion forward.
        if meta.get("resourceVersion"):
            self._resource_version = str(meta["resourceVersion"])
        return True

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, KubeConfigError):
            return str(exc)
        text = " ".join((str(exc) or type(exc).__name__).split())  # one line
        if isinstance(exc, KubeAPIError) and exc.status == 403:
            text += (
                f" (the resolver needs get, list and watch on endpointslices.discovery.k8s.io "
                f"in namespace {self.namespace}; see docs/resolvers/k8s.md)"
            )
        if not isinstance(exc, KubeAPIError):
            text = f"service {self.name}.{self.namespace}: {type(exc).__name__}: {text}"
        return text

    # -- publishing ---------------------------------------------------------------------------
    def current_endpoints(self) -> list[str]:
        """The set the watched slices describe right now (published after the debounce)."""
        hosts: set[str] = set()
        for view in self._slices.values():
            hosts |= view.hosts
        if not self.cfg.ports:
            return sorted(hosts)
        return sorted(join_host_port(h, p) for h in hosts for p in self.cfg.ports)

    def _schedule_flush(self) -> None:
        if self.cfg.debounce <= 0:
            self._flush()
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._dirty_since is None:
            self._dirty_since = now
        deadline = min(now + self.cfg.debounce, self._dirty_since + MAX_DEBOUNCE_PERIODS * self.cfg.debounce)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush_timer = loop.call_at(deadline, self._flush)

    def _cancel_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._dirty_since = None

    def _flush(self) -> None:
        self._cancel_flush()
        missing = sum(v.missing_hostname for v in self._slices.values())
        if missing and missing != self._missing_hostnames:
            log.warning(
                "k8s resolver: %d ready endpoint(s) of service %s.%s have no hostname and are "
                "left out (return_hostnames needs pods with a hostname, e.g. a StatefulSet "
                "behind a headless Service)",
                missing,
                self.name,
                self.namespace,
            )
        self._missing_hostnames = missing
        self._record_success()
        self._publish(self.current_endpoints())
