"""Tier-2 events under steady load, Ringleader and upstream's loadbalancing exporter side by side.

Scenarios 2 and 5 of the lab: one tier-2 StatefulSet of upstream collectors doing tail sampling, and two
tier 1s in front of it at the same time, each behind its own Service:

- Ringleader, one ``LoadBalancingExporter`` (k8s resolver);
- the upstream collector v0.161.0 with its ``load_balancing`` exporter, k8s resolver and the RBAC its
  docs ask for (get/list/watch EndpointSlices in the tier-2 namespace).

For each event (tier 2 scaled 3 -> 5, scaled 5 -> 3, rolled by a pod-template change) two load-generator
pods start together, one per tier 1, each with its own trace IDs and the same pace; the event happens
while both run; then both are counted at tier 2 from the collectors' files: traces split across tier-2
pods, spans lost (the client was told accepted, tier 2 never wrote it), spans duplicated.

    python -m e2e.lab_events [--traces 900] [--rate 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from e2e.lab import Lab, LabError
from e2e.lab_pipeline import (
    OTELCOL_IMAGE,
    TIER2_PORT,
    Pipeline,
    Tally,
    apply,
    deploy,
    remove,
    tally,
    wait_for,
    wait_for_delivery,
)

UPSTREAM = "tier1-upstream"


def upstream_tier1_objects(namespace: str, tier2: str, replicas: int = 2) -> list[dict[str, Any]]:
    """Upstream's tier 1: the loadbalancing exporter with its k8s resolver, and the RBAC it needs."""
    labels = {"app.kubernetes.io/name": UPSTREAM}
    config = f"""\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
exporters:
  load_balancing:
    routing_key: traceID
    protocol:
      otlp:
        timeout: 5s
        tls:
          insecure: true
    resolver:
      k8s:
        service: {tier2}.{namespace}
        ports: [{TIER2_PORT}]
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: warn
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [load_balancing]
"""
    meta = {"name": UPSTREAM, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": UPSTREAM},
         "subjects": [{"kind": "ServiceAccount", "name": UPSTREAM, "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"config.yaml": config}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": labels, "ports": [{"name": "otlp-grpc", "port": 4317, "targetPort": 4317}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": UPSTREAM, "enableServiceLinks": False,
                "containers": [{
                    "name": "otelcol", "image": OTELCOL_IMAGE, "imagePullPolicy": "Never",
                    "args": ["--config=/etc/otelcol/config.yaml"],
                    "ports": [{"name": "otlp-grpc", "containerPort": 4317}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 13133}, "periodSeconds": 1},
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "runAsNonRoot": True, "runAsUser": 65532,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/otelcol"}],
                }],
                "volumes": [{"name": "config", "configMap": {"name": UPSTREAM}}],
            }},
        }},
    ]


@dataclass
class Row:
    event: str
    tier1: str
    tally: Tally
    refused: int


def _scale(pipe: Pipeline, replicas: int) -> Callable[[], None]:
    def event() -> None:
        pipe.lab.kubectl("scale", "statefulset", pipe.tier2, "-n", pipe.namespace, f"--replicas={replicas}")
        _wait_tier2(pipe, replicas)
    return event


def _roll(pipe: Pipeline) -> Callable[[], None]:
    def event() -> None:
        patch = {"spec": {"template": {"metadata": {"annotations": {"lab/rolled-at": str(time.time())}}}}}
        pipe.lab.kubectl("patch", "statefulset", pipe.tier2, "-n", pipe.namespace, "--type", "merge",
                         "-p", json.dumps(patch))
        pipe.lab.kubectl("rollout", "status", f"statefulset/{pipe.tier2}", "-n", pipe.namespace,
                         "--timeout=300s", timeout=310)
    return event


def _wait_tier2(pipe: Pipeline, replicas: int) -> None:
    def settled() -> bool:
        sts = json.loads(pipe.lab.kubectl("get", "statefulset", pipe.tier2, "-n", pipe.namespace, "-o",
                                          "json").stdout)
        st = sts.get("status", {})
        pods = pipe.lab.kubectl("get", "pods", "-n", pipe.namespace, "-l",
                                "app.kubernetes.io/component=tier2", "-o",
                                "jsonpath={.items[*].metadata.name}").stdout.split()
        return bool(st.get("readyReplicas") == replicas and st.get("replicas") == replicas and len(pods) == replicas)
    wait_for(f"tier 2 at {replicas} ready pods", settled, 300, interval=0.5)


def run_event(pipe: Pipeline, name: str, event: Callable[[], None] | None, traces: int, rate: float,
              tier1s: dict[str, str]) -> list[Row]:
    """Start one load per tier 1 (same pace), run ``event`` while they run, count each at tier 2."""
    runs = {t1: f"{name}-{t1}" for t1 in tier1s}
    for t1, run in runs.items():
        pipe.start_load(run, traces=traces, rate=rate, endpoint=tier1s[t1])
    for run in runs.values():
        wait_for(f"load {run} flowing", lambda run=run: pipe.load_running(run), 120)  # type: ignore[misc]
    if event is not None:
        event()
        still = [run for run in runs.values() if pipe.load_running(run)]
        if len(still) != len(runs):
            print(f"warning: the load ended before the event {name} finished for "
                  f"{set(runs.values()) - set(still)}; raise --traces", file=sys.stderr)
    summaries = {t1: pipe.await_load(run, timeout=600) for t1, run in runs.items()}
    wait_for_delivery(pipe, list(runs.values()), timeout=60)
    return [Row(name, t1, tally(pipe, [run]), int(summaries[t1]["refused"])) for t1, run in runs.items()]


def measure(lab: Lab, traces: int, rate: float, namespace: str = "lab-events") -> list[Row]:
    pipe = deploy(lab, namespace=namespace, tier2_replicas=3, tier1_replicas=2)
    try:
        apply(lab, upstream_tier1_objects(namespace, pipe.tier2))
        lab.kubectl("rollout", "status", f"deployment/{UPSTREAM}", "-n", namespace, "--timeout=180s", timeout=190)
        tier1s = {"ringleader": pipe.tier1_endpoint(), "upstream": _service_endpoint(pipe, UPSTREAM)}
        rows: list[Row] = []
        rows += run_event(pipe, "steady", None, traces, rate, tier1s)
        rows += run_event(pipe, "scale-3-to-5", _scale(pipe, 5), traces, rate, tier1s)
        rows += run_event(pipe, "scale-5-to-3", _scale(pipe, 3), traces, rate, tier1s)
        rows += run_event(pipe, "roll-tier2", _roll(pipe), traces, rate, tier1s)
        return rows
    finally:
        remove(pipe)


def _service_endpoint(pipe: Pipeline, name: str) -> str:
    ip = pipe.lab.kubectl("get", "service", name, "-n", pipe.namespace, "-o",
                          "jsonpath={.spec.clusterIP}").stdout.strip()
    return f"{ip}:4317"


def render(rows: list[Row]) -> str:
    head = (f"| {'event':<13} | {'tier 1':<10} | {'spans sent':>10} | {'accepted':>8} | {'traces split':>12} "
            f"| {'spans lost':>10} | {'spans duplicated':>16} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        t = r.tally
        lines.append(f"| {r.event:<13} | {r.tier1:<10} | {t.sent:>10} | {t.accepted:>8} | {t.split_traces:>12} "
                     f"| {t.lost:>10} | {t.duplicated:>16} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.lab_events", description=__doc__.split("\n\n")[0])
    p.add_argument("--traces", type=int, default=900, help="traces per load generator per event")
    p.add_argument("--rate", type=float, default=30.0, help="traces per second per load generator")
    args = p.parse_args(argv)
    lab = Lab.current()
    started_here = lab is None
    try:
        if lab is None:
            lab = Lab.up()
        else:
            lab.refresh_images()
        rows = measure(lab, args.traces, args.rate)
        print(render(rows))
        return 0
    except LabError as exc:
        print(f"lab_events: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_here and lab is not None:
            lab.down()


if __name__ == "__main__":
    sys.exit(main())
