"""The envtest control plane behaves like a cluster's API for what the k8s resolver needs.

EndpointSlice addresses are 10.x on purpose: the API refuses loopback ones and
nothing here ever connects to them.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader

from e2e.envtest import EnvTest, EnvTestError, _remove_abandoned_workdirs

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def _eventually(call: Callable[[], T], deadline_s: float = 15.0) -> T:
    """RBAC changes reach the authorizer through an informer; retry 403s until a deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except ApiException as exc:
            if exc.status != 403 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _create_service_with_slice(env: EnvTest, namespace: str, service: str, addresses: list[str]) -> None:
    with env.api_client() as api:
        client.CoreV1Api(api).create_namespaced_service(namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name=service),
            spec=client.V1ServiceSpec(
                cluster_ip="None", ports=[client.V1ServicePort(name="otlp", port=4317, protocol="TCP")]
            ),
        ))
        client.DiscoveryV1Api(api).create_namespaced_endpoint_slice(namespace, client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(
                name=f"{service}-abc", labels={"kubernetes.io/service-name": service}
            ),
            address_type="IPv4",
            endpoints=[
                client.V1Endpoint(addresses=[a], conditions=client.V1EndpointConditions(ready=True))
                for a in addresses
            ],
            ports=[client.DiscoveryV1EndpointPort(name="otlp", port=4317, protocol="TCP")],
        ))


def _slice_addresses(api: Any, namespace: str, service: str) -> list[str]:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return sorted(a for s in slices.items for e in s.endpoints or [] for a in e.addresses)


def test_apiserver_reports_the_release_it_was_built_from(envtest: EnvTest) -> None:
    assert re.fullmatch(r"v1\.\d+\.\d+", envtest.version), envtest.version


def test_admin_creates_and_lists_service_endpointslices(envtest: EnvTest) -> None:
    namespace = envtest.new_namespace("slices")
    _create_service_with_slice(envtest, namespace, "backends", ["10.1.2.3", "10.1.2.4"])

    with envtest.api_client() as api:
        services = client.CoreV1Api(api).list_namespaced_service(namespace)
        assert [s.metadata.name for s in services.items if s.metadata] == ["backends"]
        assert _slice_addresses(api, namespace, "backends") == ["10.1.2.3", "10.1.2.4"]
        assert _slice_addresses(api, namespace, "other") == []


def test_nobody_is_forbidden_to_list_endpointslices(envtest: EnvTest) -> None:
    namespace = envtest.new_namespace("nobody")
    with envtest.api_client(envtest.nobody_kubeconfig) as api, pytest.raises(ApiException) as denied:
        client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(namespace)
    assert denied.value.status == 403
    assert "nobody" in str(denied.value.body)


def test_service_account_can_list_endpointslices_only_once_granted(envtest: EnvTest) -> None:
    namespace = envtest.new_namespace("sa")
    _create_service_with_slice(envtest, namespace, "backends", ["10.9.8.7"])
    sa = envtest.service_account(namespace, "resolver")

    with envtest.api_client(sa.kubeconfig) as api:
        with pytest.raises(ApiException) as denied:
            client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(namespace)
        assert denied.value.status == 403
        assert sa.username in str(denied.value.body)

        envtest.grant(sa, resources=["endpointslices"], api_group="discovery.k8s.io")
        assert _eventually(lambda: _slice_addresses(api, namespace, "backends")) == ["10.9.8.7"]
        # The Role is namespaced: other namespaces stay closed.
        with pytest.raises(ApiException) as elsewhere:
            client.DiscoveryV1Api(api).list_namespaced_endpoint_slice("default")
        assert elsewhere.value.status == 403


def test_service_account_directory_works_as_in_cluster_config(envtest: EnvTest) -> None:
    namespace = envtest.new_namespace("incluster")
    _create_service_with_slice(envtest, namespace, "backends", ["10.5.5.5"])
    sa = envtest.service_account(namespace, "pod")
    envtest.grant(sa, resources=["endpointslices"], api_group="discovery.k8s.io")

    assert (sa.directory / "namespace").read_text() == namespace
    configuration = client.Configuration()
    InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(sa.directory / "token"),
        cert_filename=str(sa.directory / "ca.crt"),
        environ=sa.environ,
    ).load_and_set(configuration)  # type: ignore[no-untyped-call]
    with client.ApiClient(configuration) as api:
        assert _eventually(lambda: _slice_addresses(api, namespace, "backends")) == ["10.5.5.5"]


def _processes_using(workdir: Path) -> list[int]:
    """PIDs whose command line mentions ``workdir`` (etcd's data dir, the apiserver's cert files)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # exited meanwhile
            if str(workdir).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


def test_stop_leaves_no_process_and_no_files(envtest: EnvTest) -> None:
    env = EnvTest(envtest.bin_dir).start()
    assert len(_processes_using(env.workdir)) == 2
    env.stop()

    assert _processes_using(env.workdir) == []
    assert not env.workdir.exists()


def test_failed_start_raises_with_the_log_tail_and_stops_etcd(envtest: EnvTest, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "etcd").symlink_to(envtest.bin_dir / "etcd")
    broken = bin_dir / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E1121 cannot start: deliberately broken for a test' >&2\nexit 3\n")
    broken.chmod(0o755)
    env = EnvTest(bin_dir, startup_timeout=30)

    with pytest.raises(EnvTestError, match="deliberately broken for a test") as failed:
        env.start()
    assert "exited with 3" in str(failed.value)
    assert _processes_using(env.workdir) == []
    assert not env.workdir.exists()


def test_killed_run_leaves_no_process_and_its_files_are_swept(envtest: EnvTest) -> None:
    # A separate test process that starts a control plane, reports its work dir and waits to be killed.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from e2e.envtest import EnvTest\n"
        "env = EnvTest(Path(sys.argv[1])).start()\n"
        "print(env.workdir, flush=True)\n"
        "time.sleep(300)\n"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", script, str(envtest.bin_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert victim.stdout is not None
    workdir = Path(victim.stdout.readline().strip())
    assert len(_processes_using(workdir)) == 2
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    deadline = time.monotonic() + 15
    while _processes_using(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_using(workdir) == []
    assert workdir.exists()  # nobody could clean up ...
    _remove_abandoned_workdirs()  # ... until the next start sweeps it,
    assert not workdir.exists()
    assert envtest.workdir.exists()  # sparing the directories of live runs.
