"""The whole two-tier pipeline on a real one-node cluster (the lab, :mod:`e2e.lab`).

Scenario 1: installed with ``kubectl apply`` and, separately, with ``helm install``: the operator comes up,
the resource becomes Ready, SDK traffic through the tier-1 Service reaches the tier-2 pods, every span
once, every trace whole on one tier-2 pod.  Scenario 3: tier 1 rolls (the resource
changes) and a tier-1 pod is deleted while paced traffic flows: no span the client was told was accepted
is lost.  Everything is proven with counts of span and trace IDs written by the tier-2 collectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.lab_pipeline import (
    Pipeline,
    deploy,
    helm_binary,
    operator_available,
    remove,
    wait_for,
    wait_for_delivery,
)

# A pipeline install, its load and its removal take minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _namespace(request: pytest.FixtureRequest) -> str:
    return str(request.node.name).replace("_", "-").lower()[:40].strip("-")


@pytest.fixture
def pipeline(lab: Any, request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """Tier 2, and tier 1 through the operator installed with ``kubectl apply`` of deploy/install.yaml."""
    pipe = deploy(lab, namespace=_namespace(request), tier2_replicas=3, tier1_replicas=2, install="kubectl")
    try:
        yield pipe
    finally:
        remove(pipe)


@pytest.fixture
def helm_pipeline(lab: Any, request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """The same, with the operator installed by ``helm install`` of charts/ringleader in the namespace."""
    if not operator_available():
        pytest.skip("the operator runtime (operator/ringleader_operator/__main__.py, deploy/) is not in this tree")
    pipe = deploy(lab, namespace=_namespace(request), tier2_replicas=3, tier1_replicas=2, install="helm")
    try:
        yield pipe
    finally:
        import subprocess

        remove(pipe, before_namespace=lambda: subprocess.run(
            [str(helm_binary()), "uninstall", "ringleader", "--namespace", pipe.namespace, "--wait"],
            env=lab.env, capture_output=True, timeout=180))


def _every_span_once_every_trace_whole(pipe: Pipeline, run: str) -> None:
    summary = pipe.run_load(run, traces=400, rate=100)
    assert summary["refused"] == 0, summary
    t = wait_for_delivery(pipe, [run])
    assert t.sent == 400 * 6 and t.accepted == t.sent
    assert t.lost == 0 and t.duplicated == 0 and t.unexpected == 0, t
    assert t.split_traces == 0, t
    assert sorted(t.per_pod_spans) == ["tier2-0", "tier2-1", "tier2-2"]
    assert all(n > 0 for n in t.per_pod_spans.values()), t.per_pod_spans
    assert sum(t.per_pod_traces.values()) == 400


def test_installed_with_helm_the_resource_is_ready_and_every_span_arrives_once_every_trace_whole(
    helm_pipeline: Pipeline,
) -> None:
    assert helm_pipeline.resource_ready(), helm_pipeline.resource_status()
    _every_span_once_every_trace_whole(helm_pipeline, "s1-helm")


def test_sdk_traffic_through_the_tier1_service_reaches_tier2_every_span_once_every_trace_whole(
    pipeline: Pipeline,
) -> None:
    summary = pipeline.run_load("s1", traces=400, rate=100)
    assert summary["refused"] == 0, summary
    t = wait_for_delivery(pipeline, ["s1"])
    assert t.sent == 400 * 6 and t.accepted == t.sent
    assert t.lost == 0 and t.duplicated == 0 and t.unexpected == 0, t
    assert t.split_traces == 0, t
    # All three tier-2 pods got a share: the ring spread the traces rather than pinning them.
    assert sorted(t.per_pod_spans) == ["tier2-0", "tier2-1", "tier2-2"]
    assert all(n > 0 for n in t.per_pod_spans.values()), t.per_pod_spans
    assert sum(t.per_pod_traces.values()) == 400


def test_installed_with_kubectl_apply_the_operator_makes_the_resource_ready(pipeline: Pipeline) -> None:
    if not operator_available():
        pytest.skip("the operator runtime (operator/ringleader_operator/__main__.py, deploy/) is not in this tree")
    conditions = {c["type"]: c["status"] for c in pipeline.resource_status().get("conditions", [])}
    assert conditions.get("Ready") == "True", conditions


def test_rolling_tier1_and_deleting_a_tier1_pod_lose_no_accepted_span(pipeline: Pipeline) -> None:
    pipeline.start_load("s3", traces=1500, rate=50)
    wait_for("load flowing", lambda: pipeline.load_running("s3"), 120)
    before = set(pipeline.tier1_pods())
    # Roll tier 1 through the resource: a new sending-queue size changes the config, so every pod is replaced.
    pipeline.update_resource({"sendingQueue": {"enabled": True, "numConsumers": 10, "queueSize": 2000}})
    after_roll = set(pipeline.tier1_pods())
    assert before.isdisjoint(after_roll), (before, after_roll)
    # Then delete one of the new pods (graceful, like a node drain or an eviction) while the load still runs.
    assert pipeline.load_running("s3"), "the load ended before the pod was deleted; raise traces or lower rate"
    victim = sorted(after_roll)[0]
    pipeline.lab.kubectl("delete", "pod", victim, "-n", pipeline.namespace, "--wait=false")
    wait_for("the deleted tier-1 pod replaced", lambda: victim not in pipeline.tier1_pods()
             and len(pipeline.tier1_pods()) == 2, 120)
    summary = pipeline.await_load("s3", timeout=300)
    t = wait_for_delivery(pipeline, ["s3"])
    assert t.sent == 1500 * 6
    assert t.lost == 0, f"{t.lost} spans accepted by tier 1 never reached tier 2 ({summary})"
    assert t.unexpected == 0
    # Reported, not asserted: a retried request may duplicate, and the counts say how often.
    print(f"roll + delete: accepted {t.accepted}/{t.sent}, duplicated {t.duplicated}, split {t.split_traces}")


def test_changing_the_routing_key_rolls_tier1_and_status_goes_progressing_then_ready(pipeline: Pipeline) -> None:
    """Scenario 4: the resource's routing key changes; a watch on the resource records every status it
    goes through: Progressing=True for the new generation, then Ready=True for it, and the pods are new."""
    if not operator_available():
        pytest.skip("the operator runtime (operator/ringleader_operator/__main__.py, deploy/) is not in this tree")
    import json
    import subprocess
    import threading

    lab = pipeline.lab
    watch = subprocess.Popen(
        [str(lab.bin / "kubectl"), "get", "loadbalancingexporter", pipeline.tier1, "-n", pipeline.namespace,
         "--watch", "--output-watch-events", "-o", "json"], stdout=subprocess.PIPE, text=True, env=lab.env)
    seen: list[tuple[int, dict[str, str]]] = []

    def read() -> None:
        assert watch.stdout is not None
        buf = ""
        for line in watch.stdout:
            buf += line
            try:
                event = json.loads(buf)
            except ValueError:
                continue
            buf = ""
            obj = event.get("object", {})
            status = obj.get("status") or {}
            conds = {c["type"]: c["status"] for c in status.get("conditions", [])
                     if c.get("observedGeneration") == obj["metadata"]["generation"]}
            seen.append((obj["metadata"]["generation"], conds))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for("the watch's first event", lambda: bool(seen), 30)
        before = set(pipeline.tier1_pods())
        generation = seen[-1][0]
        pipeline.update_resource({"routingKey": "service"})
        wait_for("Ready=True for the new generation", lambda: any(
            g > generation and c.get("Ready") == "True" for g, c in seen), 120)
    finally:
        watch.terminate()
        watch.wait(10)
    new = [(g, c) for g, c in seen if g > generation]
    first_ready = next(i for i, (_, c) in enumerate(new) if c.get("Ready") == "True")
    assert any(c.get("Progressing") == "True" for _, c in new[:first_ready + 1]), new
    assert set(pipeline.tier1_pods()).isdisjoint(before)
    config = lab.kubectl("get", "configmaps", "-n", pipeline.namespace, "-o", "json").stdout
    assert "routing_key: service" in config
