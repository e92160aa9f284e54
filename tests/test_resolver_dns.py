"""The ``dns`` resolver against a real DNS server (dnsmasq on loopback, see tests/dnsserver.py).

Each test starts the resolver with a short interval, changes the server's
records or stops the server, and waits (with a deadline, never a fixed sleep)
for the effect on the published set, ``last_error`` and the resolution metrics.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from dataplane.config_model import DNSResolverConfig
from dataplane.exporter import grpc_target
from dataplane.resolvers.dns import DNSResolver
from dataplane.resolvers.resolvconf import ResolvConf
from dataplane.telemetry import Telemetry
from tests.dnsserver import SRV, DNSServer

INTERVAL = 0.2
DEADLINE = 10.0  # generous: the machine is shared; the waits end as soon as the condition holds
NAME = "backends.tier2.test"
SRV_NAME = "_otlp._tcp.tier2.test"


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DNSServer]:
    with DNSServer(tmp_path / "dns") as server:
        yield server


class Seen:
    """The resolver callback: records every published set."""

    def __init__(self) -> None:
        self.sets: list[tuple[str, ...]] = []

    def __call__(self, endpoints: Sequence[str]) -> None:
        self.sets.append(tuple(endpoints))

    @property
    def last(self) -> tuple[str, ...] | None:
        return self.sets[-1] if self.sets else None


def resolutions(telemetry: Telemetry, success: bool) -> float:
    value = telemetry.registry.get_sample_value(
        "otelcol_loadbalancer_num_resolutions_total",
        {"resolver": "dns", "success": str(success).lower()},
    )
    return value or 0.0


async def eventually(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {DEADLINE}s: {what}")
        await asyncio.sleep(0.02)


def make_resolver(
    dns: DNSServer | None, hostname: str, *, port: str = "", srv: bool = False
) -> tuple[DNSResolver, Telemetry, Seen]:
    """A resolver asking ``dns`` (or the system resolver when None), polling every INTERVAL."""
    telemetry = Telemetry()
    server = dns.server if dns is not None else None
    cfg = DNSResolverConfig(hostname, port=port, interval=INTERVAL, timeout=1.0, server=server, srv=srv)
    return DNSResolver(telemetry, cfg), telemetry, Seen()


# -- address (A/AAAA) mode ---------------------------------------------------------------


def test_initial_set_is_published_sorted_before_start_returns(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["127.0.1.2", "127.0.1.10", "127.0.1.1"])
    resolver, telemetry, seen = make_resolver(dns, NAME, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        try:
            # Plain string order, as upstream's sort.Strings: "127.0.1.10:" < "127.0.1.1:".
            assert seen.sets == [("127.0.1.10:4317", "127.0.1.1:4317", "127.0.1.2:4317")]
            assert resolver.last_error is None
            assert resolutions(telemetry, True) == 1
            assert resolutions(telemetry, False) == 0
        finally:
            await resolver.stop()

    asyncio.run(scenario())


def test_added_and_removed_records_reach_the_callback_while_running(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["127.0.1.1", "127.0.1.2"])
    resolver, _, seen = make_resolver(dns, NAME, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        try:
            dns.set_hosts(NAME, ["127.0.1.1", "127.0.1.2", "127.0.1.3"])
            expected = ("127.0.1.1:4317", "127.0.1.2:4317", "127.0.1.3:4317")
            await eventually(lambda: seen.last == expected, "added backend published")
            dns.set_hosts(NAME, ["127.0.1.3"])
            await eventually(lambda: seen.last == ("127.0.1.3:4317",), "removed backends published")
            # Unchanged answers on later polls publish nothing new.
            polls = len(seen.sets)
            await asyncio.sleep(3 * INTERVAL)
            assert len(seen.sets) == polls
        finally:
            await resolver.stop()

    asyncio.run(scenario())


def test_aaaa_records_become_bracketed_endpoints(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["2001:db8::2", "127.0.1.1", "2001:db8::1"])
    resolver, _, seen = make_resolver(dns, NAME, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == ("127.0.1.1:4317", "[2001:db8::1]:4317", "[2001:db8::2]:4317")


def test_a_answered_and_aaaa_refused_keeps_the_a_addresses(dns: DNSServer) -> None:
    """Defect 7 of issue 9. A name outside dnsmasq's local domain is answered from the hosts
    file for A, while AAAA would be forwarded and, with no upstream, is REFUSED. Go's
    resolver (upstream's) returns the A addresses; so does this one."""
    name = "backends.tier2.example"  # not under .test: AAAA gets REFUSED, not NODATA
    dns.set_hosts(name, ["127.0.1.1", "127.0.1.2"])
    resolver, telemetry, seen = make_resolver(dns, name, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == ("127.0.1.1:4317", "127.0.1.2:4317")
    assert resolver.last_error is None
    assert resolutions(telemetry, False) == 0


def test_without_port_endpoints_are_bare_and_the_exporter_adds_4317(dns: DNSServer) -> None:
    """Upstream's shape: no port in the ring string; IPv6 keeps its brackets so
    the exporter can still tell address from port."""
    dns.set_hosts(NAME, ["127.0.1.1", "2001:db8::1"])
    resolver, _, seen = make_resolver(dns, NAME)

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == ("127.0.1.1", "[2001:db8::1]")
    assert [grpc_target(e) for e in seen.last] == ["127.0.1.1:4317", "[2001:db8::1]:4317"]


def test_cname_chains_are_followed_to_the_addresses(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["127.0.1.1", "2001:db8::1"])
    dns.set_cname("alias.tier2.test", NAME)
    resolver, _, seen = make_resolver(dns, "alias.tier2.test", port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == ("127.0.1.1:4317", "[2001:db8::1]:4317")


def test_truncated_udp_answer_is_retried_over_tcp(dns: DNSServer) -> None:
    addresses = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(300)]  # far more than 1232 bytes
    dns.set_hosts(NAME, addresses)
    resolver, _, seen = make_resolver(dns, NAME, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == tuple(sorted(f"{a}:4317" for a in addresses))


def test_without_server_the_system_resolver_reads_etc_hosts() -> None:
    # "localhost" is answered from /etc/hosts: no DNS packet leaves the machine.
    resolver, _, seen = make_resolver(None, "localhost", port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last is not None
    assert "127.0.0.1:4317" in seen.last
    assert resolver.last_error is None


# -- failures keep the last good set -----------------------------------------------------


def test_stopped_server_keeps_the_last_set_counts_failures_and_recovers(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["127.0.1.1", "127.0.1.2"])
    resolver, telemetry, seen = make_resolver(dns, NAME, port="4317")
    good = ("127.0.1.1:4317", "127.0.1.2:4317")

    async def scenario() -> None:
        await resolver.start(seen)
        try:
            assert seen.last == good
            dns.stop()
            await eventually(lambda: resolutions(telemetry, False) >= 2, "failed resolutions counted")
            assert resolver.last_error is not None
            assert resolver.endpoints == good
            assert seen.sets == [good]

            dns.set_hosts(NAME, ["127.0.1.3"])  # changed while down, served after restart
            dns.start()
            await eventually(lambda: seen.last == ("127.0.1.3:4317",), "new set after recovery")
            assert resolver.last_error is None
            assert resolutions(telemetry, True) >= 2
        finally:
            await resolver.stop()

    asyncio.run(scenario())


def test_unresponsive_server_times_out_and_keeps_the_last_set(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["127.0.1.1"])
    resolver, telemetry, seen = make_resolver(dns, NAME, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        try:
            dns.pause()
            await eventually(lambda: resolutions(telemetry, False) >= 1, "timed-out resolution counted")
            assert resolver.last_error is not None
            assert resolver.endpoints == ("127.0.1.1:4317",)
            dns.resume()
            await eventually(lambda: resolver.last_error is None, "recovery after resume")
        finally:
            dns.resume()
            await resolver.stop()

    asyncio.run(scenario())
    assert seen.sets == [("127.0.1.1:4317",)]


def test_nxdomain_keeps_the_last_set_until_the_name_returns(dns: DNSServer) -> None:
    dns.set_hosts(NAME, ["127.0.1.1"])
    resolver, telemetry, seen = make_resolver(dns, NAME, port="4317")

    async def scenario() -> None:
        await resolver.start(seen)
        try:
            dns.remove_host(NAME)
            await eventually(lambda: resolver.last_error is not None, "NXDOMAIN reported")
            assert "NXDOMAIN" in (resolver.last_error or "")
            assert resolutions(telemetry, False) >= 1
            assert resolver.endpoints == ("127.0.1.1:4317",)

            dns.set_hosts(NAME, ["127.0.1.2"])
            await eventually(lambda: seen.last == ("127.0.1.2:4317",), "recovered set")
            assert resolver.last_error is None
        finally:
            await resolver.stop()

    asyncio.run(scenario())
    assert seen.sets == [("127.0.1.1:4317",), ("127.0.1.2:4317",)]


def test_first_resolution_failing_publishes_nothing_and_reports_why(dns: DNSServer) -> None:
    resolver, telemetry, seen = make_resolver(dns, "missing.tier2.test")

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.sets == []
    assert not resolver.has_resolved
    assert "missing.tier2.test" in (resolver.last_error or "")
    assert resolutions(telemetry, False) == 1


# -- SRV mode ----------------------------------------------------------------------------


def test_srv_uses_the_lowest_priority_targets_with_their_own_ports(dns: DNSServer) -> None:
    dns.set_hosts("b0.tier2.test", ["127.0.2.1", "2001:db8::2"])
    dns.set_hosts("b1.tier2.test", ["127.0.2.2"])
    dns.set_hosts("spare.tier2.test", ["127.0.2.9"])
    dns.set_srv(
        SRV_NAME,
        [
            SRV("b0.tier2.test", 4317, priority=10, weight=90),
            SRV("b1.tier2.test", 4318, priority=10, weight=10),  # weights are ignored
            SRV("spare.tier2.test", 4317, priority=20),
        ],
    )
    resolver, _, seen = make_resolver(dns, SRV_NAME, srv=True)

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == ("127.0.2.1:4317", "127.0.2.2:4318", "[2001:db8::2]:4317")


def test_srv_falls_back_to_the_next_priority_when_no_target_has_an_address(dns: DNSServer) -> None:
    dns.set_hosts("spare.tier2.test", ["127.0.2.9"])
    dns.set_srv(
        SRV_NAME,
        [SRV("gone.tier2.test", 4317, priority=0), SRV("spare.tier2.test", 4317, priority=5)],
    )
    resolver, _, seen = make_resolver(dns, SRV_NAME, srv=True)

    async def scenario() -> None:
        await resolver.start(seen)
        await resolver.stop()

    asyncio.run(scenario())
    assert seen.last == ("127.0.2.9:4317",)


def test_srv_changes_and_target_address_changes_are_followed(dns: DNSServer) -> None:
    dns.set_hosts("b0.tier2.test", ["127.0.2.1"])
    dns.set_hosts("b1.tier2.test", ["127.0.2.2"])
    dns.set_srv(SRV_NAME, [SRV("b0.tier2.test", 4317)])
    resolver, telemetry, seen = make_resolver(dns, SRV_NAME, srv=True)

    async def scenario() -> None:
        await resolver.start(seen)
        try:
            assert seen.last == ("127.0.2.1:4317",)
            dns.set_srv(SRV_NAME, [SRV("b0.tier2.test", 4317), SRV("b1.tier2.test", 4317)])
            await eventually(lambda: seen.last == ("127.0.2.1:4317", "127.0.2.2:4317"), "SRV target added")
            dns.set_hosts("b1.tier2.test", ["127.0.2.3"])
            await eventually(lambda: seen.last == ("127.0.2.1:4317", "127.0.2.3:4317"), "target readdressed")
            dns.set_srv(SRV_NAME, [])  # the SRV name disappears: keep the last set
            await eventually(lambda: "no such records" in (resolver.last_error or ""), "missing SRV reported")
            assert resolutions(telemetry, False) >= 1
            assert resolver.endpoints == ("127.0.2.1:4317", "127.0.2.3:4317")
        finally:
            await resolver.stop()

    asyncio.run(scenario())


def test_srv_without_server_asks_the_resolv_conf_nameservers_with_search_domains(tmp_path: Path) -> None:
    """The default SRV path: /etc/resolv.conf's nameservers (port 53 by definition,
    so dnsmasq binds 53 on a random 127/8 address; needs root or CAP_NET_BIND_SERVICE).
    The first nameserver has nobody listening: the resolver moves on to the second."""
    net = random.randrange(1, 250)
    dead, live = f"127.53.{net}.1", f"127.53.{net}.2"
    with DNSServer(tmp_path / "dns", address=live, port=53) as dns:
        dns.set_hosts("b0.tier2.test", ["127.0.2.1"])
        dns.set_srv(SRV_NAME, [SRV("b0.tier2.test", 4317)])
        resolv_conf = tmp_path / "resolv.conf"
        resolv_conf.write_text(
            f"nameserver {dead}\nnameserver {live}\nsearch other.test tier2.test\noptions ndots:5\n"
        )
        telemetry = Telemetry()
        cfg = DNSResolverConfig(hostname="_otlp._tcp", srv=True, interval=INTERVAL, timeout=2.0)
        resolver = DNSResolver(telemetry, cfg, resolv_conf=str(resolv_conf))
        seen = Seen()

        async def scenario() -> None:
            await resolver.start(seen)
            await resolver.stop()

        asyncio.run(scenario())
    assert resolver.last_error is None
    assert seen.last == ("127.0.2.1:4317",)


# -- configuration -----------------------------------------------------------------------


def test_srv_with_a_port_is_rejected_because_records_carry_ports() -> None:
    with pytest.raises(ValueError, match="port"):
        DNSResolver(Telemetry(), DNSResolverConfig(hostname=SRV_NAME, srv=True, port="4317"))


def test_missing_hostname_is_rejected() -> None:
    with pytest.raises(ValueError, match="hostname"):
        DNSResolver(Telemetry(), DNSResolverConfig(hostname=""))


def test_zero_interval_and_timeout_mean_upstream_defaults() -> None:
    resolver = DNSResolver(Telemetry(), DNSResolverConfig(hostname=NAME, interval=0, timeout=0))
    assert (resolver.interval, resolver.timeout) == (5.0, 1.0)


def test_bad_server_address_is_rejected() -> None:
    with pytest.raises(ValueError, match="server"):
        DNSResolver(Telemetry(), DNSResolverConfig(hostname=NAME, server="127.0.0.1:notaport"))


def test_resolv_conf_search_order_follows_ndots() -> None:
    conf = ResolvConf.parse(
        "nameserver 10.0.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
    )
    assert conf.nameservers == (("10.0.0.10", 53),)
    assert conf.candidates("_otlp._tcp.tier2") == [
        "_otlp._tcp.tier2.ns.svc.cluster.local",
        "_otlp._tcp.tier2.svc.cluster.local",
        "_otlp._tcp.tier2",
    ]
    assert conf.candidates("tier2.ns.svc.cluster.local.") == ["tier2.ns.svc.cluster.local"]
