"""The ``dns`` resolver: the backend set is whatever a DNS name resolves to.

    exporters:
      loadbalancing:
        resolver:
          dns:
            hostname: tier2-headless.observability.svc.cluster.local
            port: "4317"          # optional; "" (default) leaves the port to the exporter
            interval: 5s          # how often to ask again
            timeout: 1s           # per resolution (all queries of one cycle together)
            server: 10.96.0.10:53 # Ringleader extension: ask this DNS server directly
            srv: false            # Ringleader extension: hostname names SRV records

Every ``interval`` the name is resolved again; a changed set of addresses is
handed to the data plane (sorted and de-duplicated, so record order and
round-robin rotation never cause a ring change). A failed, timed-out or empty
lookup keeps the last good set; it is counted in
``otelcol_loadbalancer_num_resolutions{resolver="dns",success="false"}``,
logged once per distinct reason and shown as :attr:`Resolver.last_error`.

Address (A/AAAA) mode, the upstream behaviour:

- without ``server`` the system resolver answers (``getaddrinfo``): /etc/hosts,
  search domains and nsswitch apply, like Go's resolver in the upstream exporter;
- with ``server`` that server is queried directly for A and AAAA records (UDP
  with EDNS0, TCP when truncated; :mod:`dataplane.resolvers.dnsclient`, on
  dnspython); the hostname is sent as written, no search domains. One record type
  failing (a server that answers A but refuses AAAA) does not fail the lookup
  when the other returned addresses, as in Go's resolver;
- endpoint strings are upstream's: ``10.0.0.1:4317`` and ``[fd00::1]:4317`` when
  ``port`` is set, ``10.0.0.1`` and ``[fd00::1]`` when it is not. The exporter
  adds its default port 4317 to both forms (``[fd00::1]`` -> ``[fd00::1]:4317``),
  so the ring places endpoints exactly where upstream does.

SRV mode (``srv: true``; ``hostname`` like ``_otlp._tcp.tier2.ns.svc.cluster.local``):

- without ``server`` the nameservers, ``search`` and ``ndots`` of /etc/resolv.conf
  are used (nameservers in order, the next one when a server fails);
- only the records with the lowest priority value that has at least one
  resolvable target are used; weights are ignored because the ring gives every
  endpoint an equal share of the hash space (a weighted ring would move traces
  between backends whenever a weight changes);
- each target is turned into addresses: from the additional section when the
  server sent the target's A/AAAA records there, else by A and AAAA queries to
  the same server. Endpoints are ``ip:port`` with the record's port. A target
  that does not exist (NXDOMAIN, no addresses) is left out; a target whose
  lookup *fails* fails the whole cycle so that a flaky server cannot shrink the ring;
- ``port`` must be empty: every record carries its own port.

``interval: 0`` and ``timeout: 0`` mean the defaults (5s, 1s), as upstream.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from ..config_model import DNSResolverConfig
from ..hostport import join_host_port, parse_host_port
from ..telemetry import Telemetry
from .base import PollingResolver, ResolverError
from .dnsclient import DNSClient, DNSError, Rcode, Response, RRType, SRVData
from .resolvconf import ResolvConf

log = logging.getLogger("ringleader.resolver.dns")

DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 1.0


def format_endpoint(address: str, port: str | int) -> str:
    """Upstream's endpoint string: IPv6 in brackets, ``:port`` only when a port is set."""
    if port != "":
        return join_host_port(address, port)
    return f"[{address}]" if ":" in address else address


def _parse_server(server: str) -> tuple[str, int]:
    try:
        return parse_host_port(server, 53)
    except ValueError as exc:
        raise ValueError(f"dns resolver: bad server {server!r}: {exc}") from None


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _owner_names(response: Response, name: str) -> set[str]:
    """``name`` and every name it is an alias of, following the CNAMEs in the answer."""
    names = {_norm(name)}
    # CNAME records may come in any order; repeat until the chain stops growing.
    while True:
        grown = {
            _norm(rr.value)
            for rr in response.answers
            if rr.rtype == RRType.CNAME and isinstance(rr.value, str) and _norm(rr.name) in names
        } - names
        if not grown:
            return names
        names |= grown


def _addresses_for(response: Response, name: str, rtype: int) -> list[str]:
    """The A or AAAA values for ``name`` in the answer section."""
    names = _owner_names(response, name)
    return [
        rr.value
        for rr in response.answers
        if rr.rtype == rtype and isinstance(rr.value, str) and _norm(rr.name) in names
    ]


def _hints(response: Response) -> dict[str, list[str]]:
    """Addresses the server volunteered in the additional section, by owner name."""
    hints: dict[str, list[str]] = {}
    for rr in response.additionals:
        if rr.rtype in (RRType.A, RRType.AAAA) and isinstance(rr.value, str):
            hints.setdefault(_norm(rr.name), []).append(rr.value)
    return hints


class DNSResolver(PollingResolver):
    """Polls a DNS name (A/AAAA, or SRV) every ``interval`` seconds."""

    kind = "dns"

    def __init__(self, telemetry: Telemetry, cfg: DNSResolverConfig, *, resolv_conf: str = "/etc/resolv.conf") -> None:
        if not cfg.hostname:
            raise ValueError("dns resolver: no hostname specified to resolve the backends")
        if cfg.srv and cfg.port:
            raise ValueError("dns resolver: 'port' cannot be used with 'srv: true' (SRV records carry ports)")
        super().__init__(telemetry, cfg.interval or DEFAULT_INTERVAL, cfg.timeout or DEFAULT_TIMEOUT)
        self.cfg = cfg
        self._server = _parse_server(cfg.server) if cfg.server else None
        self._resolv_conf = resolv_conf

    async def resolve_once(self) -> list[str]:
        if self.cfg.srv:
            return await self._resolve_srv()
        if self._server is not None:
            client = DNSClient(self._server, self.timeout)
            addresses = await self._lookup_addresses(client, self.cfg.hostname, missing_ok=False)
        else:
            addresses = await self._getaddrinfo(self.cfg.hostname)
        return [format_endpoint(a, self.cfg.port) for a in addresses]

    # -- A/AAAA -------------------------------------------------------------------------

    async def _getaddrinfo(self, hostname: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(hostname, None, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ResolverError(f"lookup {hostname}: {exc.strerror or exc}") from None
        return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]

    async def _lookup_addresses(self, client: DNSClient, name: str, *, missing_ok: bool) -> list[str]:
        """A and AAAA records of ``name`` from ``client``'s server, asked in parallel.

        Like Go's resolver (which upstream uses), one record type failing does not fail
        the lookup: a server that answers A but refuses AAAA (dnsmasq with a hosts file
        and no upstream does) still yields the A addresses. Raises
        :class:`ResolverError` when no addresses came back and a query failed, and
        (unless ``missing_ok``) when the name does not exist or has no addresses."""
        results = await asyncio.gather(
            client.query(name, RRType.A), client.query(name, RRType.AAAA), return_exceptions=True
        )
        addresses: list[str] = []
        errors: list[str] = []
        responses: list[Response] = []
        for rtype, result in zip((RRType.A, RRType.AAAA), results, strict=True):
            if isinstance(result, DNSError):
                errors.append(f"{rtype.name}: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                responses.append(result)
                addresses += _addresses_for(result, name, rtype)
        if addresses:
            if errors:
                log.debug("lookup %s: using the addresses found despite %s", name, "; ".join(errors))
            return addresses
        if errors:
            raise ResolverError(f"lookup {name}: {'; '.join(errors)}")
        if not missing_ok:
            if all(r.rcode == Rcode.NXDOMAIN for r in responses):
                raise ResolverError(f"lookup {name} on {client.address}: no such host (NXDOMAIN)")
            raise ResolverError(f"lookup {name} on {client.address}: no A or AAAA records")
        return addresses

    # -- SRV ----------------------------------------------------------------------------

    def _srv_plan(self) -> tuple[list[DNSClient], list[str]]:
        """Which servers to ask and which names to try, in order."""
        if self._server is not None:
            return [DNSClient(self._server, self.timeout)], [self.cfg.hostname.rstrip(".")]
        conf = ResolvConf.load(self._resolv_conf)
        if not conf.nameservers:
            raise ResolverError(f"SRV lookup needs a DNS server: no nameserver in {self._resolv_conf}")
        return [DNSClient(ns, self.timeout) for ns in conf.nameservers], conf.candidates(self.cfg.hostname)

    async def _query_srv(self, clients: Sequence[DNSClient], names: Sequence[str]) -> tuple[DNSClient, Response, str]:
        """The first name with SRV records, asked of the first server that answers."""
        errors: list[str] = []
        for client in clients:
            try:
                for name in names:
                    response = await client.query(name, RRType.SRV)
                    if any(rr.rtype == RRType.SRV for rr in response.answers):
                        return client, response, name
                # Every candidate name is absent: an answer, not a failure of this server.
                raise ResolverError(f"lookup {self.cfg.hostname} SRV: no such records (tried {', '.join(names)})")
            except DNSError as exc:
                errors.append(str(exc))  # try the next nameserver, as glibc does
        raise ResolverError(f"lookup {self.cfg.hostname} SRV: {'; '.join(errors)}")

    async def _resolve_srv(self) -> list[str]:
        clients, names = self._srv_plan()
        client, response, name = await self._query_srv(clients, names)
        owners = _owner_names(response, name)
        records = [
            rr.value
            for rr in response.answers
            if rr.rtype == RRType.SRV and isinstance(rr.value, SRVData) and _norm(rr.name) in owners
        ]
        # A target of "." means "this service is decidedly not available here" (RFC 2782).
        records = [r for r in records if r.target not in ("", ".")]
        hints = _hints(response)
        resolved: dict[str, list[str]] = {}
        for priority in sorted({r.priority for r in records}):
            group = [r for r in records if r.priority == priority]
            for target in sorted({_norm(r.target) for r in group} - resolved.keys()):
                resolved[target] = hints.get(target) or await self._lookup_addresses(client, target, missing_ok=True)
            endpoints = [format_endpoint(a, r.port) for r in group for a in resolved[_norm(r.target)]]
            if endpoints:
                return endpoints
            log.debug("dns resolver: no SRV target of priority %d for %s has addresses", priority, name)
        raise ResolverError(f"lookup {name} SRV: no target has an address")
