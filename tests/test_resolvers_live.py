"""Resolvers driving a running data plane, with live traffic: DNS (dnsmasq) and AWS Cloud Map (moto).

The resolver unit tests (tests/test_resolver_dns.py, tests/test_resolver_aws.py) check the
published *set*; these check what the data plane does with it while spans flow:

- backends are real sinks (``e2e.sink``) on their own loopback addresses (127.0.0.2,
  127.0.0.3, ...) sharing ONE port, as pods behind a headless Service or tasks in a
  Cloud Map service do; the resolver's answer lists those addresses;
- a record added or removed shows in ``GET /debug/ring`` within one interval (plus
  slack for this shared machine: every wait polls with a deadline), and traffic
  follows the new ring;
- a DNS server that goes away keeps the last set (ring version unchanged, failures
  counted, still ready) and the data plane recovers when it comes back;
- a *slow* backend with a backlog in its sending queue leaves the resolver's answer
  while the OpenTelemetry SDK keeps streaming: its queued batches are re-routed to
  the new owners, what it had acknowledged stays there, every span arrives exactly
  once and nothing is lost;
- a backend that is back in the answer while its old incarnation still drains keeps
  its queue gauges (the old one's clean-up used to delete them).

What "no trace split" means across a ring change (the balancer's documented effect):
a trace's spans routed before the change went to its owner in the old ring, those
routed after it (and the re-routed backlog) to its owner in the new ring. So each
span is at its trace's old or new owner, and every span *created* after the new ring
was observed on ``/debug/ring`` is at the new owner. For traces whose owner did not
change (all but the departed backend's, and the few cells the ring's capacity
correction hands between neighbours) that means: all spans on one backend.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from dataplane.ring import Ring, build_ring
from e2e.loadgen import ProducedSpan, send_traces
from tests.dnsserver import DNSServer
from tests.harness import DataPlaneProcess, SinkProcess, decode_requests, free_port, static_config, wait_until
from tests.motoserver import CloudMap, MotoServer, aws_env

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
NAME = "backends.tier2.test"
INTERVAL = 0.3
FOLLOW = INTERVAL + 10.0  # one interval plus generous slack: the 2 cores are shared; waits end early
SLOW_DELAY = 0.5  # seconds the slow backend sleeps per request (below the 5s export timeout)


# ----------------------------------------------------------------------- backends -----


class LoopbackSink(SinkProcess):
    """A sink on its own loopback address, so several share one port like the pods of a Service."""

    def __init__(self, workdir: Path, host: str, port: int, *extra: str) -> None:
        super().__init__(workdir, f"sink-{host}", *extra)
        self.host = host
        self.port = port

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, *extra: str) -> LoopbackSink:
        super().start("--host", self.host, *(list(extra) or self.extra))
        return self


def shared_port(hosts: Sequence[str]) -> int:
    """A TCP port free on every one of ``hosts`` (any 127.x address is on lo under Linux)."""
    for _ in range(50):
        port = free_port()
        socks = []
        try:
            for host in hosts:
                s = socket.socket()
                socks.append(s)
                s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no port free on all of {hosts}")


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: bytes
    span_id: bytes
    start_unix_nano: int


def received(sink: SinkProcess) -> list[ReceivedSpan]:
    out: list[ReceivedSpan] = []
    for req in decode_requests(sink.records(), "traces"):
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                out.extend(ReceivedSpan(s.trace_id, s.span_id, s.start_time_unix_nano) for s in ss.spans)
    return out


@pytest.fixture
def start_sinks(tmp_path: Path) -> Iterator[Callable[..., dict[str, LoopbackSink]]]:
    """Start one sink per host on a shared port; ``slow={host: delay}`` makes some slow."""
    started: list[LoopbackSink] = []

    def start(hosts: Sequence[str] = HOSTS, slow: dict[str, float] | None = None) -> dict[str, LoopbackSink]:
        port = shared_port(hosts)
        out = {}
        for host in hosts:
            delay = (slow or {}).get(host)
            sink = LoopbackSink(tmp_path, host, port, *(["--delay", str(delay)] if delay else []))
            started.append(sink)
            out[host] = sink.start()
        return out

    yield start
    for sink in started:
        sink.stop()


# ---------------------------------------------------------------- resolver sources -----


class BackendSource(Protocol):
    """What the resolver under test reads: a DNS name or a Cloud Map service."""

    def resolver_config(self) -> dict[str, Any]: ...

    def publish(self, hosts: Sequence[str]) -> None:
        """Make the resolver's answer exactly ``hosts`` (each on the sinks' shared port)."""


class DNSSource:
    def __init__(self, dns: DNSServer, port: int) -> None:
        self.dns = dns
        self.port = port

    def resolver_config(self) -> dict[str, Any]:
        return {
            "dns": {
                "hostname": NAME,
                "server": self.dns.server,
                "port": str(self.port),
                "interval": f"{int(INTERVAL * 1000)}ms",
                "timeout": "1s",
            }
        }

    def publish(self, hosts: Sequence[str]) -> None:
        self.dns.set_hosts(NAME, hosts)  # returns once dnsmasq re-read its hosts file


class CloudMapSource:
    NAMESPACE = "tier2.internal"
    SERVICE = "sampler"

    def __init__(self, moto: MotoServer, port: int) -> None:
        self.cloudmap = CloudMap(moto.url)
        self.port = port
        self.service_id = self.cloudmap.create_service(self.NAMESPACE, self.SERVICE)
        self.registered: set[str] = set()

    def resolver_config(self) -> dict[str, Any]:
        return {
            "aws_cloud_map": {
                "namespace": self.NAMESPACE,
                "service_name": self.SERVICE,
                "interval": f"{int(INTERVAL * 1000)}ms",
                "timeout": "3s",
            }
        }

    def publish(self, hosts: Sequence[str]) -> None:
        for host in sorted(self.registered - set(hosts)):
            self.cloudmap.deregister(self.service_id, f"task-{host}")
        for host in sorted(set(hosts) - self.registered):
            self.cloudmap.register(
                self.service_id, f"task-{host}", AWS_INSTANCE_IPV4=host, AWS_INSTANCE_PORT=str(self.port)
            )
        self.registered = set(hosts)


def dataplane_config(source: BackendSource, export_timeout: str = "5s") -> dict[str, Any]:
    # Two consumers per backend queue: a slow backend then builds a backlog within a second.
    cfg = static_config([], otlp={"timeout": export_timeout, "sending_queue": {"num_consumers": 2}})
    cfg["exporters"]["loadbalancing"]["resolver"] = source.resolver_config()
    return cfg


# ------------------------------------------------------------------ observations -----


def ring(dp: DataPlaneProcess) -> dict[str, Any]:
    status, body = dp.get("/debug/ring")
    assert status == 200, status
    result: dict[str, Any] = json.loads(body)
    return result


def ring_is(dp: DataPlaneProcess, sinks: Sequence[SinkProcess]) -> bool:
    return sorted(ring(dp).get("endpoints", [])) == sorted(s.endpoint for s in sinks)


def readyz(dp: DataPlaneProcess) -> tuple[int, dict[str, Any]]:
    status, body = dp.get("/readyz")
    return status, json.loads(body) if body else {}


def resolutions(dp: DataPlaneProcess, kind: str, success: bool) -> float:
    return dp.metric("otelcol_loadbalancer_num_resolutions", resolver=kind, success=str(success).lower())


def wait_all_delivered(dp: DataPlaneProcess, sinks: Sequence[SinkProcess], produced: int, total: int) -> None:
    """Wait until the sinks hold ``total`` spans and the data plane has nothing left in flight."""
    wait_until(lambda: sum(len(received(s)) for s in sinks) >= total, 60, 0.2, what=f"{total} spans at the sinks")
    wait_until(
        lambda: not any(ring(dp)["queues"].values()) and dp.metric("ringleader_items_exported_total") >= produced,
        30,
        0.2,
        what="the data plane to finish exporting",
    )


def assert_exactly_once(sinks: Sequence[SinkProcess], produced: Sequence[ProducedSpan]) -> None:
    counts = collections.Counter(sp.span_id for s in sinks for sp in received(s))
    duplicates = [sid.hex() for sid, n in counts.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} spans delivered more than once"
    expected = {p.span_id for p in produced}
    missing = expected - set(counts)
    assert not missing, f"{len(missing)} of {len(expected)} spans never arrived"
    assert set(counts) == expected


def assert_on_ring_owners(owner_ring: Ring, sinks: dict[str, LoopbackSink], spans: set[bytes]) -> None:
    """Every span in ``spans`` (by span ID) landed on its trace's owner in ``owner_ring``."""
    wrong = [
        (sp.trace_id.hex(), sink.endpoint)
        for sink in sinks.values()
        for sp in received(sink)
        if sp.span_id in spans and owner_ring.owner_of(sp.trace_id) != sink.endpoint
    ]
    assert not wrong, f"{len(wrong)} spans off their trace's owner, e.g. {wrong[:3]}"


# --------------------------------------------------------------------------- DNS -----


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DNSServer]:
    with DNSServer(tmp_path / "dns") as server:
        yield server


def test_dns_record_changes_move_ring_and_traffic_and_a_dead_server_keeps_the_last_set(
    tmp_path: Path, dns: DNSServer, start_sinks: Callable[..., dict[str, LoopbackSink]]
) -> None:
    sinks = start_sinks()
    a, b, c = (sinks[h] for h in HOSTS)
    source = DNSSource(dns, a.port)
    source.publish([a.host, b.host])
    dp = DataPlaneProcess(tmp_path, dataplane_config(source)).start()
    sent: list[ProducedSpan] = []

    def send(seed: int) -> set[bytes]:
        produced = send_traces(dp.grpc_endpoint, traces=40, spans_per_trace=3, seed=seed)
        sent.extend(produced)
        wait_all_delivered(dp, list(sinks.values()), len(sent), len(sent))
        return {p.span_id for p in produced}

    try:
        assert ring_is(dp, [a, b])
        algorithm = ring(dp)["algorithm"]

        # A record added: the ring follows within an interval and the new backend takes its share.
        source.publish([a.host, b.host, c.host])
        wait_until(lambda: ring_is(dp, [a, b, c]), FOLLOW, what="the ring to gain the added record")
        batch = send(seed=1)
        assert received(c), "the added backend received nothing"
        assert_on_ring_owners(build_ring(algorithm, [a.endpoint, b.endpoint, c.endpoint]), sinks, batch)

        # A record removed: the backend leaves the ring and gets nothing more.
        source.publish([b.host, c.host])
        wait_until(lambda: ring_is(dp, [b, c]), FOLLOW, what="the ring to lose the removed record")
        before = len(received(a))
        batch = send(seed=2)
        assert len(received(a)) == before
        assert_on_ring_owners(build_ring(algorithm, [b.endpoint, c.endpoint]), sinks, batch)

        # The DNS server gone: failures are counted, the last set and the ring stay, still ready.
        version = ring(dp)["version"]
        failures = resolutions(dp, "dns", False)
        dns.stop()
        wait_until(lambda: resolutions(dp, "dns", False) >= failures + 3, FOLLOW, what="failed resolutions")
        assert ring(dp)["version"] == version
        assert ring_is(dp, [b, c])
        status, body = readyz(dp)
        assert status == 200, body
        assert body.get("resolver_error"), body
        assert dp.metric("ringleader_resolver_healthy", resolver="dns") == 0
        batch = send(seed=3)  # traffic keeps flowing to the kept set
        assert_on_ring_owners(build_ring(algorithm, [b.endpoint, c.endpoint]), sinks, batch)

        # Recovery: the server back with a changed answer; the ring follows and the error clears.
        successes = resolutions(dp, "dns", True)
        source.publish([a.host, c.host])  # only rewrites the hosts file while the server is down
        dns.start()
        wait_until(lambda: ring_is(dp, [a, c]), FOLLOW, what="the ring to follow the recovered server")
        assert resolutions(dp, "dns", True) > successes
        assert "resolver_error" not in readyz(dp)[1]
        assert dp.metric("ringleader_resolver_healthy", resolver="dns") == 1
        batch = send(seed=4)
        assert_on_ring_owners(build_ring(algorithm, [a.endpoint, c.endpoint]), sinks, batch)

        assert_exactly_once(list(sinks.values()), sent)
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()


# ------------------------------------------- a slow backend leaves mid-stream -----


class Stream:
    """The SDK streaming traces from a thread, in short chunks, until stopped.

    Chunks (each a :func:`send_traces` call with a pause between traces) let the test
    keep the stream going for as long as the scenario needs on a machine of any speed.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.produced: list[ProducedSpan] = []
        self.chunks = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdk-stream", daemon=True)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def _run(self) -> None:
        seed = 100
        try:
            while not self._stop.is_set():
                self.produced += send_traces(
                    self.endpoint, traces=25, spans_per_trace=4, seed=seed, max_export_batch_size=64, pause=0.02
                )
                self.chunks += 1
                seed += 1
        except BaseException as exc:
            self.error = exc

    def stop(self) -> list[ProducedSpan]:
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the SDK stream did not finish"
        if self.error is not None:
            raise AssertionError("the SDK stream failed") from self.error
        return self.produced


def check_slow_backend_leaves_mid_stream(
    dp: DataPlaneProcess, source: BackendSource, sinks: dict[str, LoopbackSink], slow: LoopbackSink
) -> None:
    """The scenario of requirement 2, for any resolver: see the module documentation."""
    everyone = list(sinks.values())
    survivors = [s for s in everyone if s is not slow]
    assert ring_is(dp, everyone)
    algorithm = ring(dp)["algorithm"]
    old_ring = build_ring(algorithm, [s.endpoint for s in everyone])
    new_ring = build_ring(algorithm, [s.endpoint for s in survivors])

    stream = Stream(dp.grpc_endpoint).start()
    try:
        # The slow backend has acknowledged some batches and has a backlog waiting.
        wait_until(
            lambda: (
                (dp.metric("ringleader_queue_size", endpoint=slow.endpoint) >= 5 and slow.records()) or stream.error
            ),
            30,
            what="a backlog in the slow backend's queue",
        )
        assert stream.error is None
        source.publish([s.host for s in survivors])
        wait_until(lambda: ring_is(dp, survivors), FOLLOW, what="the slow backend to leave the ring")
        changed_at = time.time_ns()  # the SDK stamps spans with time.time_ns() too
        # Keep streaming for whole chunks on the new ring before stopping.
        chunks = stream.chunks
        wait_until(lambda: stream.chunks >= chunks + 3 or stream.error, 60, what="the stream to go on")
    finally:
        produced = stream.stop()
    wait_all_delivered(dp, everyone, len(produced), len(produced))

    assert_exactly_once(everyone, produced)
    assert dp.metric("ringleader_items_rerouted_total", signal="traces") > 0
    assert dp.metric("ringleader_items_failed_total") == 0
    assert dp.metric("ringleader_items_exported_total") == len(produced)
    assert slow.endpoint not in ring(dp)["queues"]

    at_slow = 0
    after_change = 0
    moved_to_new_owner = 0
    misplaced = []
    for sink in everyone:
        for sp in received(sink):
            old_owner, new_owner = old_ring.owner_of(sp.trace_id), new_ring.owner_of(sp.trace_id)
            late = sp.start_unix_nano > changed_at
            after_change += late
            at_slow += sink is slow
            moved_to_new_owner += old_owner == slow.endpoint and sink.endpoint == new_owner
            if sink.endpoint not in {old_owner, new_owner} or (late and sink.endpoint != new_owner):
                misplaced.append((sp.trace_id.hex(), sink.endpoint, old_owner, new_owner, late))
    assert not misplaced, f"{len(misplaced)} spans on neither the old owner (before) nor the new one: {misplaced[:3]}"
    # The checks above are not vacuous: the slow backend kept what it acknowledged, its traces
    # continued on their new owners, and part of the stream was routed by the new ring only.
    assert at_slow > 0
    assert moved_to_new_owner > 0
    assert after_change > 0


def test_dns_record_of_a_slow_backend_removed_mid_stream_reroutes_its_queue_exactly_once(
    tmp_path: Path, dns: DNSServer, start_sinks: Callable[..., dict[str, LoopbackSink]]
) -> None:
    sinks = start_sinks(slow={HOSTS[1]: SLOW_DELAY})
    source = DNSSource(dns, sinks[HOSTS[0]].port)
    source.publish(HOSTS)
    dp = DataPlaneProcess(tmp_path, dataplane_config(source)).start()
    try:
        check_slow_backend_leaves_mid_stream(dp, source, sinks, sinks[HOSTS[1]])
    finally:
        dp.stop()


def test_cloud_map_instance_of_a_slow_backend_deregistered_mid_stream_reroutes_its_queue_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start_sinks: Callable[..., dict[str, LoopbackSink]]
) -> None:
    sinks = start_sinks(slow={HOSTS[1]: SLOW_DELAY})
    with MotoServer() as moto:
        for key, value in aws_env(moto.url).items():
            monkeypatch.setenv(key, value)  # the data plane subprocess inherits them: moto only, never AWS
        source = CloudMapSource(moto, sinks[HOSTS[0]].port)
        source.publish(HOSTS)
        dp = DataPlaneProcess(tmp_path, dataplane_config(source)).start()
        try:
            check_slow_backend_leaves_mid_stream(dp, source, sinks, sinks[HOSTS[1]])
        finally:
            dp.stop()


# ------------------------------------------------- a backend that flaps back -----


def gauge_present(dp: DataPlaneProcess, name: str, endpoint: str) -> bool:
    status, body = dp.get("/metrics")
    assert status == 200, status
    return any(line.startswith(f'{name}{{endpoint="{endpoint}"}} ') for line in body.decode().splitlines())


def retired(dp: DataPlaneProcess, endpoint: str) -> bool:
    return f"backend {endpoint} retired" in dp.log.read_text(errors="replace")


def test_backend_back_in_dns_while_its_old_queue_drains_keeps_its_queue_gauges(
    tmp_path: Path, dns: DNSServer, start_sinks: Callable[..., dict[str, LoopbackSink]]
) -> None:
    sinks = start_sinks()
    frozen = sinks[HOSTS[1]]
    assert frozen.proc is not None
    source = DNSSource(dns, frozen.port)
    source.publish(HOSTS)
    # A long export timeout: the frozen backend's in-flight exports hang until it is resumed,
    # so its old incarnation is certainly still draining when it is back in the ring.
    dp = DataPlaneProcess(tmp_path, dataplane_config(source, export_timeout="120s")).start()
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    stream = Stream(dp.grpc_endpoint).start()
    try:
        wait_until(lambda: dp.metric("ringleader_queue_size", endpoint=frozen.endpoint) >= 2, 30, what="a backlog")
        source.publish([HOSTS[0], HOSTS[2]])
        wait_until(lambda: not ring_is(dp, list(sinks.values())), FOLLOW, what="the backend to leave")
        source.publish(HOSTS)
        wait_until(lambda: ring_is(dp, list(sinks.values())), FOLLOW, what="the backend to come back")
        assert not retired(dp, frozen.endpoint), "the old incarnation cannot finish while the backend is frozen"
        os.kill(frozen.proc.pid, signal.SIGCONT)
        wait_until(lambda: retired(dp, frozen.endpoint), 30, what="the old incarnation to retire")
        # The old incarnation's clean-up must leave the new one's gauges exported.
        assert gauge_present(dp, "ringleader_queue_size", frozen.endpoint)
        assert gauge_present(dp, "ringleader_queue_items", frozen.endpoint)
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
        stream.stop()
        dp.stop()
