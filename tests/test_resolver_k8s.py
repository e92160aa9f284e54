"""The k8s resolver against a real kube-apiserver + etcd on loopback (the ``envtest`` fixture).

Each test gets its own namespace and a selector-less headless Service whose
EndpointSlices it writes by hand with the official client, as the EndpointSlice
controller would. Addresses are 10.9.x.x / fd00:9:: because the API server
refuses loopback ones; nothing ever connects to them (the resolver only reads
the API). Disconnects are real: the resolver talks to the API server through a
loopback TCP relay (:class:`Relay`) that the test can cut or stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from dataplane.config_model import K8sResolverConfig
from dataplane.hostport import join_host_port
from dataplane.resolvers.k8s import K8sResolver, parse_service
from dataplane.telemetry import Telemetry

SVC = "tier2"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def ep(
    address: str,
    *,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
    hostname: str | None = None,
) -> dict[str, Any]:
    """One EndpointSlice endpoint; None leaves a condition unset."""
    conditions = {
        k: v
        for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if v is not None
    }
    out: dict[str, Any] = {"addresses": [address], "conditions": conditions}
    if hostname:
        out["hostname"] = hostname
    return out


class Cluster:
    """Admin-side helper: one namespace with a Service and the slices a test writes."""

    def __init__(self, kubeconfig: str | Path, namespace: str) -> None:
        # Typed as Any: the client takes plain dict bodies, which its stubs do not admit.
        self.api_client: Any = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        self.core: Any = k8s.CoreV1Api(self.api_client)
        self.discovery: Any = k8s.DiscoveryV1Api(self.api_client)
        self.rbac: Any = k8s.RbacAuthorizationV1Api(self.api_client)
        self.namespace = namespace

    def create_namespace(self) -> None:
        self.core.create_namespace({"metadata": {"name": self.namespace}})

    def create_service(self, name: str = SVC) -> None:
        self.core.create_namespaced_service(
            self.namespace,
            {
                "metadata": {"name": name},
                "spec": {"clusterIP": "None", "ports": [{"name": "otlp", "port": 4317}]},
            },
        )

    def _slice(
        self, name: str, endpoints: Sequence[dict[str, Any]], service: str, address_type: str
    ) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": "ringleader-tests",
                },
            },
            "addressType": address_type,
            "ports": [{"name": "otlp", "port": 4317, "protocol": "TCP"}],
            "endpoints": list(endpoints),
        }

    def put_slice(
        self, name: str, endpoints: Sequence[dict[str, Any]], service: str = SVC, address_type: str = "IPv4"
    ) -> None:
        """Create the slice, or replace its endpoints if it exists."""
        body = self._slice(name, endpoints, service, address_type)
        try:
            self.discovery.create_namespaced_endpoint_slice(self.namespace, body)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
            self.discovery.replace_namespaced_endpoint_slice(name, self.namespace, body)

    def delete_slice(self, name: str) -> None:
        self.discovery.delete_namespaced_endpoint_slice(name, self.namespace)

    def grant_endpointslice_reader(self, subject: dict[str, str], name: str = "ringleader") -> None:
        """Exactly the RBAC docs/resolvers/k8s.md documents: get/list/watch endpointslices."""
        self.rbac.create_namespaced_role(
            self.namespace,
            {
                "metadata": {"name": name},
                "rules": [
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            },
        )
        self.rbac.create_namespaced_role_binding(
            self.namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            },
        )

    def revoke(self, name: str = "ringleader") -> None:
        self.rbac.delete_namespaced_role_binding(name, self.namespace)
        self.rbac.delete_namespaced_role(name, self.namespace)


class Relay:
    """A loopback TCP relay in front of the API server that a test can cut.

    TLS passes through untouched (the server certificate is for 127.0.0.1, the
    relay listens on 127.0.0.1), so the resolver sees a genuine connection loss.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)  # may be changed while stopped
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Drop every open connection (both directions); new ones are still accepted."""
        for w in list(self._writers):
            w.transport.abort()

    async def stop(self) -> None:
        """Refuse new connections and drop the open ones."""
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()
        self._server = None


def kubeconfig_via(kubeconfig: str | Path, port: int, out: Path) -> str:
    """A copy of ``kubeconfig`` whose server is 127.0.0.1:``port`` (the relay)."""
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    for cluster in doc["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    out.write_text(yaml.safe_dump(doc))
    return str(out)


class Recorder:
    """The data plane's side: every set the resolver published, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, endpoints: Sequence[str]) -> None:
        self.calls.append(tuple(endpoints))

    @property
    def last(self) -> tuple[str, ...] | None:
        return self.calls[-1] if self.calls else None


async def eventually(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``predicate`` on the event loop until truthy; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def resolutions(t: Telemetry, success: bool) -> float:
    value = t.registry.get_sample_value(
        "otelcol_loadbalancer_num_resolutions_total", {"resolver": "k8s", "success": str(success).lower()}
    )
    return value or 0.0


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Blocking client call off the event loop, so the resolver keeps reading its watch."""
    return await asyncio.to_thread(fn, *args, **kw)


@contextlib.asynccontextmanager
async def running(resolver: K8sResolver, recorder: Recorder) -> AsyncIterator[K8sResolver]:
    await resolver.start(recorder)
    try:
        yield resolver
    finally:
        await resolver.stop()


def addrs(*hosts: str, ports: Sequence[int] = (4317,)) -> tuple[str, ...]:
    return tuple(sorted(join_host_port(h, p) for h in hosts for p in ports))


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(envtest: Any) -> Iterator[Cluster]:
    c = Cluster(envtest.admin_kubeconfig, f"k8sres-{uuid.uuid4().hex[:8]}")
    c.create_namespace()
    c.create_service()
    yield c
    with contextlib.suppress(Exception):
        c.core.delete_namespace(c.namespace)
    c.api_client.close()


def make(
    cluster: Cluster, kubeconfig: str | Path, telemetry: Telemetry | None = None, **cfg: Any
) -> K8sResolver:
    extra = {k: cfg.pop(k) for k in ("watch_timeout", "environ", "serviceaccount_dir") if k in cfg}
    config = K8sResolverConfig(**{"service": f"{SVC}.{cluster.namespace}", "debounce": 0.05, **cfg})
    return K8sResolver(telemetry or Telemetry(), config, kubeconfig=str(kubeconfig), **extra)


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------
def test_service_name_and_namespace_parsing(tmp_path: Path) -> None:
    missing = str(tmp_path / "not-a-pod")
    assert parse_service("tier2", missing) == ("tier2", "default")
    assert parse_service("tier2.observability", missing) == ("tier2", "observability")
    assert parse_service("tier2.observability.svc.cluster.local", missing) == ("tier2", "observability")
    (tmp_path / "namespace").write_text("from-pod\n")
    assert parse_service("tier2", str(tmp_path)) == ("tier2", "from-pod")
    assert parse_service("tier2.explicit", str(tmp_path)) == ("tier2", "explicit")
    with pytest.raises(ValueError):
        parse_service(".observability", missing)


def test_every_ready_address_times_every_port_follows_adds_and_removals(
    cluster: Cluster, envtest: Any
) -> None:
    async def body() -> None:
        await call(cluster.put_slice, "s1", [ep("10.9.0.1"), ep("10.9.0.2")])
        t, rec = Telemetry(), Recorder()
        # Credentials the upstream way: KUBECONFIG in the environment.
        cfg = K8sResolverConfig(service=f"{SVC}.{cluster.namespace}", ports=(4317, 55690), debounce=0.05)
        r = K8sResolver(t, cfg, environ={"KUBECONFIG": str(envtest.admin_kubeconfig)})
        async with running(r, rec):
            # The initial list is published before start() returns.
            assert rec.calls == [addrs("10.9.0.1", "10.9.0.2", ports=(4317, 55690))]
            assert r.last_error is None and resolutions(t, True) >= 1

            await call(cluster.put_slice, "s1", [ep("10.9.0.1"), ep("10.9.0.2"), ep("10.9.0.3")])
            want = addrs("10.9.0.1", "10.9.0.2", "10.9.0.3", ports=(4317, 55690))
            await eventually(lambda: rec.last == want, "the added endpoint")

            await call(cluster.put_slice, "s1", [ep("10.9.0.3")])
            await eventually(lambda: rec.last == addrs("10.9.0.3", ports=(4317, 55690)), "removals")

            await call(cluster.delete_slice, "s1")
            await eventually(lambda: rec.last == (), "the empty set after the slice is deleted")
            assert r.endpoints == () and r.last_error is None

    run(body())


def test_not_ready_and_terminating_endpoints_are_left_out(cluster: Cluster, envtest: Any) -> None:
    async def body() -> None:
        await call(
            cluster.put_slice,
            "s1",
            [
                ep("10.9.0.1"),  # ready
                ep("10.9.0.2", ready=None),  # unset: ready per the API
                ep("10.9.0.3", ready=False, serving=False),  # not ready
                ep("10.9.0.4", ready=True, serving=True, terminating=True),  # publishNotReadyAddresses
                ep("10.9.0.5", ready=False, serving=True, terminating=True),  # draining
            ],
        )
        rec = Recorder()
        async with running(make(cluster, envtest.admin_kubeconfig), rec):
            assert rec.last == addrs("10.9.0.1", "10.9.0.2")

            # A pod starting its preStop drain leaves the ring at once, though still serving.
            await call(
                cluster.put_slice,
                "s1",
                [ep("10.9.0.1", ready=False, serving=True, terminating=True), ep("10.9.0.2", ready=None)],
            )
            await eventually(lambda: rec.last == addrs("10.9.0.2"), "the terminating pod to leave")

            # Becoming ready joins; becoming not-ready leaves.
            await call(cluster.put_slice, "s1", [ep("10.9.0.2", ready=False), ep("10.9.0.3", ready=True)])
            await eventually(lambda: rec.last == addrs("10.9.0.3"), "the readiness flip")

    run(body())


def test_several_slices_are_merged_and_other_services_ignored(cluster: Cluster, envtest: Any) -> None:
    async def body() -> None:
        await call(cluster.put_slice, "a", [ep("10.9.0.1"), ep("10.9.0.2")])
        await call(cluster.put_slice, "b", [ep("10.9.0.2"), ep("10.9.0.3")])  # .2 in both: once
        await call(cluster.put_slice, "v6", [ep("fd00:9::1")], address_type="IPv6")
        await call(cluster.put_slice, "other", [ep("10.9.9.9")], service="not-" + SVC)
        rec = Recorder()
        async with running(make(cluster, envtest.admin_kubeconfig), rec):
            assert rec.last == addrs("10.9.0.1", "10.9.0.2", "10.9.0.3", "fd00:9::1")
            assert "[fd00:9::1]:4317" in rec.last

            await call(cluster.delete_slice, "a")
            await eventually(
                lambda: rec.last == addrs("10.9.0.2", "10.9.0.3", "fd00:9::1"),
                "only slice a's own endpoint to leave",
            )
            await call(cluster.put_slice, "other", [ep("10.9.9.8")], service="not-" + SVC)
            await call(cluster.put_slice, "c", [ep("10.9.0.4")])
            await eventually(
                lambda: rec.last == addrs("10.9.0.2", "10.9.0.3", "10.9.0.4", "fd00:9::1"),
                "a new slice to merge in",
            )
            assert not any("10.9.9." in e for call_ in rec.calls for e in call_)

    run(body())


def test_return_hostnames_publishes_pod_dns_names_and_skips_endpoints_without_one(
    cluster: Cluster, envtest: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        await call(
            cluster.put_slice,
            "s1",
            [
                ep("10.9.0.1", hostname="sampler-0"),
                ep("10.9.0.2", hostname="sampler-1"),
                ep("10.9.0.3"),  # no hostname: left out
                ep("10.9.0.4", hostname="sampler-3", ready=False),  # not ready: left out
            ],
        )
        rec = Recorder()
        ns = cluster.namespace
        with caplog.at_level(logging.WARNING, logger="ringleader.resolver.k8s"):
            async with running(
                make(cluster, envtest.admin_kubeconfig, return_hostnames=True, ports=(4317, 4318)), rec
            ):
                assert rec.last == tuple(
                    sorted(f"sampler-{i}.{SVC}.{ns}:{p}" for i in (0, 1) for p in (4317, 4318))
                )
                await call(cluster.put_slice, "s1", [ep("10.9.0.2", hostname="sampler-1")])
                await eventually(
                    lambda: rec.last == (f"sampler-1.{SVC}.{ns}:4317", f"sampler-1.{SVC}.{ns}:4318"),
                    "sampler-0 to leave",
                )
        assert any("1 ready endpoint(s)" in m and "no hostname" in m for m in caplog.messages)

    run(body())


def test_debounce_coalesces_a_rollout_burst_into_one_publish(cluster: Cluster, envtest: Any) -> None:
    async def body() -> None:
        await call(cluster.put_slice, "s1", [ep("10.9.0.1")])
        debounced, eager = Recorder(), Recorder()
        final = addrs(*(f"10.9.0.{i}" for i in range(1, 7)))
        async with (
            running(make(cluster, envtest.admin_kubeconfig, debounce=1.0), debounced),
            running(make(cluster, envtest.admin_kubeconfig, debounce=0), eager),
        ):
            assert len(debounced.calls) == len(eager.calls) == 1
            # A scale-up: five pods become ready at once, five slice writes in flight together.
            await asyncio.gather(*(call(cluster.put_slice, f"s{i}", [ep(f"10.9.0.{i}")])
                                   for i in range(2, 7)))
            await eventually(lambda: debounced.last == final and eager.last == final, "the final set")
            await asyncio.sleep(1.5)  # nothing else may come after the quiet period
        assert debounced.calls[1:] == [final], "the burst must be published once"
        assert len(eager.calls) == 6, "without debounce every change is its own publish"

    run(body())


def test_watch_resumes_after_the_connection_drops_and_keeps_the_set_while_unreachable(
    cluster: Cluster, envtest: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        await call(cluster.put_slice, "s1", [ep("10.9.0.1")])
        relay = Relay("127.0.0.1", envtest.port)
        await relay.start()
        kc = kubeconfig_via(envtest.admin_kubeconfig, relay.port, tmp_path / "kubeconfig")
        t, rec = Telemetry(), Recorder()
        async with running(make(cluster, kc, t), rec) as r:
            assert rec.last == addrs("10.9.0.1")

            # 1. The connection dies under the watch: the resolver re-watches, sees later changes.
            await call(cluster.put_slice, "s1", [ep("10.9.0.1"), ep("10.9.0.4")])
            await eventually(lambda: rec.last == addrs("10.9.0.1", "10.9.0.4"), "a live watch")
            before = relay.connections
            relay.cut()
            await eventually(lambda: relay.connections > before, "a new watch connection")
            await call(cluster.put_slice, "s1", [ep("10.9.0.1"), ep("10.9.0.2")])
            await eventually(lambda: rec.last == addrs("10.9.0.1", "10.9.0.2"), "a change after the cut")
            # A lost stream that resumes at once is not a failed resolution.
            assert r.last_error is None and resolutions(t, False) == 0

            # 2. API server unreachable: one clear error, the last good set stays.
            await relay.stop()
            await call(cluster.put_slice, "s1", [ep("10.9.0.3")])  # happens while we are cut off
            await eventually(lambda: r.last_error, "last_error while unreachable")
            assert "cannot reach the API server" in str(r.last_error)
            assert "\n" not in str(r.last_error)
            assert resolutions(t, False) >= 1
            assert r.endpoints == addrs("10.9.0.1", "10.9.0.2")

            # 3. Back: the change made during the outage arrives (resumed or re-listed).
            await relay.start()
            await eventually(
                lambda: rec.last == addrs("10.9.0.3"), "the change made during the outage", timeout=45
            )
            await eventually(lambda: r.last_error is None, "last_error to clear")
        await relay.stop()

    run(body())


def test_server_side_watch_timeout_is_followed_by_a_resumed_watch(cluster: Cluster, envtest: Any) -> None:
    async def body() -> None:
        await call(cluster.put_slice, "s1", [ep("10.9.0.1")])
        rec = Recorder()
        # The API server closes each watch after 1s; every change must still be seen, once.
        async with running(make(cluster, envtest.admin_kubeconfig, watch_timeout=1), rec) as r:
            for n in range(2, 5):
                await asyncio.sleep(1.2)
                await call(cluster.put_slice, "s1", [ep(f"10.9.0.{i}") for i in range(1, n + 1)])
                want = addrs(*(f"10.9.0.{i}" for i in range(1, n + 1)))
                await eventually(lambda w=want: rec.last == w, f"{n} endpoints")  # type: ignore[misc]
            assert r.last_error is None

    run(body())


def test_denied_by_rbac_reports_a_clear_error_then_recovers_when_granted(
    cluster: Cluster, envtest: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        await call(cluster.put_slice, "s1", [ep("10.9.0.1")])
        relay = Relay("127.0.0.1", envtest.port)
        await relay.start()
        kc = kubeconfig_via(envtest.nobody_kubeconfig, relay.port, tmp_path / "nobody")
        t, rec = Telemetry(), Recorder()
        async with running(make(cluster, kc, t), rec) as r:
            # Denied at start: no set, a one-line error naming the fix, counted, still running.
            assert not r.has_resolved and rec.calls == []
            err = str(r.last_error)
            assert "403" in err and "forbidden" in err and "endpointslices" in err
            assert "get, list and watch" in err and cluster.namespace in err and "\n" not in err
            assert resolutions(t, False) >= 1
            assert t.registry.get_sample_value("ringleader_resolver_healthy", {"resolver": "k8s"}) == 0

            # Granted: the retry loop lists and publishes.
            await call(
                cluster.grant_endpointslice_reader,
                {"kind": "User", "name": envtest.NOBODY_USER, "apiGroup": "rbac.authorization.k8s.io"},
            )
            await eventually(lambda: rec.last == addrs("10.9.0.1"), "the set once granted")
            assert r.last_error is None

            # Revoked, and the watch must reconnect: denied again, but the last good set stays.
            await call(cluster.revoke)
            relay.cut()
            await eventually(lambda: r.last_error and "forbidden" in r.last_error, "the denial")
            assert r.endpoints == addrs("10.9.0.1")
            assert r._task is not None and not r._task.done()
        await relay.stop()

    run(body())


def test_service_account_with_only_get_list_watch_works_the_in_pod_way(
    cluster: Cluster, envtest: Any
) -> None:
    """Token + CA from a service-account directory, API address from KUBERNETES_SERVICE_*,
    namespace from the directory's file; the Role grants exactly get/list/watch."""

    async def body() -> None:
        sa = await call(envtest.service_account, cluster.namespace, "ringleader")
        await call(
            cluster.grant_endpointslice_reader,
            {"kind": "ServiceAccount", "name": "ringleader", "namespace": cluster.namespace},
        )
        await call(cluster.put_slice, "s1", [ep("10.9.0.1"), ep("10.9.0.2")])

        rec = Recorder()
        cfg = K8sResolverConfig(service=SVC, debounce=0.05)  # no namespace: the pod's own
        r = K8sResolver(Telemetry(), cfg, serviceaccount_dir=str(sa.directory), environ=sa.environ)
        assert r.namespace == cluster.namespace
        async with running(r, rec):
            assert r.last_error is None, r.last_error
            assert rec.last == addrs("10.9.0.1", "10.9.0.2")
            await call(cluster.put_slice, "s1", [ep("10.9.0.2")])
            await eventually(lambda: rec.last == addrs("10.9.0.2"), "a watched change")
            assert r.last_error is None

    run(body())


def test_expired_resource_version_after_an_api_server_restart_is_answered_by_a_relist(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real way a watch position expires: the API server restarts and its new watch cache
    starts after our resourceVersion (etcd moved on meanwhile), so the resumed watch gets
    410 Gone. Uses a private control plane, as restarting the shared one would disturb others."""
    from e2e.envtest import EnvTest, ensure_binaries

    async def body(env: EnvTest) -> None:
        cluster = Cluster(env.admin_kubeconfig, "expiry")
        await call(cluster.create_namespace)
        await call(cluster.create_service)
        await call(cluster.put_slice, "s1", [ep("10.9.0.1")])
        relay = Relay("127.0.0.1", env.port)
        await relay.start()
        kc = kubeconfig_via(env.admin_kubeconfig, relay.port, tmp_path / "kubeconfig")
        rec = Recorder()
        with caplog.at_level(logging.INFO, logger="ringleader.resolver.k8s"):
            async with running(make(cluster, kc), rec) as r:
                assert rec.last == addrs("10.9.0.1")
                await eventually(lambda: relay.connections >= 1, "the resolver's connection")

                await relay.stop()
                await call(restart_apiserver, env)
                after = Cluster(env.admin_kubeconfig, "expiry")  # the new server's port
                await call(after.put_slice, "s1", [ep("10.9.0.2")])  # while the resolver is away
                relay.target = ("127.0.0.1", env.port)
                await relay.start()

                await eventually(lambda: rec.last == addrs("10.9.0.2"), "the re-listed set", timeout=60)
                assert any("expired" in m and "re-listing" in m for m in caplog.messages)
                await eventually(lambda: r.last_error is None, "a healthy resolver")
                await call(after.put_slice, "s1", [ep("10.9.0.2"), ep("10.9.0.3")])
                await eventually(lambda: rec.last == addrs("10.9.0.2", "10.9.0.3"), "the new watch")
                after.api_client.close()
        await relay.stop()
        cluster.api_client.close()

    env = EnvTest(ensure_binaries()).start()
    try:
        run(body(env))
    finally:
        env.stop()


def restart_apiserver(env: Any) -> None:
    """Stop kube-apiserver, move etcd's revision on, start a new one (new port) on the same etcd.

    EnvTest has no public restart, hence its private helpers. The etcd write (through etcd's
    JSON gateway, an unrelated key) guarantees the new watch cache starts after every
    resourceVersion the old server handed out, as any real cluster's traffic would.
    """
    import json
    import urllib.request

    env._apiserver.stop()
    body = json.dumps(
        {"key": base64.b64encode(b"/ringleader-test/bump").decode(), "value": base64.b64encode(b"1").decode()}
    ).encode()
    urllib.request.urlopen(urllib.request.Request(f"{env.etcd_url}/v3/kv/put", data=body), timeout=10).close()
    env._start_apiserver()
    env.admin_kubeconfig = env.kubeconfig_for_token("admin", env.admin_token)
