"""The k8s resolver with live traffic: a real API server, the real SDK, real backend processes.

Everything a tier-2 Service is made of runs here for real, except the kubelet and the
EndpointSlice controller, whose job (writing the slices) the tests do by hand:

- the control plane is the session's ``envtest`` (etcd + kube-apiserver on loopback);
- the data plane reads it as a ServiceAccount holding exactly the Role that
  docs/resolvers/k8s.md prescribes (get/list/watch on endpointslices), through a
  kubeconfig given in its ``KUBECONFIG`` environment variable;
- the tier-2 "pods" are ``e2e.sink`` processes. The API server refuses loopback
  addresses in EndpointSlices, so they listen on 10.213.x.2.. inside a private
  network namespace joined to the host by a veth pair (:mod:`tests.netns`): the
  addresses in the slices are real, reachable, and on this machine only. Every sink
  listens on port 4317 of its own address, as pods of one Service do.

Each test uses its own Kubernetes namespace with a headless Service ``tier2``; the
network namespace is shared by the module (sinks are stopped after each test).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from e2e.envtest import EnvTest, ServiceAccountCredentials
from e2e.loadgen import ProducedSpan, send_traces
from tests.harness import (
    PYTHON,
    ROOT,
    DataPlaneProcess,
    SinkProcess,
    grpc_export,
    spans_of,
    static_config,
    trace_request,
    wait_until,
)
from tests.netns import NetNamespace, NetnsError, die_with_parent

SERVICE = "tier2"
SINK_PORT = 4317


# --------------------------------------------------------------------------------------------
# tier-2 pods: sinks inside the network namespace
# --------------------------------------------------------------------------------------------
class NamespacedSink(SinkProcess):
    """An ``e2e.sink`` listening on ``host:4317`` inside ``netns`` (a tier-2 pod's address)."""

    def __init__(self, workdir: Path, name: str, netns: NetNamespace, host: str, *extra: str) -> None:
        super().__init__(workdir, name, *extra)
        self.netns = netns
        self.host = host
        self.port = SINK_PORT

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def launch(self) -> None:
        """Start the process without waiting (several sinks start in parallel)."""
        self.port_file.unlink(missing_ok=True)
        args = [
            *self.netns.exec_prefix,
            PYTHON,
            "-m",
            "e2e.sink",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--record",
            str(self.record),
            "--port-file",
            str(self.port_file),
            *self.extra,
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )

    def wait_listening(self) -> None:
        wait_until(lambda: self.port_file.exists() or self._exited(), 30, what=f"sink {self.name} to listen")
        if self._exited():
            raise AssertionError(f"sink {self.name} exited:\n{self.log.read_text(errors='replace')[-2000:]}")

    def _exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def start(self, *extra: str) -> NamespacedSink:
        if extra:
            self.extra = list(extra)
        self.launch()
        self.wait_listening()
        return self


StartSinks = Callable[..., list[NamespacedSink]]


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNamespace]:
    try:
        ns = NetNamespace(addresses=4).create()
    except NetnsError as exc:
        pytest.fail(f"cannot create the network namespace for the tier-2 pods: {exc}")
    try:
        yield ns
    finally:
        ns.destroy()


@pytest.fixture
def start_sinks(tmp_path: Path, netns: NetNamespace) -> Iterator[StartSinks]:
    """``start_sinks(n, **{index: extra_args})``: sinks on the namespace's first ``n`` addresses."""
    started: list[NamespacedSink] = []

    def start(count: int, extra: dict[int, list[str]] | None = None) -> list[NamespacedSink]:
        sinks = [
            NamespacedSink(tmp_path, f"pod-{i}", netns, netns.addresses[i], *(extra or {}).get(i, []))
            for i in range(count)
        ]
        started.extend(sinks)
        for sink in sinks:
            sink.launch()
        for sink in sinks:
            sink.wait_listening()
        return sinks

    yield start
    for sink in started:
        sink.stop()


# --------------------------------------------------------------------------------------------
# the Service and its EndpointSlices
# --------------------------------------------------------------------------------------------
def pod(address: str, *, terminating: bool = False) -> dict[str, Any]:
    """One EndpointSlice endpoint as the controller writes it for a running or a terminating pod."""
    conditions = (
        {"ready": False, "serving": True, "terminating": True}
        if terminating
        else {"ready": True, "serving": True, "terminating": False}
    )
    name = "tier2-" + address.replace(".", "-")
    return {"addresses": [address], "conditions": conditions, "targetRef": {"kind": "Pod", "name": name}}


class Tier2Service:
    """Admin side of one Kubernetes namespace: the headless Service ``tier2`` and its slices."""

    def __init__(self, env: EnvTest) -> None:
        self.namespace = env.new_namespace("live")
        self.api: Any = env.api_client()
        self.discovery: Any = k8s.DiscoveryV1Api(self.api)
        core: Any = k8s.CoreV1Api(self.api)  # Any: the client takes plain dict bodies, its stubs do not
        core.create_namespaced_service(
            self.namespace,
            {
                "metadata": {"name": SERVICE},
                "spec": {"clusterIP": "None", "ports": [{"name": "otlp-grpc", "port": SINK_PORT}]},
            },
        )
        # The data plane's identity: a ServiceAccount with exactly get/list/watch on endpointslices.
        self.reader = env.service_account(self.namespace, "ringleader")
        env.grant(self.reader, resources=["endpointslices"], api_group="discovery.k8s.io")

    def put_slice(self, name: str, endpoints: list[dict[str, Any]]) -> None:
        """Create slice ``name`` of the Service, or replace its endpoints."""
        body = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/service-name": SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "ringleader-tests",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": "otlp-grpc", "port": SINK_PORT, "protocol": "TCP"}],
            "endpoints": endpoints,
        }
        try:
            self.discovery.create_namespaced_endpoint_slice(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.discovery.replace_namespaced_endpoint_slice(name, self.namespace, body)

    def wait_reader_granted(self, env: EnvTest) -> None:
        """RBAC reaches the authorizer through an informer: wait until the reader may list."""

        def allowed() -> bool:
            with env.api_client(self.reader.kubeconfig) as api:
                try:
                    k8s.DiscoveryV1Api(api).list_namespaced_endpoint_slice(self.namespace)
                except ApiException as exc:
                    if exc.status != 403:
                        raise
                    return False
            return True

        wait_until(allowed, 15, interval=0.2, what="the Role to take effect")

    def close(self) -> None:
        self.api.close()


@pytest.fixture
def tier2(envtest: EnvTest) -> Iterator[Tier2Service]:
    service = Tier2Service(envtest)
    yield service
    service.close()


def start_dataplane(
    tmp_path: Path,
    envtest: EnvTest,
    tier2: Tier2Service,
    monkeypatch: pytest.MonkeyPatch,
    identity: ServiceAccountCredentials | None = None,
    coalesce: dict[str, Any] | None = None,
    **otlp: Any,
) -> DataPlaneProcess:
    """The data plane resolving ``tier2.<namespace>`` via ``KUBECONFIG``, as the granted reader
    (waiting for its Role to take effect) or as ``identity`` (not waiting for readiness)."""
    if identity is None:
        tier2.wait_reader_granted(envtest)
    otlp.setdefault("timeout", "5s")
    cfg = static_config([], otlp=otlp, **({"coalesce": coalesce} if coalesce is not None else {}))
    cfg["exporters"]["loadbalancing"]["resolver"] = {
        "k8s": {"service": f"{SERVICE}.{tier2.namespace}", "ports": [SINK_PORT]}
    }
    # The subprocess inherits os.environ: only this kubeconfig, no in-cluster hints.
    monkeypatch.setenv("KUBECONFIG", str((identity or tier2.reader).kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    return DataPlaneProcess(tmp_path, cfg).start(wait_ready=identity is None)


# --------------------------------------------------------------------------------------------
# what arrived
# --------------------------------------------------------------------------------------------
def ring(dp: DataPlaneProcess) -> list[str]:
    status, body = dp.get("/debug/ring")
    assert status == 200, status
    return sorted(json.loads(body).get("endpoints", []))


def received(sinks: list[NamespacedSink]) -> dict[str, list[tuple[bytes, bytes, str, str]]]:
    return {s.endpoint: spans_of(s.records()) for s in sinks}


def wait_all_arrived(sinks: list[NamespacedSink], produced: list[ProducedSpan]) -> None:
    wait_until(
        lambda: sum(len(v) for v in received(sinks).values()) >= len(produced), 60, what="all spans at the sinks"
    )


def assert_exactly_once(sinks: list[NamespacedSink], produced: list[ProducedSpan]) -> None:
    counts = collections.Counter(span_id for spans in received(sinks).values() for _, span_id, _, _ in spans)
    duplicated = [sid.hex() for sid, n in counts.items() if n > 1]
    assert not duplicated, f"{len(duplicated)} spans delivered more than once"
    expected = {p.span_id for p in produced}
    assert len(expected) == len(produced)
    missing = expected - set(counts)
    assert not missing, f"{len(missing)} of {len(expected)} spans never arrived"
    assert set(counts) == expected


def owners_of(sinks: list[NamespacedSink], trace_ids: set[bytes]) -> dict[bytes, set[str]]:
    """For each of ``trace_ids``: the sinks that received any of its spans."""
    owners: dict[bytes, set[str]] = collections.defaultdict(set)
    for endpoint, spans in received(sinks).items():
        for trace_id, _, _, _ in spans:
            if trace_id in trace_ids:
                owners[trace_id].add(endpoint)
    return owners


def assert_each_trace_on_one_backend(sinks: list[NamespacedSink], produced: list[ProducedSpan]) -> None:
    owners = owners_of(sinks, {p.trace_id for p in produced})
    split = [t.hex() for t, o in owners.items() if len(o) > 1]
    assert not split, f"{len(split)} traces landed on more than one backend"


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------
def test_sdk_traces_reach_the_pods_of_the_service_once_each_trace_on_one_pod(
    tmp_path: Path,
    envtest: EnvTest,
    tier2: Tier2Service,
    start_sinks: StartSinks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = start_sinks(3)
    tier2.put_slice("tier2-a", [pod(s.host) for s in pods])
    dp = start_dataplane(tmp_path, envtest, tier2, monkeypatch)
    try:
        assert ring(dp) == sorted(s.endpoint for s in pods)
        ready = json.loads(dp.get("/readyz")[1])
        assert ready["resolver"] == "k8s" and "resolver_error" not in ready, ready

        produced = send_traces(dp.grpc_endpoint, "grpc", traces=200, spans_per_trace=5, seed=21)
        assert len(produced) == 1000
        wait_all_arrived(pods, produced)

        assert_exactly_once(pods, produced)
        assert_each_trace_on_one_backend(pods, produced)
        per_pod = {endpoint: len(spans) for endpoint, spans in received(pods).items()}
        assert all(n > 0 for n in per_pod.values()), per_pod
        # The data plane counts an export once its answer is back, just after the sink recorded it.
        wait_until(
            lambda: all(
                dp.metric("ringleader_items_exported_total", endpoint=s.endpoint, signal="traces")
                == per_pod[s.endpoint]
                for s in pods
            ),
            10,
            what="exported counts per pod to match what each pod received",
        )
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()


def test_terminating_pod_leaves_the_ring_at_once_and_its_queue_is_rerouted_without_loss(
    tmp_path: Path,
    envtest: EnvTest,
    tier2: Tier2Service,
    start_sinks: StartSinks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The third pod answers each export after 1 s and is drained by 2 consumers: its queue fills.
    pods = start_sinks(3, {2: ["--delay", "1.0"]})
    slow = pods[2]
    tier2.put_slice("tier2-a", [pod(s.host) for s in pods])
    dp = start_dataplane(
        tmp_path,
        envtest,
        tier2,
        monkeypatch,
        sending_queue={"enabled": True, "num_consumers": 2, "queue_size": 5000},
        # Coalescing off: a free consumer would take the whole backlog as one export, leaving nothing
        # queued to re-route when the pod leaves (test_resolvers_live does the same).
        coalesce={"max_size": 0},
    )
    produced: list[ProducedSpan] = []
    sender = threading.Thread(
        target=lambda: produced.extend(
            send_traces(
                dp.grpc_endpoint,
                "grpc",
                traces=500,
                spans_per_trace=4,
                seed=22,
                max_export_batch_size=32,
                pause=0.015,
            )
        )
    )
    try:
        assert ring(dp) == sorted(s.endpoint for s in pods)
        sender.start()
        wait_until(
            lambda: dp.metric("ringleader_queue_size", endpoint=slow.endpoint) >= 3,
            30,
            what="batches waiting in the slow pod's queue",
        )
        assert dp.metric("ringleader_items_rerouted_total") == 0

        # The pod starts shutting down (preStop): the controller marks its endpoint terminating.
        tier2.put_slice("tier2-a", [pod(s.host, terminating=s is slow) for s in pods])
        remaining = sorted(s.endpoint for s in pods if s is not slow)
        # Within the resolver's 200 ms debounce plus a ring build; the deadline only absorbs a loaded machine.
        wait_until(lambda: ring(dp) == remaining, 10, interval=0.02, what="the terminating pod to leave the ring")
        assert sender.is_alive(), "the stream should still be flowing when the pod leaves"
        wait_until(
            lambda: dp.metric("ringleader_items_rerouted_total", signal="traces") > 0,
            10,
            what="the slow pod's queued batches to be re-routed",
        )

        sender.join(120)
        assert not sender.is_alive()
        assert len(produced) == 2000
        wait_all_arrived(pods, produced)
        assert_exactly_once(pods, produced)
        assert dp.metric("ringleader_items_failed_total") == 0
        # What the slow pod got is exactly what was exported to it: the in-flight exports it finished.
        wait_until(
            lambda: (
                len(received([slow])[slow.endpoint])
                == dp.metric("ringleader_items_exported_total", endpoint=slow.endpoint, signal="traces")
            ),
            10,
            what="the slow pod's record to match the exported count",
        )
    finally:
        sender.join(120)
        dp.stop()


def test_a_pod_added_in_a_second_slice_joins_the_ring_and_receives_traffic(
    tmp_path: Path,
    envtest: EnvTest,
    tier2: Tier2Service,
    start_sinks: StartSinks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = start_sinks(3)
    old, new = pods[:2], pods[2]
    tier2.put_slice("tier2-a", [pod(s.host) for s in old])
    dp = start_dataplane(tmp_path, envtest, tier2, monkeypatch)
    try:
        assert ring(dp) == sorted(s.endpoint for s in old)
        before = send_traces(dp.grpc_endpoint, "grpc", traces=100, spans_per_trace=4, seed=23)
        wait_all_arrived(pods, before)
        assert received([new])[new.endpoint] == []

        # Scale up: the controller puts the new pod into a second slice of the Service.
        tier2.put_slice("tier2-b", [pod(new.host)])
        wait_until(lambda: ring(dp) == sorted(s.endpoint for s in pods), 10, what="the new pod to join the ring")

        after = send_traces(dp.grpc_endpoint, "grpc", traces=150, spans_per_trace=4, seed=24)
        wait_all_arrived(pods, before + after)
        assert_exactly_once(pods, before + after)
        assert_each_trace_on_one_backend(pods, after)
        new_traces = {t for t, o in owners_of([new], {p.trace_id for p in after}).items() if o}
        assert new_traces, "the new pod received no trace"
        assert len(new_traces) < len({p.trace_id for p in after}), "the old pods received nothing after scale-up"
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()


def test_a_data_plane_denied_by_rbac_is_not_ready_says_why_and_recovers_when_granted(
    tmp_path: Path,
    envtest: EnvTest,
    tier2: Tier2Service,
    start_sinks: StartSinks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = start_sinks(2)
    tier2.put_slice("tier2-a", [pod(s.host) for s in pods])
    # An identity with no Role at all: every list and watch of endpointslices is forbidden.
    stranger = envtest.service_account(tier2.namespace, "stranger")
    dp = start_dataplane(tmp_path, envtest, tier2, monkeypatch, identity=stranger)
    try:

        def not_ready_with_reason() -> dict[str, Any] | None:
            status, body = dp.get("/readyz")
            if status != 503:
                return None
            ready = json.loads(body)
            return ready if "resolver_error" in ready else None

        ready = wait_until(not_ready_with_reason, 30, what="/readyz to report the RBAC failure")
        assert "403" in ready["resolver_error"] or "forbidden" in ready["resolver_error"].lower(), ready
        assert dp.metric("otelcol_loadbalancer_num_resolutions", resolver="k8s", success="false") >= 1
        assert dp.proc is not None and dp.proc.poll() is None, "the data plane must not crash"
        # Data sent meanwhile is refused (retryable), not swallowed.
        code, details = grpc_export(dp.grpc_endpoint, "traces", trace_request([(os.urandom(16), os.urandom(8))]))
        assert code == grpc.StatusCode.UNAVAILABLE, details
        # Grant exactly get/list/watch: the resolver recovers on its own and the ring fills.
        envtest.grant(stranger, resources=["endpointslices"], api_group="discovery.k8s.io")
        wait_until(lambda: dp.get("/readyz")[0] == 200, 60, what="readiness after the grant")
        assert ring(dp) == sorted(s.endpoint for s in pods)
        produced = send_traces(dp.grpc_endpoint, "grpc", traces=40, spans_per_trace=5, seed=5)
        wait_all_arrived(pods, produced)
        assert_exactly_once(pods, produced)
    finally:
        dp.stop()
