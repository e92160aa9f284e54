"""The aws_cloud_map resolver against moto's standalone Cloud Map emulator on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from dataplane.config_model import AWSCloudMapResolverConfig
from dataplane.resolvers.aws import BOTO3_MISSING, AWSCloudMapResolver
from dataplane.resolvers.base import ResolverError
from dataplane.telemetry import Telemetry
from tests.motoserver import CloudMap, MotoServer, aws_env

NS = "tier2.internal"
SVC = "sampler"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def cloudmap(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> CloudMap:
    moto.reset()
    for key, value in aws_env(moto.url).items():
        monkeypatch.setenv(key, value)
    return CloudMap(moto.url)


def make(telemetry: Telemetry | None = None, /, **kw: Any) -> AWSCloudMapResolver:
    max_results = kw.pop("discover_max_results", 1000)
    cfg = AWSCloudMapResolverConfig(**{"namespace": NS, "service_name": SVC, **kw})
    return AWSCloudMapResolver(telemetry or Telemetry(), cfg, discover_max_results=max_results)


def resolutions(t: Telemetry, success: bool) -> float:
    value = t.registry.get_sample_value(
        "otelcol_loadbalancer_num_resolutions_total",
        {"resolver": "aws", "success": str(success).lower()},
    )
    return value or 0.0


def poll(resolver: AWSCloudMapResolver) -> bool:
    return asyncio.run(resolver.poll())


def test_resolves_250_instances_with_their_registered_ports(cloudmap: CloudMap) -> None:
    service = cloudmap.create_service(NS, SVC)
    expected = cloudmap.register_many(service, 250)
    t = Telemetry()
    resolver = make(t)

    assert poll(resolver)
    assert resolver.endpoints == tuple(sorted(expected))
    assert len(resolver.endpoints) == 250
    assert resolutions(t, True) == 1
    assert t.registry.get_sample_value("otelcol_loadbalancer_num_backends", {"resolver": "aws"}) == 250
    assert resolver.last_error is None


def test_full_discover_answer_falls_back_to_paginated_listing(cloudmap: CloudMap) -> None:
    # DiscoverInstances has no NextToken: with MaxResults 100 it returns 100 of 250, and
    # only the ListInstances pagination can bring the other 150.
    service = cloudmap.create_service(NS, SVC)
    expected = cloudmap.register_many(service, 250)
    resolver = make(discover_max_results=100)

    assert poll(resolver)
    assert resolver.endpoints == tuple(sorted(expected))


def test_fallback_finds_the_service_in_the_configured_namespace(cloudmap: CloudMap) -> None:
    other = cloudmap.create_service("other.internal", SVC)
    cloudmap.register_many(other, 150, port="9999")
    service = cloudmap.create_service(NS, SVC)
    expected = cloudmap.register_many(service, 120)
    resolver = make(discover_max_results=100)

    assert poll(resolver)
    assert resolver.endpoints == tuple(sorted(expected))


@pytest.mark.parametrize("max_results", [1000, 100], ids=["discover", "paginated-listing"])
def test_health_status_modes_follow_custom_health_changes(cloudmap: CloudMap, max_results: int) -> None:
    service = cloudmap.create_service(NS, SVC)
    endpoints = cloudmap.register_many(service, 250)
    ids = [f"i-{i:04d}" for i in range(250)]
    # More than 100 in each group, so with max_results=100 every mode takes the paginated path.
    for instance_id in ids[:120]:
        cloudmap.set_health(service, instance_id, "UNHEALTHY")
    unhealthy, healthy = set(endpoints[:120]), set(endpoints[120:])

    def resolve(mode: str) -> set[str]:
        resolver = make(health_status=mode, discover_max_results=max_results)
        poll(resolver)
        return set(resolver.endpoints)

    assert resolve("HEALTHY") == healthy
    assert resolve("UNHEALTHY") == unhealthy
    assert resolve("ALL") == healthy | unhealthy
    assert resolve("HEALTHY_OR_ELSE_ALL") == healthy

    for instance_id in ids[120:]:
        cloudmap.set_health(service, instance_id, "UNHEALTHY")
    assert resolve("HEALTHY_OR_ELSE_ALL") == set(endpoints)  # fails open
    assert resolve("HEALTHY") == set()  # nothing healthy: a failed resolution, no set


def test_unhealthy_instance_leaves_the_set_and_comes_back(cloudmap: CloudMap) -> None:
    service = cloudmap.create_service(NS, SVC)
    endpoints = cloudmap.register_many(service, 3)
    resolver = make()
    poll(resolver)
    assert len(resolver.endpoints) == 3

    cloudmap.set_health(service, "i-0001", "UNHEALTHY")
    assert poll(resolver)
    assert resolver.endpoints == tuple(sorted([endpoints[0], endpoints[2]]))

    cloudmap.set_health(service, "i-0001", "HEALTHY")
    assert poll(resolver)
    assert resolver.endpoints == tuple(endpoints)


def test_deregistered_instances_leave_the_set_within_an_interval(cloudmap: CloudMap) -> None:
    service = cloudmap.create_service(NS, SVC)
    endpoints = cloudmap.register_many(service, 250)
    published: list[Sequence[str]] = []

    async def scenario() -> None:
        resolver = make(interval=0.2)
        await resolver.start(published.append)
        try:
            assert len(published) == 1 and len(published[0]) == 250
            for i in range(50):
                await asyncio.to_thread(cloudmap.deregister, service, f"i-{i:04d}")
            await wait_for(lambda: len(published[-1]) == 200)
        finally:
            await resolver.stop()

    asyncio.run(scenario())
    assert published[-1] == tuple(sorted(endpoints[50:]))


def test_port_override_replaces_the_instance_port_attribute(cloudmap: CloudMap) -> None:
    service = cloudmap.create_service(NS, SVC)
    cloudmap.register(service, "a", AWS_INSTANCE_IPV4="10.2.0.1", AWS_INSTANCE_PORT="4317")
    cloudmap.register(service, "b", AWS_INSTANCE_IPV4="10.2.0.2")  # no port: usable with an override

    with_override = make(port=5555)
    poll(with_override)
    assert with_override.endpoints == ("10.2.0.1:5555", "10.2.0.2:5555")
    assert with_override.skipped == {}

    without = make()
    poll(without)
    assert without.endpoints == ("10.2.0.1:4317",)
    assert without.skipped == {"no AWS_INSTANCE_PORT attribute and no port configured": 1}


def test_instances_without_address_or_valid_port_are_skipped_and_logged(
    cloudmap: CloudMap, caplog: pytest.LogCaptureFixture
) -> None:
    service = cloudmap.create_service(NS, SVC)
    cloudmap.register(service, "good", AWS_INSTANCE_IPV4="10.3.0.1", AWS_INSTANCE_PORT="4317")
    cloudmap.register(service, "no-ip", AWS_INSTANCE_PORT="4317")
    cloudmap.register(service, "ipv6-only", AWS_INSTANCE_IPV6="fd00::1", AWS_INSTANCE_PORT="4317")
    cloudmap.register(service, "bad-port", AWS_INSTANCE_IPV4="10.3.0.2", AWS_INSTANCE_PORT="http")
    resolver = make()

    with caplog.at_level(logging.WARNING, logger="ringleader.resolver.aws"):
        poll(resolver)
        poll(resolver)

    assert resolver.endpoints == ("10.3.0.1:4317",)
    assert resolver.skipped == {"no AWS_INSTANCE_IPV4 attribute": 2, "invalid AWS_INSTANCE_PORT attribute": 1}
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1, "logged once while the picture stays the same"
    assert "skipped 3 of 4 instance(s)" in warnings[0]


def test_no_usable_instance_is_a_failed_resolution_that_says_why(cloudmap: CloudMap) -> None:
    service = cloudmap.create_service(NS, SVC)
    cloudmap.register(service, "no-ip", AWS_INSTANCE_PORT="4317")
    t = Telemetry()
    resolver = make(t)

    assert not poll(resolver)
    assert resolutions(t, False) == 1
    assert resolver.last_error == "1 instance(s) found but none usable: 1 with no AWS_INSTANCE_IPV4 attribute"


def test_owner_account_is_sent_to_discover_instances(cloudmap: CloudMap) -> None:
    # moto's account; a misspelt parameter would fail botocore's validation of the request.
    service = cloudmap.create_service(NS, SVC)
    expected = cloudmap.register_many(service, 3)
    resolver = make(owner_account="123456789012")

    assert poll(resolver)
    assert resolver.endpoints == tuple(sorted(expected))


def test_unknown_namespace_is_a_failed_resolution(cloudmap: CloudMap) -> None:
    t = Telemetry()
    resolver = make(t)

    assert not poll(resolver)
    assert resolutions(t, False) == 1
    assert resolver.last_error is not None and "NamespaceNotFound" in resolver.last_error


def test_server_down_keeps_the_last_set_and_counts_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    with MotoServer() as own:  # its own server, since this test stops it
        for key, value in aws_env(own.url).items():
            monkeypatch.setenv(key, value)
        cloudmap = CloudMap(own.url)
        service = cloudmap.create_service(NS, SVC)
        expected = cloudmap.register_many(service, 5)
        t = Telemetry()
        resolver = make(t, timeout=3.0)
        assert poll(resolver)
        own.stop()

        assert not poll(resolver)

    assert resolver.endpoints == tuple(sorted(expected))
    assert resolutions(t, True) == 1
    assert resolutions(t, False) == 1
    assert t.registry.get_sample_value("ringleader_resolver_healthy", {"resolver": "aws"}) == 0
    assert resolver.last_error is not None and "Could not connect" in resolver.last_error


def test_unresponsive_server_times_out_under_the_resolver_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loopback socket that accepts connections (kernel backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        for key, value in aws_env(f"http://127.0.0.1:{silent.getsockname()[1]}").items():
            monkeypatch.setenv(key, value)
        t = Telemetry()
        resolver = make(t, timeout=0.5)

        assert not poll(resolver)

    assert resolver.last_error == "timed out after 0.5s"
    assert resolutions(t, False) == 1


def test_missing_boto3_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` sees without the extra
    with pytest.raises(ResolverError, match=r"pip install 'ringleader\[aws\]'") as err:
        make()
    assert str(err.value) == BOTO3_MISSING


@pytest.mark.parametrize("field", ["namespace", "service_name"])
def test_empty_namespace_or_service_name_is_rejected(field: str) -> None:
    with pytest.raises(ResolverError, match=field):
        make(**{field: ""})


async def wait_for(condition: Callable[[], bool], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {deadline}s")
        await asyncio.sleep(0.05)
