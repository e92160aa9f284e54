"""A small DNS stub client: just enough of RFC 1035 for the ``dns`` resolver.

The ``dns`` resolver needs two things the system resolver (``getaddrinfo``)
cannot give it: asking one *chosen* server (``server: 10.0.0.10:53``) and SRV
records. This module does both with the standard library only:

    client = DNSClient(("127.0.0.1", 5353), timeout=1.0)
    answer = await client.query("_otlp._tcp.tier2.test", RRType.SRV)
    answer.rcode            # Rcode.NOERROR or Rcode.NXDOMAIN
    answer.answers          # list[ResourceRecord]; .value is str (A, AAAA, CNAME) or SRVData
    answer.additionals      # the server's hints, e.g. the A records of SRV targets

What it does:

- builds one recursive query (RD set) with an EDNS0 OPT record advertising a
  1232-byte UDP payload (the DNS flag day value), so most SRV answers fit in UDP;
- sends it over UDP from a *connected* socket (the kernel drops datagrams from
  any other address), retransmits once halfway through the timeout, and repeats
  the query over TCP when the answer comes back truncated (TC bit);
- checks that the response answers *this* query: QR bit, message id, question
  name and type; anything else is ignored (UDP) or an error (TCP);
- parses A, AAAA, CNAME and SRV records, following name compression pointers
  (only backwards, with a jump limit, so a hostile packet cannot loop us);
- turns SERVFAIL, REFUSED, FORMERR, NOTIMP and malformed packets into
  :class:`DNSError`. NXDOMAIN is not an error here: it is a valid, empty answer
  and the caller decides what "no such name" means.

:class:`ResolvConf` reads the nameservers, ``search`` list and ``ndots`` from
``/etc/resolv.conf`` for callers that have no server configured, the way glibc
and Go's resolver do. Nameservers there always use port 53.

Not implemented (not needed here): DNSSEC, DNS over TLS/HTTPS, caching, and
record types other than the four above (they are parsed past and kept as raw bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DNSClient",
    "DNSError",
    "RRType",
    "Rcode",
    "ResolvConf",
    "ResourceRecord",
    "Response",
    "SRVData",
    "build_query",
    "parse_response",
    "parse_server",
]

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_SRV_FIXED = struct.Struct("!HHH")
_EDNS_PAYLOAD = 1232
_MAX_POINTER_JUMPS = 64
_CLASS_IN = 1
_TYPE_OPT = 41

_FLAG_QR = 0x8000
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100


class RRType(enum.IntEnum):
    A = 1
    CNAME = 5
    AAAA = 28
    SRV = 33


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


class DNSError(Exception):
    """The query failed: no usable answer (timeout, refusal, server failure, bad packet)."""


@dataclass(frozen=True)
class SRVData:
    """The data of one SRV record (RFC 2782). ``target`` has no trailing dot."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class ResourceRecord:
    """One record. ``value`` is an address string (A, AAAA), a name (CNAME),
    :class:`SRVData` (SRV) or the raw rdata bytes (anything else)."""

    name: str
    rtype: int
    ttl: int
    value: str | SRVData | bytes


@dataclass(frozen=True)
class Response:
    id: int
    rcode: int
    truncated: bool
    question: tuple[str, int] | None
    answers: list[ResourceRecord] = field(default_factory=list)
    additionals: list[ResourceRecord] = field(default_factory=list)


# -- names --------------------------------------------------------------------------------


def _normalize(name: str) -> str:
    """Compare names the DNS way: case-insensitive, trailing dot optional."""
    return name.rstrip(".").lower()


def _encode_name(name: str) -> bytes:
    out = bytearray()
    stripped = name.rstrip(".")
    if stripped:
        for label in stripped.split("."):
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            if not 0 < len(raw) < 64:
                raise DNSError(f"invalid DNS name {name!r}: label length {len(raw)}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > 255:
        raise DNSError(f"invalid DNS name {name!r}: longer than 255 bytes")
    return bytes(out)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """Decode a possibly compressed name at ``offset``; returns (name, offset after it)."""
    labels: list[str] = []
    end: int | None = None  # where parsing resumes once the first pointer is followed
    jumps = 0
    pos = offset
    while True:
        if pos >= len(data):
            raise DNSError("malformed response: name runs past the end")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DNSError("malformed response: truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            # Pointers must point backwards: together with the jump limit this
            # rules out loops in crafted packets.
            if target >= pos or jumps >= _MAX_POINTER_JUMPS:
                raise DNSError("malformed response: bad compression pointer")
            if end is None:
                end = pos + 2
            jumps += 1
            pos = target
            continue
        if length & 0xC0:
            raise DNSError("malformed response: unsupported label type")
        pos += 1
        if length == 0:
            break
        if pos + length > len(data):
            raise DNSError("malformed response: label runs past the end")
        labels.append(data[pos : pos + length].decode("ascii", errors="replace"))
        pos += length
    return ".".join(labels), (end if end is not None else pos)


# -- messages ----------------------------------------------------------------------------


def build_query(name: str, rtype: int, query_id: int) -> bytes:
    """A recursive query for ``name``/``rtype`` (class IN) with an EDNS0 OPT record."""
    header = _HEADER.pack(query_id, _FLAG_RD, 1, 0, 0, 1)
    question = _encode_name(name) + struct.pack("!HH", rtype, _CLASS_IN)
    # OPT pseudo-record: root name, type OPT, "class" = UDP payload size, ttl = 0, no options.
    opt = b"\x00" + struct.pack("!HHIH", _TYPE_OPT, _EDNS_PAYLOAD, 0, 0)
    return header + question + opt


def _parse_rdata(data: bytes, rtype: int, start: int, length: int) -> str | SRVData | bytes:
    rdata = data[start : start + length]
    if rtype == RRType.A:
        if length != 4:
            raise DNSError(f"malformed response: A record of length {length}")
        return str(ipaddress.IPv4Address(rdata))
    if rtype == RRType.AAAA:
        if length != 16:
            raise DNSError(f"malformed response: AAAA record of length {length}")
        return str(ipaddress.IPv6Address(rdata))
    if rtype == RRType.CNAME:
        return _read_name(data, start)[0]
    if rtype == RRType.SRV:
        if length < _SRV_FIXED.size + 1:
            raise DNSError("malformed response: SRV record too short")
        priority, weight, port = _SRV_FIXED.unpack_from(data, start)
        target = _read_name(data, start + _SRV_FIXED.size)[0]
        return SRVData(priority, weight, port, target)
    return rdata


def _read_records(data: bytes, pos: int, count: int) -> tuple[list[ResourceRecord], int]:
    records: list[ResourceRecord] = []
    for _ in range(count):
        name, pos = _read_name(data, pos)
        if pos + _RR_FIXED.size > len(data):
            raise DNSError("malformed response: record header runs past the end")
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
        pos += _RR_FIXED.size
        if pos + rdlength > len(data):
            raise DNSError("malformed response: record data runs past the end")
        # OPT (EDNS0) is a pseudo-record, and only class IN data is meaningful to us.
        if rclass == _CLASS_IN and rtype != _TYPE_OPT:
            records.append(ResourceRecord(name, rtype, ttl, _parse_rdata(data, rtype, pos, rdlength)))
        pos += rdlength
    return records, pos


def parse_response(data: bytes) -> Response:
    """Parse a whole DNS message. Raises :class:`DNSError` if it is malformed."""
    if len(data) < _HEADER.size:
        raise DNSError("malformed response: shorter than a DNS header")
    msg_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if not flags & _FLAG_QR:
        raise DNSError("malformed response: not a response (QR bit clear)")
    pos = _HEADER.size
    question: tuple[str, int] | None = None
    for _ in range(qdcount):
        qname, pos = _read_name(data, pos)
        if pos + 4 > len(data):
            raise DNSError("malformed response: question runs past the end")
        (qtype,) = struct.unpack_from("!H", data, pos)
        pos += 4
        if question is None:
            question = (qname, qtype)
    truncated = bool(flags & _FLAG_TC)
    rcode = flags & 0x000F
    try:
        answers, pos = _read_records(data, pos, ancount)
        _, pos = _read_records(data, pos, nscount)
        additionals, pos = _read_records(data, pos, arcount)
    except DNSError:
        if not truncated:
            raise
        # A truncated UDP answer may end mid-record; the caller retries over TCP anyway.
        answers, additionals = [], []
    return Response(msg_id, rcode, truncated, question, answers, additionals)


# -- transport ---------------------------------------------------------------------------


def parse_server(server: str, default_port: int = 53) -> tuple[str, int]:
    """``"10.0.0.10:53"``, ``"[fd00::10]:53"``, ``"10.0.0.10"``, ``"fd00::10"`` -> (host, port)."""
    text = server.strip()
    if not text:
        raise ValueError("empty DNS server address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid DNS server address {server!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""  # a bare IPv4/IPv6 address or host name
    if not host:
        raise ValueError(f"invalid DNS server address {server!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"invalid port in DNS server address {server!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in DNS server address {server!r}")
    return host, port


def _format_server(server: tuple[str, int]) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _UDPExchange(asyncio.DatagramProtocol):
    """Waits for the one datagram that answers our query; ignores strays."""

    def __init__(self, query_id: int, name: str, rtype: int) -> None:
        self._query_id = query_id
        self._question = (_normalize(name), rtype)
        self.result: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.result.done():
            return
        try:
            response = parse_response(data)
        except DNSError:
            return  # garbage is not an answer; keep waiting for the real one
        if response.id != self._query_id or not _matches(response, self._question):
            return
        self.result.set_result(response)

    def error_received(self, exc: Exception) -> None:
        # ICMP port/host unreachable on a connected socket: nobody is listening.
        if not self.result.done():
            self.result.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.result.done():
            self.result.set_exception(exc or DNSError("socket closed"))


def _matches(response: Response, question: tuple[str, int]) -> bool:
    if response.question is None:
        return False
    return (_normalize(response.question[0]), response.question[1]) == question


class DNSClient:
    """Queries one DNS server: UDP first, TCP when the answer is truncated."""

    def __init__(self, server: tuple[str, int], timeout: float) -> None:
        self.server = server
        self.timeout = timeout

    @property
    def address(self) -> str:
        """The server as ``host:port`` (``[v6]:port``), for messages."""
        return _format_server(self.server)

    def __repr__(self) -> str:
        return f"DNSClient({self.address})"

    async def query(self, name: str, rtype: int) -> Response:
        """Ask for ``name``/``rtype``. Returns NOERROR and NXDOMAIN responses;
        raises :class:`DNSError` for everything else."""
        query_id = secrets.randbelow(1 << 16)
        packet = build_query(name, rtype, query_id)
        where = self.address
        try:
            response = await self._udp(packet, query_id, name, rtype)
            if response.truncated:
                response = await self._tcp(packet, query_id, name, rtype)
        except DNSError as exc:
            raise DNSError(f"{where}: {exc}") from None
        except TimeoutError:
            raise DNSError(f"{where}: no answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise DNSError(f"{where}: {exc.strerror or exc}") from None
        if response.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
            try:
                rcode_name = Rcode(response.rcode).name
            except ValueError:
                rcode_name = f"rcode {response.rcode}"
            raise DNSError(f"{where}: {rcode_name} for {name} {_type_name(rtype)}")
        return response

    async def _udp(self, packet: bytes, query_id: int, name: str, rtype: int) -> Response:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _UDPExchange(query_id, name, rtype), remote_addr=self.server
        )
        try:
            # Send twice at most: a lost datagram costs half the timeout, not all of it.
            half = self.timeout / 2
            transport.sendto(packet)
            done, _ = await asyncio.wait({protocol.result}, timeout=half)
            if not done:
                transport.sendto(packet)
            return await asyncio.wait_for(asyncio.shield(protocol.result), timeout=self.timeout - half)
        finally:
            transport.close()
            if not protocol.result.done():
                protocol.result.cancel()
            elif not protocol.result.cancelled():
                protocol.result.exception()  # mark retrieved: no "never retrieved" warning

    async def _tcp(self, packet: bytes, query_id: int, name: str, rtype: int) -> Response:
        async def exchange() -> Response:
            reader, writer = await asyncio.open_connection(*self.server)
            try:
                writer.write(struct.pack("!H", len(packet)) + packet)
                await writer.drain()
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                raise DNSError("TCP connection closed mid-answer") from None
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            response = parse_response(data)
            if response.id != query_id or not _matches(response, (_normalize(name), rtype)):
                raise DNSError("TCP answer does not match the query")
            return response

        return await asyncio.wait_for(exchange(), timeout=self.timeout)


def _type_name(rtype: int) -> str:
    try:
        return RRType(rtype).name
    except ValueError:
        return f"TYPE{rtype}"


# -- /etc/resolv.conf --------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvConf:
    """The parts of resolv.conf(5) a stub resolver needs."""

    nameservers: tuple[tuple[str, int], ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1

    @classmethod
    def load(cls, path: str = "/etc/resolv.conf") -> ResolvConf:
        """Read ``path``; a missing file means no nameservers (callers report that)."""
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return cls.parse(f.read())
        except FileNotFoundError:
            return cls()

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        nameservers: list[tuple[str, int]] = []
        search: tuple[str, ...] = ()
        ndots = 1
        for raw in text.splitlines():
            words = raw.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            key, args = words[0], words[1:]
            if key == "nameserver" and args:
                # Strip a zone index (fe80::1%eth0): asyncio cannot connect with it.
                nameservers.append((args[0].split("%", 1)[0], 53))
            elif key in ("search", "domain") and args:
                # The last of "search"/"domain" wins, as in glibc.
                search = tuple(a.rstrip(".") for a in (args if key == "search" else args[:1]))
            elif key == "options":
                for opt in args:
                    if opt.startswith("ndots:"):
                        with contextlib.suppress(ValueError):
                            ndots = max(0, min(15, int(opt[len("ndots:") :])))
        return cls(tuple(nameservers), search, ndots)

    def candidates(self, name: str) -> list[str]:
        """The names to try for ``name``, in order, as glibc does: an absolute name
        (trailing dot) as is; a name with at least ``ndots`` dots first as is, then
        with each search domain; a shorter name with the search domains first."""
        if name.endswith("."):
            return [name.rstrip(".")]
        with_search = [f"{name}.{domain}" for domain in self.search if domain]
        if name.count(".") >= self.ndots:
            return [name, *with_search]
        return [*with_search, name]
