"""Shared pytest fixtures.

``otelcol_bin_dir`` (session scope): the directory holding the upstream collector (``otelcol``)
and ``telemetrygen``, built from Go modules by e2e/build_otelcol.sh on first use (minutes,
cached afterwards), see :mod:`e2e.otelcol`.

``envtest`` (session scope): a real etcd + kube-apiserver on loopback, see
:mod:`e2e.envtest`. The first session on a machine builds Kubernetes from the
Go module proxy (e2e/build_k8s.sh, many minutes, cached afterwards under
``$RINGLEADER_CACHE`` or ``~/.cache/ringleader``); later sessions only start the
processes (seconds).

``envtest_controllers`` (session scope): a second, separate control plane that
also runs kube-controller-manager (Deployments make ReplicaSets and Pods, garbage
collection, namespace deletion, default ServiceAccounts); the operator's tests
use it. It builds kube-controller-manager on first use (about a minute more).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import otelcol
from e2e.envtest import EnvTest, binaries_ready, cache_dir, ensure_binaries


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: runs on the real one-node cluster of e2e/lab.py (minutes)")
    config.addinivalue_line("markers", "e2e: long lab scenarios run by `make e2e`, deselected by `make test`")


def _build_kubernetes_once(request: pytest.FixtureRequest, with_controller_manager: bool = False) -> None:
    """Build the binaries if missing, telling the user why the session pauses for minutes."""
    if binaries_ready(with_controller_manager=with_controller_manager):
        return
    what = "etcd, kube-apiserver and kube-controller-manager" if with_controller_manager else "etcd and kube-apiserver"
    notice = (
        f"\nenvtest: first run on this machine: building {what} from the Go module proxy "
        f"(many minutes; log: {cache_dir() / 'build_k8s.log'}). Later runs reuse the cached binaries.\n"
    )
    _build_outside_the_test_timeout(
        request, notice, lambda: ensure_binaries(with_controller_manager=with_controller_manager)
    )


def _build_outside_the_test_timeout(request: pytest.FixtureRequest, notice: str, build: Callable[[], object]) -> None:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            sys.stderr.write(notice)
    else:
        sys.stderr.write(notice)
    # pytest-timeout's per-test alarm (SIGALRM, signal method) would count the one-off build against the
    # first test that uses the fixture; pause it for the build and re-arm it with what was left.
    on_main_thread = threading.current_thread() is threading.main_thread()
    remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0] if on_main_thread else 0.0
    try:
        build()
    finally:
        if remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, remaining)


@pytest.fixture(scope="session")
def envtest(request: pytest.FixtureRequest) -> Iterator[EnvTest]:
    """A running Kubernetes API (admin/nobody tokens, RBAC, TokenRequest); shared by the whole session."""
    _build_kubernetes_once(request)
    with EnvTest(ensure_binaries()) as env:
        yield env


@pytest.fixture(scope="session")
def envtest_controllers(request: pytest.FixtureRequest) -> Iterator[EnvTest]:
    """A control plane of its own with kube-controller-manager (see :data:`e2e.envtest.CONTROLLERS`):
    Deployments, ReplicaSets, garbage collection and namespaces behave as in a cluster; no kubelet."""
    _build_kubernetes_once(request, with_controller_manager=True)
    with EnvTest(ensure_binaries(with_controller_manager=True), controller_manager=True) as env:
        yield env


@pytest.fixture(scope="session")
def otelcol_bin_dir(request: pytest.FixtureRequest) -> Path:
    """The upstream collector v0.161 and telemetrygen, built once from Go modules (e2e/build_otelcol.sh)."""
    if not otelcol.binaries_ready():
        notice = (
            "\notelcol: first run on this machine: building the upstream collector and telemetrygen from the "
            f"Go module proxy (minutes; log: {otelcol.cache_dir() / 'build_otelcol.log'}).\n"
        )
        _build_outside_the_test_timeout(request, notice, otelcol.ensure_binaries)
    return otelcol.ensure_binaries()



@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The real one-node cluster of :mod:`e2e.lab` (root only); shared by the whole session.

    A lab already started with ``python -m e2e.lab up`` is used as it is and left running; otherwise one
    is started for the session and taken down at its end (a killed session's lab is removed by the next
    ``up``).  The first session on a machine builds the node binaries, containerd and the images
    (e2e/build_*.sh, many minutes, cached afterwards).
    """
    import os

    from e2e.lab import Lab

    if os.geteuid() != 0:
        pytest.skip("the lab needs root (bridge, iptables, cgroups, mounts); run the tests as root")
    existing = Lab.current()
    # Builds and start-up are one-off costs of the session, not of the first test: pytest-timeout's alarm
    # is paused for them and re-armed with what was left.
    on_main_thread = threading.current_thread() is threading.main_thread()
    remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0] if on_main_thread else 0.0
    try:
        if existing is not None:
            existing.refresh_images()  # the sources may have changed since `lab up`
        else:
            started = Lab.up(owned=True)
    finally:
        if remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, remaining)
    if existing is not None:
        yield existing
        return
    try:
        yield started
    finally:
        started.down()
