"""Asking one DNS server for A, AAAA and SRV records, with dnspython.

The ``dns`` resolver needs two things the system resolver (``getaddrinfo``)
cannot give it: asking one *chosen* server (``server: 10.0.0.10:53``) and SRV
records. dnspython, the ecosystem's standard DNS library, does the protocol::

    client = DNSClient(("127.0.0.1", 5353), timeout=1.0)
    answer = await client.query("_otlp._tcp.tier2.test", RRType.SRV)
    answer.rcode            # Rcode.NOERROR or Rcode.NXDOMAIN
    answer.answers          # list[Record]; .value is str (A, AAAA, CNAME) or SRVData
    answer.additionals      # the server's hints, e.g. the A records of SRV targets

- one recursive query with EDNS0 advertising a 1232-byte UDP payload (the DNS
  flag day value), so most SRV answers fit in UDP; over UDP first, again over TCP
  when the answer comes back truncated (``dns.asyncquery.udp_with_fallback``);
  dnspython checks that the response answers this query (id, question);
- a connected UDP socket, so an unreachable server fails at once (ICMP) and the
  caller moves on to the next nameserver; ``timeout`` bounds each exchange;
- SERVFAIL, REFUSED, FORMERR, NOTIMP, timeouts, network errors and malformed
  packets raise :class:`DNSError`. NXDOMAIN is not an error here: it is a valid,
  empty answer and the caller decides what "no such name" means.

Records are handed over as small plain objects (:class:`Record`), so the
resolver's logic (CNAME chains, SRV priorities, additional-section hints) does
not depend on dnspython's types.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from dataclasses import dataclass, field

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.inet
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from ..hostport import join_host_port

__all__ = ["DNSClient", "DNSError", "RRType", "Rcode", "Record", "Response", "SRVData"]

EDNS_PAYLOAD = 1232


class DNSError(Exception):
    """The query failed: no usable answer (timeout, refusal, server failure, bad packet)."""


class RRType(enum.IntEnum):
    A = dns.rdatatype.A
    CNAME = dns.rdatatype.CNAME
    AAAA = dns.rdatatype.AAAA
    SRV = dns.rdatatype.SRV


class Rcode(enum.IntEnum):
    NOERROR = dns.rcode.NOERROR
    FORMERR = dns.rcode.FORMERR
    SERVFAIL = dns.rcode.SERVFAIL
    NXDOMAIN = dns.rcode.NXDOMAIN
    NOTIMP = dns.rcode.NOTIMP
    REFUSED = dns.rcode.REFUSED


@dataclass(frozen=True)
class SRVData:
    priority: int
    weight: int
    port: int
    target: str  # without the trailing dot; "" for the root (".": no service)


@dataclass(frozen=True)
class Record:
    """One record. ``value`` is an address (A, AAAA), a name (CNAME) or :class:`SRVData`."""

    name: str
    rtype: int
    value: str | SRVData


@dataclass
class Response:
    rcode: int
    answers: list[Record] = field(default_factory=list)
    additionals: list[Record] = field(default_factory=list)


async def _address_of(host: str) -> str:
    """``host`` as an IP address: a server given by name is looked up once per query."""
    try:
        dns.inet.af_for_address(host)
        return host
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0])


def _name(value: object) -> str:
    return str(value).rstrip(".")


def _records(sections: list[dns.rrset.RRset]) -> list[Record]:
    out: list[Record] = []
    for rrset in sections:
        owner = _name(rrset.name)
        for rdata in rrset:
            value: str | SRVData
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                value = str(rdata.address)
            elif rrset.rdtype == dns.rdatatype.CNAME:
                value = _name(rdata.target)
            elif rrset.rdtype == dns.rdatatype.SRV:
                value = SRVData(int(rdata.priority), int(rdata.weight), int(rdata.port), _name(rdata.target))
            else:
                continue
            out.append(Record(owner, int(rrset.rdtype), value))
    return out


class DNSClient:
    """Queries one DNS server: UDP first, TCP when the answer is truncated."""

    def __init__(self, server: tuple[str, int], timeout: float) -> None:
        self.server = server
        self.timeout = timeout

    @property
    def address(self) -> str:
        """The server as ``host:port`` (``[v6]:port``), for messages."""
        return join_host_port(*self.server)

    def __repr__(self) -> str:
        return f"DNSClient({self.address})"

    async def query(self, name: str, rtype: RRType) -> Response:
        """Ask for ``name``/``rtype``. Returns NOERROR and NXDOMAIN responses;
        raises :class:`DNSError` for everything else."""
        where = self.address
        try:
            query = dns.message.make_query(name, dns.rdatatype.RdataType(rtype), use_edns=0, payload=EDNS_PAYLOAD)
            host = await _address_of(self.server[0])
            port = self.server[1]
            # A connected UDP socket, as glibc and Go use: a server with nobody listening answers
            # ICMP "port unreachable", which fails the query at once instead of at the timeout.
            backend = dns.asyncbackend.get_backend("asyncio")
            async with await backend.make_socket(  # type: ignore[no-untyped-call]
                dns.inet.af_for_address(host), socket.SOCK_DGRAM, 0, None, (host, port)
            ) as udp_sock:
                response, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, timeout=self.timeout, port=port, udp_sock=udp_sock
                )
        except dns.exception.Timeout:
            raise DNSError(f"{where}: no answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise DNSError(f"{where}: {exc.strerror or exc}") from None
        except dns.exception.DNSException as exc:
            raise DNSError(f"{where}: {exc}") from None
        rcode = int(response.rcode())
        if rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            raise DNSError(f"{where}: {dns.rcode.to_text(dns.rcode.Rcode(rcode))} for {name} {rtype.name}")
        return Response(rcode, _records(response.answer), _records(response.additional))
