"""Logs and metrics end to end, for every routing key: the OpenTelemetry SDK -> data plane -> three real backends.

The clients are the real OpenTelemetry Python SDK (``LoggerProvider`` and
``MeterProvider`` with their OTLP exporters, gRPC and HTTP), see
:func:`e2e.loadgen.send_logs` and :func:`e2e.loadgen.send_metrics`. For each
routing key a test checks, at the backends:

- every log record / data point arrived exactly once, under the resource and
  scope it was produced in (the identities compared include them);
- the grouping the key promises: all items sharing the key value sit on one
  backend;
- that the key really is the unit of routing and not something coarser (e.g. a
  service's resources spread over backends when routing by resource). The data
  sets are sized so that these spread checks fail by chance with a probability
  below 1e-5, whatever ports the backends get;
- where the key's bytes are documented (logs: service name, 32 lowercase hex
  trace ID; metrics: service name, metric name), the exact owner on the hash
  ring, which is what keeps a mixed fleet of instances consistent.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dataplane.ring import build_ring
from e2e.loadgen import ProducedLog, ProducedPoint, send_logs, send_metrics
from tests.harness import DataPlaneProcess, SinkProcess, logs_of, points_of, static_config, wait_until

T = TypeVar("T", ProducedLog, ProducedPoint)


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[list[SinkProcess]]:
    started = [SinkProcess(tmp_path, f"backend-{i}").start() for i in range(3)]
    yield started
    for s in started:
        s.stop()


def _start(tmp_path: Path, sinks: list[SinkProcess], **exporter: Any) -> DataPlaneProcess:
    return DataPlaneProcess(tmp_path, static_config([s.endpoint for s in sinks], **exporter)).start()


def _collect(
    sinks: list[SinkProcess], decode: Callable[[list[tuple[str, bytes]]], list[T]], expected: int
) -> dict[str, list[T]]:
    """What each backend received, once at least ``expected`` items have arrived in total."""

    def received() -> dict[str, list[T]] | None:
        got = {s.endpoint: decode(s.records()) for s in sinks}
        return got if sum(map(len, got.values())) >= expected else None

    result: dict[str, list[T]] = wait_until(received, 60, what=f"{expected} items at the backends")
    return result


def _assert_exactly_once(received: dict[str, list[T]], produced: list[T]) -> None:
    counts = collections.Counter(item for items in received.values() for item in items)
    duplicates = [item for item, n in counts.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} items delivered more than once, e.g. {duplicates[0]}"
    expected = collections.Counter(produced)
    assert max(expected.values()) == 1, "the generator must produce distinct identities"
    missing = set(expected) - set(counts)
    assert not missing, f"{len(missing)} of {len(expected)} items never arrived (or arrived altered)"
    unexpected = set(counts) - set(expected)
    assert not unexpected, f"{len(unexpected)} items arrived altered, e.g. {next(iter(unexpected))}"


def _owners(received: dict[str, list[T]], key: Callable[[T], Hashable | None]) -> dict[Hashable, set[str]]:
    """Key value -> the backends that received items with it (items whose key is None are skipped)."""
    owners: dict[Hashable, set[str]] = collections.defaultdict(set)
    for endpoint, items in received.items():
        for item in items:
            k = key(item)
            if k is not None:
                owners[k].add(endpoint)
    return owners


def _assert_grouped(received: dict[str, list[T]], key: Callable[[T], Hashable | None], what: str) -> int:
    owners = _owners(received, key)
    split = {k: sorted(o) for k, o in owners.items() if len(o) > 1}
    assert not split, f"{len(split)} {what} landed on more than one backend, e.g. {next(iter(split.items()))}"
    return len(owners)


def _assert_spread(received: dict[str, list[T]], outer: Callable[[T], Hashable], what: str) -> None:
    """Some ``outer`` group has items on several backends: routing is finer than ``outer``."""
    per_outer: dict[Hashable, set[str]] = collections.defaultdict(set)
    for endpoint, items in received.items():
        for item in items:
            per_outer[outer(item)].add(endpoint)
    assert any(len(e) > 1 for e in per_outer.values()), f"every {what} sits on a single backend"


def _assert_ring_owner(
    sinks: list[SinkProcess], received: dict[str, list[T]], key_bytes: Callable[[T], bytes | None]
) -> None:
    """Each item sits on the ring owner of its documented key bytes (the data plane's default ring)."""
    ring = build_ring("ringleader", [s.endpoint for s in sinks])
    wrong = [
        (item, endpoint, ring.owner_of(k))
        for endpoint, items in received.items()
        for item in items
        if (k := key_bytes(item)) is not None and ring.owner_of(k) != endpoint
    ]
    assert not wrong, f"{len(wrong)} items not on the owner of their key, e.g. {wrong[0]}"


def _all_backends_used(received: dict[str, list[T]]) -> None:
    assert all(received.values()), {ep: len(v) for ep, v in received.items()}


def _assert_counters(dp: DataPlaneProcess, signal: str, transport: str, n: int) -> None:
    assert dp.metric("ringleader_items_received_total", signal=signal, transport=transport) == n
    wait_until(lambda: dp.metric("ringleader_items_exported_total", signal=signal) == n, 10, what="exported counter")
    assert dp.metric("ringleader_items_failed_total") == 0
    assert dp.metric("ringleader_items_refused_total") == 0


# ----------------------------------------------------------------------------- logs -----


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_logs_by_service_by_default_keep_each_service_on_its_ring_owner(
    tmp_path: Path, sinks: list[SinkProcess], protocol: str
) -> None:
    dp = _start(tmp_path, sinks)
    try:
        endpoint = dp.grpc_endpoint if protocol == "grpc" else dp.http_endpoint
        produced = send_logs(endpoint, protocol, seed=3, gzip=protocol == "http")
        received = _collect(sinks, logs_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, lambda r: r.service, "services") == 4
        # Upstream's key for logs by service: the bare service name.
        _assert_ring_owner(sinks, received, lambda r: r.service.encode())
        _assert_counters(dp, "logs", protocol, len(produced))
        assert dp.metric("ringleader_items_missing_key_total", signal="logs") == 0
    finally:
        dp.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_logs_by_trace_id_put_every_record_of_a_trace_on_the_owner_of_its_hex_id(
    tmp_path: Path, sinks: list[SinkProcess], protocol: str
) -> None:
    dp = _start(tmp_path, sinks, routing_key="traceID")
    try:
        endpoint = dp.grpc_endpoint if protocol == "grpc" else dp.http_endpoint
        produced = send_logs(endpoint, protocol, traces=80, records_per_trace=4, untraced=40, seed=5)
        untraced = sum(1 for r in produced if not r.trace_id)
        assert untraced == 40
        received = _collect(sinks, logs_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, lambda r: r.trace_id or None, "traces") == 80
        # Upstream's key for logs by trace ID is the 32-character lowercase hex form, not the raw
        # 16 bytes spans are routed by.
        _assert_ring_owner(sinks, received, lambda r: r.trace_id.hex().encode() if r.trace_id else None)
        # A resource's records follow their traces, not the resource.
        _assert_spread(received, lambda r: (r.service, r.instance), "resource's records")
        _all_backends_used(received)
        _assert_counters(dp, "logs", protocol, len(produced))
        # Records without a trace ID are routed at random and counted as missing their key.
        assert dp.metric("ringleader_items_missing_key_total", signal="logs", key="traceID") == untraced
    finally:
        dp.stop()


def test_logs_by_resource_keep_each_resource_together_but_not_each_service(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    dp = _start(tmp_path, sinks, routing_key="resource")
    try:
        # 4 services x 4 instances: the chance that every service's instances share a backend is 27^-4.
        produced = send_logs(dp.grpc_endpoint, "grpc", instances=4, traces=80, untraced=40, seed=7)
        received = _collect(sinks, logs_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, lambda r: (r.service, r.instance), "resources") == 16
        _assert_spread(received, lambda r: r.service, "service's resources")
        _assert_counters(dp, "logs", "grpc", len(produced))
    finally:
        dp.stop()


def test_logs_by_attributes_group_by_every_routing_attribute_from_resource_and_record(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    # service.name comes from the resource, tenant from the record; every seventh record has no tenant.
    dp = _start(tmp_path, sinks, routing_key="attributes", routing_attributes=["service.name", "tenant"])
    try:
        produced = send_logs(dp.http_endpoint, "http", traces=80, untraced=40, seed=9)
        assert any(not r.tenant for r in produced)
        received = _collect(sinks, logs_of, len(produced))
        _assert_exactly_once(received, produced)
        # Records without the tenant attribute form one group per service (key "tenant=" empty).
        groups = _assert_grouped(received, lambda r: (r.service, r.tenant), "(service, tenant) pairs")
        assert groups > 30
        _assert_spread(received, lambda r: r.service, "service's records")
        _assert_spread(received, lambda r: r.tenant, "tenant's records")
        _assert_counters(dp, "logs", "http", len(produced))
    finally:
        dp.stop()


# -------------------------------------------------------------------------- metrics -----


def _stream(p: ProducedPoint) -> tuple[object, ...]:
    return (p.service, p.instance, p.scope, p.metric, p.unit, p.attributes)


def _tenant(p: ProducedPoint) -> str:
    return dict(p.attributes).get("tenant", "")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_metrics_by_service_by_default_keep_each_service_on_its_ring_owner(
    tmp_path: Path, sinks: list[SinkProcess], protocol: str
) -> None:
    dp = _start(tmp_path, sinks)
    try:
        endpoint = dp.grpc_endpoint if protocol == "grpc" else dp.http_endpoint
        produced = send_metrics(endpoint, protocol, seed=11)
        # 5 services x 3 instances x 12 metrics x 12 attribute sets, exported twice.
        assert len(produced) == 5 * 3 * 12 * 12 * 2
        received = _collect(sinks, points_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, lambda p: p.service, "services") == 5
        _assert_ring_owner(sinks, received, lambda p: p.service.encode())
        _assert_counters(dp, "metrics", protocol, len(produced))
    finally:
        dp.stop()


def test_metrics_by_resource_keep_each_resource_together_but_not_each_service(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    dp = _start(tmp_path, sinks, routing_key="resource")
    try:
        produced = send_metrics(dp.http_endpoint, "http", seed=13)
        received = _collect(sinks, points_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, lambda p: (p.service, p.instance), "resources") == 15
        # 5 services x 3 instances: every service on one backend by chance has probability 9^-5.
        _assert_spread(received, lambda p: p.service, "service's resources")
        _assert_counters(dp, "metrics", "http", len(produced))
    finally:
        dp.stop()


def test_metrics_by_metric_put_every_point_of_a_metric_name_on_its_ring_owner(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    dp = _start(tmp_path, sinks, routing_key="metric")
    try:
        produced = send_metrics(dp.grpc_endpoint, "grpc", seed=17)
        received = _collect(sinks, points_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, lambda p: p.metric, "metric names") == 12
        _assert_ring_owner(sinks, received, lambda p: p.metric.encode())
        # A resource's metrics are split between backends (12 names: 3^-11 to fail by chance).
        _assert_spread(received, lambda p: (p.service, p.instance), "resource's metrics")
        _assert_counters(dp, "metrics", "grpc", len(produced))
    finally:
        dp.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_metrics_by_stream_id_keep_each_stream_on_one_backend_across_exports(
    tmp_path: Path, sinks: list[SinkProcess], protocol: str
) -> None:
    dp = _start(tmp_path, sinks, routing_key="streamID")
    try:
        endpoint = dp.grpc_endpoint if protocol == "grpc" else dp.http_endpoint
        produced = send_metrics(endpoint, protocol, seed=19)
        received = _collect(sinks, points_of, len(produced))
        _assert_exactly_once(received, produced)
        # Every stream was exported twice (cumulative): both points on the same backend.
        assert _assert_grouped(received, _stream, "streams") == len(produced) // 2
        # One metric of one resource is split by its attribute sets.
        _assert_spread(received, lambda p: (p.service, p.instance, p.metric), "metric's streams")
        _all_backends_used(received)
        _assert_counters(dp, "metrics", protocol, len(produced))
    finally:
        dp.stop()


def test_metrics_by_attributes_group_points_by_their_attribute_across_resources(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    dp = _start(tmp_path, sinks, routing_key="attributes", routing_attributes=["tenant"])
    try:
        produced = send_metrics(dp.grpc_endpoint, "grpc", tenants=12, seed=23)
        received = _collect(sinks, points_of, len(produced))
        _assert_exactly_once(received, produced)
        assert _assert_grouped(received, _tenant, "tenants") == 12
        # A resource's points follow their tenant (12 tenants: 3^-11 to fail by chance).
        _assert_spread(received, lambda p: (p.service, p.instance), "resource's points")
        _assert_counters(dp, "metrics", "grpc", len(produced))
    finally:
        dp.stop()
