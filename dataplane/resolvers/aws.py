"""The ``aws_cloud_map`` resolver: backends registered in an AWS Cloud Map service.

    exporters:
      loadbalancing:
        resolver:
          aws_cloud_map:
            namespace: tier2.internal      # the namespace's HTTP name
            service_name: otel-sampler
            health_status: HEALTHY         # HEALTHY | UNHEALTHY | ALL | HEALTHY_OR_ELSE_ALL
            interval: 30s
            timeout: 5s
            port: 4317                     # else each instance's AWS_INSTANCE_PORT attribute

Every ``interval`` the resolver calls Cloud Map's ``DiscoverInstances`` and turns
each instance into ``<AWS_INSTANCE_IPV4>:<port>``, like upstream. Where upstream
would put a broken endpoint in the ring (``:4317`` for an instance without an
IPv4 attribute, ``10.0.0.1:`` without a port), Ringleader skips the instance and
logs how many it skipped and why; :attr:`AWSCloudMapResolver.skipped` holds the
counts of the last resolution.

**More than 100 instances.** Upstream sends no ``MaxResults``, so Cloud Map
returns at most 100 instances (contrib issue #29771). ``DiscoverInstances`` has
no ``NextToken`` (botocore's 2017-03-14 model, checked at 1.44), only
``MaxResults`` up to 1000, and its answer is randomised, so repeated calls
cannot be stitched into pages. Ringleader therefore asks for 1000 instances at
once; if the answer is full (it may be truncated), it lists the whole service
through the paginated control-plane calls ``ListInstances`` and
``GetInstancesHealthStatus`` and applies ``health_status`` itself, with
``DiscoverInstances``' semantics (no health check configured on the service: all
instances; ``HEALTHY_OR_ELSE_ALL``: the healthy ones, or all when none is).

**AWS configuration** comes from the standard AWS environment, as upstream uses
the SDK's default config: credentials chain, ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` / profile (default ``us-east-1``, as upstream),
``AWS_ENDPOINT_URL[_SERVICEDISCOVERY]``, ``AWS_MAX_ATTEMPTS``... The SDK sends
``DiscoverInstances`` to a ``data-`` prefixed host; when pointing at an emulator
by IP address, set ``AWS_DISABLE_HOST_PREFIX_INJECTION=true``.

boto3 is an optional extra (``pip install 'ringleader[aws]'``), imported when
the resolver is built. Its calls block, so each resolution runs in a worker
thread under ``timeout``; the SDK's own connect/read timeouts are set to the same
value so an abandoned thread does not linger.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config_model import AWSCloudMapResolverConfig
from ..hostport import join_host_port
from ..telemetry import Telemetry
from .base import PollingResolver, ResolverError

log = logging.getLogger("ringleader.resolver.aws")

BOTO3_MISSING = "the aws_cloud_map resolver needs boto3: pip install 'ringleader[aws]'"

DISCOVER_MAX_RESULTS = 1000
"""The largest ``MaxResults`` ``DiscoverInstances`` accepts (its default is 100)."""

_LIST_PAGE_SIZE = 100  # the largest MaxResults of ListInstances / GetInstancesHealthStatus
_DEFAULT_REGION = "us-east-1"  # upstream: config.WithDefaultRegion("us-east-1")
_IPV4_ATTR = "AWS_INSTANCE_IPV4"
_PORT_ATTR = "AWS_INSTANCE_PORT"


@dataclass(frozen=True)
class _ServiceRef:
    """Where the control-plane calls find the service (cached between resolutions)."""

    service_id: str  # an id, or an ARN for services in namespaces shared with this account
    has_health_check: bool


class AWSCloudMapResolver(PollingResolver):
    """Polls ``DiscoverInstances`` for one Cloud Map service."""

    kind: ClassVar[str] = "aws"

    def __init__(
        self,
        telemetry: Telemetry,
        cfg: AWSCloudMapResolverConfig,
        *,
        discover_max_results: int = DISCOVER_MAX_RESULTS,
    ) -> None:
        """``discover_max_results`` is the ``MaxResults`` sent to ``DiscoverInstances``
        (1..1000); a full answer switches to paginated listing. Lower it only to
        exercise that path."""
        super().__init__(telemetry, interval=cfg.interval, timeout=cfg.timeout)
        if not cfg.namespace:
            raise ResolverError("no Cloud Map namespace specified to resolve the backends")
        if not cfg.service_name:
            raise ResolverError("no Cloud Map service_name specified to resolve the backends")
        if not 1 <= discover_max_results <= DISCOVER_MAX_RESULTS:
            raise ValueError(f"discover_max_results must be in 1..{DISCOVER_MAX_RESULTS}")
        try:
            import boto3  # the optional extra, imported only when this resolver is configured
            from botocore.config import Config
        except ImportError as exc:
            raise ResolverError(BOTO3_MISSING) from exc
        self._cfg = cfg
        self._max_results = discover_max_results
        self._session = boto3.session.Session()  # sessions are not thread-safe: one of our own
        self._client_config = Config(connect_timeout=cfg.timeout, read_timeout=cfg.timeout)
        self._client: Any = None
        self._service_ref: _ServiceRef | None = None
        self.skipped: dict[str, int] = {}
        """Instances left out of the last resolution, by reason."""
        self._last_skip_report: tuple[tuple[str, int], ...] = ()

    async def resolve_once(self) -> list[str]:
        instances = await asyncio.to_thread(self._fetch_instances)
        return self._endpoints_of(instances)

    # -- the blocking part, in a worker thread -------------------------------------------
    def _get_client(self) -> Any:
        if self._client is None:
            region = self._session.region_name or os.environ.get("AWS_REGION") or _DEFAULT_REGION
            self._client = self._session.client("servicediscovery", region_name=region, config=self._client_config)
        return self._client

    def _fetch_instances(self) -> list[Mapping[str, Any]]:
        """The instances matching ``health_status``, each with its ``Attributes``."""
        client = self._get_client()
        params: dict[str, Any] = {
            "NamespaceName": self._cfg.namespace,
            "ServiceName": self._cfg.service_name,
            "HealthStatus": self._cfg.health_status,
            "MaxResults": self._max_results,
        }
        if self._cfg.owner_account:
            params["OwnerAccount"] = self._cfg.owner_account
        instances: list[Mapping[str, Any]] = client.discover_instances(**params)["Instances"]
        if len(instances) < self._max_results:
            log.debug("aws resolver: DiscoverInstances returned %d instance(s)", len(instances))
            return instances
        log.debug("aws resolver: DiscoverInstances answer is full (%d), listing the whole service", len(instances))
        try:
            return self._list_all_instances(client)
        except client.exceptions.ServiceNotFound:
            self._service_ref = None  # the service was re-created: look it up again next time
            raise

    def _list_all_instances(self, client: Any) -> list[Mapping[str, Any]]:
        ref = self._service_ref or self._find_service(client)
        self._service_ref = ref
        instances = [
            inst
            for page in client.get_paginator("list_instances").paginate(
                ServiceId=ref.service_id, PaginationConfig={"PageSize": _LIST_PAGE_SIZE}
            )
            for inst in page["Instances"]
        ]
        mode = self._cfg.health_status
        if mode == "ALL" or not ref.has_health_check:
            # DiscoverInstances ignores HealthStatus for services without a health check.
            return instances
        status = dict(self._health_statuses(client, ref.service_id))
        healthy = [i for i in instances if status.get(i["Id"]) == "HEALTHY"]
        if mode == "HEALTHY":
            return healthy
        if mode == "UNHEALTHY":
            return [i for i in instances if status.get(i["Id"]) == "UNHEALTHY"]
        return healthy or instances  # HEALTHY_OR_ELSE_ALL: fail open

    @staticmethod
    def _health_statuses(client: Any, service_id: str) -> Iterator[tuple[str, str]]:
        # botocore defines no paginator for GetInstancesHealthStatus: follow NextToken by hand.
        params: dict[str, Any] = {"ServiceId": service_id, "MaxResults": _LIST_PAGE_SIZE}
        while True:
            page = client.get_instances_health_status(**params)
            yield from page.get("Status", {}).items()
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token

    def _find_service(self, client: Any) -> _ServiceRef:
        """Map (namespace HTTP name, service name[, owner account]) to a service id."""
        namespace, owner = self._cfg.namespace, self._cfg.owner_account
        namespaces = [
            ns
            for page in client.get_paginator("list_namespaces").paginate(
                Filters=[{"Name": "HTTP_NAME", "Values": [namespace], "Condition": "EQ"}]
            )
            for ns in page["Namespaces"]
            # Filter again: not every implementation honours Filters.
            if _http_name(ns) == namespace and (not owner or ns.get("ResourceOwner", owner) == owner)
        ]
        for ns in namespaces:
            shared = bool(owner) and "Arn" in ns
            ns_ref = ns["Arn"] if shared else ns["Id"]
            for page in client.get_paginator("list_services").paginate(
                Filters=[{"Name": "NAMESPACE_ID", "Values": [ns_ref], "Condition": "EQ"}]
            ):
                for summary in page["Services"]:
                    if summary["Name"] != self._cfg.service_name:
                        continue
                    service_ref = summary["Arn"] if shared and "Arn" in summary else summary["Id"]
                    service = client.get_service(Id=service_ref)["Service"]
                    # ServiceSummary carries no namespace: check it, in case Filters was ignored.
                    if service.get("NamespaceId") != ns["Id"]:
                        continue
                    checked = service.get("HealthCheckConfig") or service.get("HealthCheckCustomConfig")
                    return _ServiceRef(service_ref, has_health_check=bool(checked))
        raise ResolverError(f"Cloud Map service {self._cfg.service_name!r} not found in namespace {namespace!r}")

    # -- back on the event loop --------------------------------------------------------
    def _endpoints_of(self, instances: Sequence[Mapping[str, Any]]) -> list[str]:
        endpoints: list[str] = []
        skipped: Counter[str] = Counter()
        for inst in instances:
            attrs: Mapping[str, str] = inst.get("Attributes") or {}
            ip = attrs.get(_IPV4_ATTR, "")
            if not ip:
                skipped[f"no {_IPV4_ATTR} attribute"] += 1
                continue
            if self._cfg.port is not None:
                port = str(self._cfg.port)
            else:
                port = attrs.get(_PORT_ATTR, "")
                if not port:
                    skipped[f"no {_PORT_ATTR} attribute and no port configured"] += 1
                    continue
                if not port.isdigit() or not 0 < int(port) < 65536:
                    skipped[f"invalid {_PORT_ATTR} attribute"] += 1
                    continue
            endpoints.append(join_host_port(ip, port))
        self._report_skipped(skipped, len(instances))
        if instances and not endpoints:
            raise ResolverError(f"{len(instances)} instance(s) found but none usable: {_describe(skipped)}")
        return endpoints

    def _report_skipped(self, skipped: Counter[str], found: int) -> None:
        self.skipped = dict(skipped)
        report = tuple(sorted(skipped.items()))
        # Log when the picture changes, not every interval.
        if report and report != self._last_skip_report:
            log.warning(
                "aws resolver: skipped %d of %d instance(s) of %s/%s: %s",
                skipped.total(),
                found,
                self._cfg.namespace,
                self._cfg.service_name,
                _describe(skipped),
            )
        self._last_skip_report = report


def _http_name(namespace: Mapping[str, Any]) -> str:
    http_name: str = namespace.get("Properties", {}).get("HttpProperties", {}).get("HttpName", "")
    return http_name or str(namespace.get("Name", ""))


def _describe(skipped: Mapping[str, int]) -> str:
    return ", ".join(f"{count} with {reason}" for reason, count in sorted(skipped.items()))
