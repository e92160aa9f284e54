"""status.py: what the operator reports, as pure functions of what it observed."""

from __future__ import annotations

from typing import Any

from ringleader_operator.status import (
    Observation,
    Problem,
    RingReport,
    compute_status,
    count_ready_endpoints,
    ring_report,
)

SELECTOR = "app.kubernetes.io/name=ringleader,app.kubernetes.io/instance=t,app.kubernetes.io/component=dataplane"


def deployment(wanted: int, ready: int, updated: int | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": generation, "replicas": wanted, "readyReplicas": ready,
                   "updatedReplicas": wanted if updated is None else updated},
    }  # fmt: skip


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def observe(**kwargs: Any) -> Observation:
    kwargs.setdefault("generation", 3)
    return Observation(selector=SELECTOR, config_hash="abc", config_map="t-ringleader-abc", **kwargs)


def test_all_replicas_ready_is_ready_not_progressing_not_degraded_and_every_condition_has_the_generation() -> None:
    status = compute_status({}, observe(deployment=deployment(2, 2)), "2026-12-02T10:00:00Z")
    assert conditions(status) == {
        "Ready": ("True", "Available"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert (status["replicas"], status["readyReplicas"], status["selector"]) == (2, 2, SELECTOR)


def test_a_rollout_in_progress_is_progressing_and_pods_without_readiness_say_what_to_check() -> None:
    rolling = compute_status({}, observe(deployment=deployment(3, 2, updated=1)), "t0")
    assert conditions(rolling)["Progressing"] == ("True", "RollingOut")
    assert conditions(rolling)["Ready"] == ("False", "RollingOut")
    none_ready = compute_status({}, observe(deployment=deployment(2, 0)), "t0")
    ready = next(c for c in none_ready["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NoReadyReplicas" and "/readyz" in ready["message"]


def test_last_transition_time_moves_only_when_a_condition_flips() -> None:
    first = compute_status({}, observe(deployment=deployment(2, 0)), "2026-12-02T10:00:00Z")
    same = compute_status(first, observe(deployment=deployment(2, 0)), "2026-12-02T10:05:00Z")
    assert same["conditions"] == first["conditions"]
    flipped = compute_status(same, observe(deployment=deployment(2, 2)), "2026-12-02T10:09:00Z")
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {"Ready": "2026-12-02T10:09:00Z", "Progressing": "2026-12-02T10:09:00Z",
                     "Degraded": "2026-12-02T10:00:00Z"}  # fmt: skip


def test_an_invalid_spec_keeps_the_last_config_and_names_the_field_in_degraded_and_ready() -> None:
    previous = compute_status({}, observe(deployment=deployment(2, 2)), "t0")
    problem = Problem("InvalidSpec", "spec.extraConfig.bogus: unknown key")
    status = compute_status(
        previous,
        Observation(generation=4, selector=SELECTOR, problems=[problem], spec_valid=False,
                    deployment=deployment(2, 2)),
        "t1",
    )  # fmt: skip
    assert conditions(status)["Degraded"] == ("True", "InvalidSpec")
    assert conditions(status)["Ready"] == ("False", "InvalidSpec")
    assert "spec.extraConfig.bogus" in next(c for c in status["conditions"] if c["type"] == "Ready")["message"]
    assert (status["configHash"], status["configMapName"]) == ("abc", "t-ringleader-abc")
    assert status["observedGeneration"] == 4


def test_the_first_problem_names_the_degraded_reason() -> None:
    problems = [Problem("ApplyFailed", "a"), Problem("Tier2ServiceNotFound", "b")]
    status = compute_status({}, observe(deployment=deployment(1, 1), problems=problems), "t0")
    assert conditions(status)["Degraded"] == ("True", "ApplyFailed")


def test_replicas_that_disagree_about_the_backend_set_are_reported_and_degrade() -> None:
    rings = [
        RingReport("pod-a", ("10.0.0.1:4317", "10.0.0.2:4317")),
        RingReport("pod-b", ("10.0.0.1:4317", "10.0.0.2:4317")),
        RingReport("pod-c", ("10.0.0.1:4317",)),
        RingReport("pod-d", error="timeout"),
    ]
    status = compute_status({}, observe(deployment=deployment(4, 4), rings=rings), "t0")
    ring = status["ring"]
    assert ring["consistent"] is False and ring["replicasReporting"] == 3
    assert [(s["backends"], s["pods"]) for s in ring["backendSets"]] == [(2, ["pod-a", "pod-b"]), (1, ["pod-c"])]
    assert ring["unreachable"] == ["pod-d"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "BackendSetDisagreement" and "pod-c: 1 backends" in degraded["message"]


def test_replicas_that_agree_are_consistent() -> None:
    rings = [RingReport("a", ("x:1", "y:1")), RingReport("b", ("x:1", "y:1"))]
    status = compute_status({}, observe(deployment=deployment(2, 2), rings=rings), "t0")
    assert status["ring"]["consistent"] is True and status["ring"]["unreachable"] is None
    assert conditions(status)["Degraded"] == ("False", "AsExpected")


def test_ring_report_reads_the_data_planes_debug_ring_document() -> None:
    report = ring_report("p", {"version": 7, "endpoints": ["b:1", "a:1"], "queues": {}})
    assert report == RingReport("p", ("a:1", "b:1"), 7)


def test_ready_backends_count_distinct_ready_addresses_and_skip_terminating_ones() -> None:
    slices: list[dict[str, Any]] = [
        {"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                       {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                       {"addresses": ["10.0.0.3"]}]},
        {"endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                       {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "terminating": True}}]},
        {"endpoints": None},
    ]  # fmt: skip
    assert count_ready_endpoints(slices) == 2
