"""The two-tier tail-sampling pipeline on the lab, and the counts that prove it.

On a running :class:`e2e.lab.Lab` this module installs, in one namespace:

- tier 2: a StatefulSet of upstream collectors (``localhost/otelcol``) behind a headless Service, each
  doing tail sampling (``always_sample``, so every span must come out) and writing what it keeps with the
  file exporter to ``<lab data dir>/<run>/tier2/<pod>.jsonl`` (a hostPath): the exact spans and trace IDs
  per tier-2 pod, read back on the host;
- tier 1: one ``LoadBalancingExporter`` (Ringleader) whose k8s resolver watches that Service.  The
  operator is installed from ``deploy/`` when the repository has it; without it the objects the
  operator would own come from ``ringleader_operator.build_all`` and are applied here (said so in the
  result, and the resource has no status then);
- load: a pod running :mod:`e2e.lab_loadgen` (the OpenTelemetry SDK, several services) against the tier-1
  Service, recording per span whether the client was told it was accepted.

:func:`tally` then counts, per tier-2 pod, spans and traces, and overall: spans lost (accepted by tier 1,
never seen at tier 2), spans duplicated, traces seen on more than one tier-2 pod.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.lab import REPO, Lab, LabError

OTELCOL_IMAGE = "localhost/otelcol:0.161.0"
LOADGEN_IMAGE = "localhost/loadgen:lab"
TIER2_PORT = 4317


def tier2_config(decision_wait: str = "1s") -> str:
    """The tier-2 collector: OTLP in, tail sampling keeping everything, one file per pod out."""
    return f"""\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:{TIER2_PORT}
processors:
  tail_sampling:
    decision_wait: {decision_wait}
    num_traces: 200000
    policies:
      - name: keep-everything
        type: always_sample
  batch:
    timeout: 200ms
exporters:
  file:
    path: /data/${{env:POD_NAME}}.jsonl
    # Append: a StatefulSet pod that restarts (a tier-2 roll) keeps its name, and the exporter's default
    # truncates the file, erasing what its predecessor wrote (which then counted as lost).
    append: true
    flush_interval: 100ms
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
      processors: [tail_sampling, batch]
      exporters: [file]
"""


def _security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": 65532, "runAsGroup": 65532, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def tier2_objects(namespace: str, name: str, replicas: int, host_dir: Path) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "tier2"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
         "data": {"config.yaml": tier2_config()}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": False,
                  "ports": [{"name": "otlp-grpc", "port": TIER2_PORT, "targetPort": TIER2_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": namespace},
         "spec": {
             "serviceName": name, "replicas": replicas, "podManagementPolicy": "Parallel",
             "selector": {"matchLabels": labels},
             "template": {"metadata": {"labels": labels}, "spec": {
                 "automountServiceAccountToken": False, "enableServiceLinks": False,
                 "terminationGracePeriodSeconds": 30,
                 "containers": [{
                     "name": "otelcol", "image": OTELCOL_IMAGE, "imagePullPolicy": "Never",
                     "args": ["--config=/etc/otelcol/config.yaml"],
                     "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                     "ports": [{"name": "otlp-grpc", "containerPort": TIER2_PORT}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": 13133}, "periodSeconds": 1},
                     "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                     "securityContext": _security(),
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/otelcol"},
                                      {"name": "data", "mountPath": "/data"}],
                 }],
                 "volumes": [{"name": "config", "configMap": {"name": name}},
                             {"name": "data", "hostPath": {"path": str(host_dir), "type": "Directory"}}],
             }},
         }},
    ]


def exporter_resource(namespace: str, name: str, tier2: str, replicas: int, image: str,
                      extra_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas, "image": image, "imagePullPolicy": "Never", "routingKey": "traceID",
        "resolver": {"k8s": {"service": tier2, "ports": [TIER2_PORT]}},
        "otlp": {"tls": {"insecure": True}, "timeout": "5s"},
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    }
    spec.update(extra_spec or {})
    return {"apiVersion": "ringleader.dev/v1alpha1", "kind": "LoadBalancingExporter",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def apply(lab: Lab, objects: Iterable[dict[str, Any]]) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    lab.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "ringleader-lab", "-f", "-",
                input=json.dumps(doc))


def wait_for(what: str, probe: Any, timeout: float, interval: float = 0.25) -> Any:
    """Poll ``probe`` until it returns something truthy; raise naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def operator_available() -> bool:
    """True when the repository carries the operator's runtime and its install manifests."""
    return (REPO / "operator" / "ringleader_operator" / "__main__.py").exists() and (REPO / "deploy").is_dir()


@dataclass
class Pipeline:
    """A deployed two-tier pipeline in ``namespace``; ``host_dir`` holds what tier 2 and the load wrote."""

    lab: Lab
    namespace: str
    tier1: str
    tier2: str
    host_dir: Path
    tier2_replicas: int
    operator: bool
    notes: list[str] = field(default_factory=list)

    @property
    def tier1_service(self) -> str:
        return f"{self.tier1}-ringleader"

    def tier1_endpoint(self) -> str:
        ip = self.lab.kubectl("get", "service", self.tier1_service, "-n", self.namespace, "-o",
                              "jsonpath={.spec.clusterIP}").stdout.strip()
        return f"{ip}:4317"

    def resource_ready(self) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in self.resource_status().get("conditions", []))

    def resource_status(self) -> dict[str, Any]:
        out = self.lab.kubectl("get", "loadbalancingexporter", self.tier1, "-n", self.namespace, "-o", "json")
        status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
        return status

    def run_load(self, run: str, traces: int, rate: float, services: int = 5, spans_per_trace: int = 6,
                 timeout: float = 300) -> dict[str, Any]:
        """Run one load-generator pod to completion; returns its summary line."""
        self.start_load(run, traces, rate, services, spans_per_trace)
        return self.await_load(run, timeout)

    def start_load(self, run: str, traces: int, rate: float, services: int = 5, spans_per_trace: int = 6,
                   endpoint: str | None = None) -> None:
        """Start the load-generator pod ``loadgen-<run>`` (paced at ``rate`` traces per second) sending to
        ``endpoint`` (default: the Ringleader tier-1 Service)."""
        svc_names = ["frontend", "checkout", "payment", "inventory", "shipping", "auth", "search", "ads"][:services]
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"loadgen-{run}", "namespace": self.namespace,
                         "labels": {"app.kubernetes.io/name": "loadgen"}},
            "spec": {
                "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                "containers": [{
                    "name": "loadgen", "image": LOADGEN_IMAGE, "imagePullPolicy": "Never",
                    "command": ["python3", "-m", "e2e.lab_loadgen", "--endpoint", endpoint or self.tier1_endpoint(),
                                "--traces", str(traces), "--rate", str(rate), "--services", ",".join(svc_names),
                                "--spans-per-trace", str(spans_per_trace), "--seed", str(sum(map(ord, run))),
                                "--out", f"/data/loadgen-{run}.jsonl"],
                    "securityContext": _security(),
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
                "volumes": [{"name": "data", "hostPath": {"path": str(self.host_dir), "type": "Directory"}}],
            },
        }
        apply(self.lab, [pod])

    def load_running(self, run: str) -> bool:
        phase = self.lab.kubectl("get", "pod", f"loadgen-{run}", "-n", self.namespace, "-o",
                                 "jsonpath={.status.phase}", check=False).stdout.strip()
        return phase == "Running"

    def await_load(self, run: str, timeout: float = 300) -> dict[str, Any]:
        """Wait for ``loadgen-<run>`` to finish; its summary line (spans, accepted, refused, traces)."""
        def finished() -> str:
            phase = self.lab.kubectl("get", "pod", f"loadgen-{run}", "-n", self.namespace, "-o",
                                     "jsonpath={.status.phase}", check=False).stdout.strip()
            return phase if phase in ("Succeeded", "Failed") else ""

        phase = wait_for(f"load generator {run}", finished, timeout, interval=0.5)
        logs = self.lab.kubectl("logs", f"loadgen-{run}", "-n", self.namespace, check=False).stdout
        if phase != "Succeeded":
            raise LabError(f"load generator {run} {phase}:\n{logs[-3000:]}")
        summary: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
        return summary

    def tier1_pods(self) -> list[str]:
        """The tier-1 pods that are not terminating."""
        out = self.lab.kubectl("get", "pods", "-n", self.namespace, "-l",
                               f"app.kubernetes.io/instance={self.tier1},app.kubernetes.io/component=dataplane",
                               "-o", "json")
        return [p["metadata"]["name"] for p in json.loads(out.stdout)["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def update_resource(self, patch: dict[str, Any], timeout: float = 180) -> None:
        """Merge-patch the LoadBalancingExporter's spec and wait until tier 1 has rolled out."""
        before = self._deployment()["metadata"]["generation"]
        self.lab.kubectl("patch", "loadbalancingexporter", self.tier1, "-n", self.namespace, "--type", "merge",
                         "-p", json.dumps({"spec": patch}))
        if not self.operator:
            resource = json.loads(self.lab.kubectl("get", "loadbalancingexporter", self.tier1, "-n",
                                                   self.namespace, "-o", "json").stdout)
            _apply_operator_objects(self.lab, resource)
        wait_for("the new tier-1 generation", lambda: self._rolled_out(before), timeout, interval=0.5)
        if self.operator:
            wait_for("LoadBalancingExporter Ready again", self.resource_ready, timeout)

    def _deployment(self) -> dict[str, Any]:
        dep: dict[str, Any] = json.loads(self.lab.kubectl("get", "deployment", self.tier1_service, "-n",
                                                          self.namespace, "-o", "json").stdout)
        return dep

    def _rolled_out(self, before: int) -> bool:
        dep = self._deployment()
        st, want = dep.get("status", {}), dep["spec"]["replicas"]
        generation = dep["metadata"]["generation"]
        return bool(generation > before and st.get("observedGeneration") == generation
                    and st.get("updatedReplicas") == want and st.get("readyReplicas") == want
                    and st.get("replicas") == want)

    def produced(self, run: str) -> list[dict[str, Any]]:
        path = self.host_dir / f"loadgen-{run}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


OPERATOR_NAMESPACE = "ringleader-system"


def install_operator_with_kubectl(lab: Lab, timeout: float = 180) -> None:
    """``kubectl apply`` the CRD (crds/) and the operator (deploy/), as docs/install.md says; wait until it runs."""
    lab.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    lab.kubectl("wait", "--for=condition=Established", "crd/loadbalancingexporters.ringleader.dev", "--timeout=60s")
    lab.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "deploy"))
    lab.kubectl("rollout", "status", "deployment/ringleader", "-n", OPERATOR_NAMESPACE,
                f"--timeout={int(timeout)}s", timeout=timeout + 10)


def uninstall_operator_with_kubectl(lab: Lab, timeout: float = 120) -> None:
    lab.kubectl("delete", "--ignore-not-found", "--wait=true", f"--timeout={int(timeout)}s", "-f",
                str(REPO / "deploy" / "install.yaml"), check=False, timeout=timeout + 10)


def helm_binary() -> Path:
    """helm, built once from Go modules by e2e/build_tool.sh (delivery's script), cached."""
    import subprocess

    out = subprocess.run(["bash", str(REPO / "e2e" / "build_tool.sh"), "helm"], capture_output=True, text=True)
    if out.returncode != 0:
        raise LabError(f"building helm failed: {out.stderr.strip()[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def install_operator_with_helm(lab: Lab, namespace: str, timeout: float = 180) -> None:
    """``helm install`` the chart (charts/ringleader) into ``namespace``, watching that namespace.

    The CRD comes from crds/ (``crds.create=false``): a CRD another install path already made carries no
    Helm ownership, and Helm refuses to adopt it.
    """
    import subprocess

    lab.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    lab.kubectl("wait", "--for=condition=Established", "crd/loadbalancingexporters.ringleader.dev", "--timeout=60s")
    image = lab.ringleader_image
    repo, _, tag = image.rpartition(":")
    proc = subprocess.run(
        [str(helm_binary()), "install", "ringleader", str(REPO / "charts" / "ringleader"), "--namespace", namespace,
         "--set", f"image.repository={repo}", "--set", f"image.tag={tag}", "--set", "crds.create=false",
         "--wait", "--timeout", f"{int(timeout)}s"],
        capture_output=True, text=True, env=lab.env, timeout=timeout + 30)
    if proc.returncode != 0:
        raise LabError(f"helm install failed: {proc.stderr.strip()[-3000:]}")


def deploy(lab: Lab, namespace: str = "ringleader-demo", tier2_replicas: int = 3, tier1_replicas: int = 2,
           tier1_spec: dict[str, Any] | None = None, timeout: float = 180, install: str = "kubectl") -> Pipeline:
    """Install tier 2, the CRD, the operator and one LoadBalancingExporter; wait until tier 2 and tier 1
    are ready and (with the operator) the resource is Ready.

    ``install``: ``kubectl`` (deploy/install.yaml, the operator watches all namespaces), ``helm`` (the
    chart in ``namespace``), or ``none`` (no operator: the objects come from ``build_all``, applied here).
    Without the operator's runtime in the tree, ``none`` is used whatever was asked.
    """
    run_dir = lab.data_dir / f"{namespace}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(mode=0o1777)
    run_dir.chmod(0o1777)
    if not operator_available():
        install = "none"
    pipe = Pipeline(lab, namespace, "tier1", "tier2", run_dir, tier2_replicas, operator=install != "none")
    # A run killed on a reused lab may have left the namespace, and its resource a finalizer no operator
    # will ever remove (the operator went with that run): start from nothing.
    _drop_finalizers(lab, namespace)
    lab.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", f"--timeout={int(timeout)}s",
                timeout=timeout + 10)
    lab.kubectl("create", "namespace", namespace)
    lab.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    lab.kubectl("wait", "--for=condition=Established", "crd/loadbalancingexporters.ringleader.dev", "--timeout=60s")
    apply(lab, tier2_objects(namespace, pipe.tier2, tier2_replicas, run_dir))
    resource = exporter_resource(namespace, pipe.tier1, pipe.tier2, tier1_replicas, lab.ringleader_image, tier1_spec)
    if install == "kubectl":
        install_operator_with_kubectl(lab, timeout)
        apply(lab, [resource])
    elif install == "helm":
        uninstall_operator_with_kubectl(lab)  # one operator per resource: the cluster-wide one must go
        install_operator_with_helm(lab, namespace, timeout)
        apply(lab, [resource])
        pipe.notes.append("operator installed with helm")
    else:
        _apply_operator_objects(lab, resource)
        pipe.notes.append("operator runtime not in this tree: tier-1 objects built by "
                          "ringleader_operator.build_all and applied by the lab (no status)")
    lab.kubectl("rollout", "status", f"statefulset/{pipe.tier2}", "-n", namespace, f"--timeout={int(timeout)}s",
                timeout=timeout + 10)
    wait_for("tier-1 Deployment", lambda: lab.kubectl(
        "get", "deployment", pipe.tier1_service, "-n", namespace, check=False).returncode == 0, timeout)
    lab.kubectl("rollout", "status", f"deployment/{pipe.tier1_service}", "-n", namespace,
                f"--timeout={int(timeout)}s", timeout=timeout + 10)
    if pipe.operator:
        wait_for("LoadBalancingExporter Ready", pipe.resource_ready, timeout)
    return pipe


def _drop_finalizers(lab: Lab, namespace: str) -> None:
    out = lab.kubectl("get", "loadbalancingexporters", "-n", namespace, "-o", "name", check=False)
    for name in out.stdout.split() if out.returncode == 0 else []:
        lab.kubectl("patch", name, "-n", namespace, "--type", "merge", "-p", '{"metadata":{"finalizers":null}}',
                    check=False)


def _apply_operator_objects(lab: Lab, resource: dict[str, Any]) -> None:
    """Do by hand what the operator would: apply the resource, then every object build_all makes of it."""
    from ringleader_operator.builders import build_all
    from ringleader_operator.owner import Owner
    from ringleader_operator.spec import parse_spec

    resource = {k: resource[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    resource["metadata"] = {k: resource["metadata"][k] for k in ("name", "namespace")}
    apply(lab, [resource])
    meta = json.loads(lab.kubectl("get", "loadbalancingexporter", resource["metadata"]["name"], "-n",
                                  resource["metadata"]["namespace"], "-o", "json").stdout)
    desired = build_all(Owner.from_metadata(meta["metadata"]), parse_spec(meta["spec"]))
    apply(lab, [*desired.owned, *desired.cross_namespace])


# ------------------------------------------------------------------------------------ counting ----


@dataclass
class Tally:
    """What tier 2 received, against what the load generator was told was accepted."""

    per_pod_spans: dict[str, int]
    per_pod_traces: dict[str, int]
    sent: int
    accepted: int
    traces_sent: int
    seen_unique: int
    lost: int
    duplicated: int
    split_traces: int
    unexpected: int

    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.split_traces == 0 and self.unexpected == 0


def read_tier2(host_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """(trace ID, span ID) of every span each tier-2 pod wrote, in file order (a torn last line skipped)."""
    seen: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(host_dir.glob("*.jsonl")):
        if path.name.startswith("loadgen-"):
            continue
        spans: list[tuple[str, str]] = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                req = json.loads(line)
            except ValueError:
                continue
            for rs in req.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        spans.append((span["traceId"].lower(), span["spanId"].lower()))
        seen[path.stem] = spans
    return seen


def tally(pipe: Pipeline, runs: list[str]) -> Tally:
    produced = [rec for run in runs for rec in pipe.produced(run)]
    accepted = {(str(r["trace"]), str(r["span"])) for r in produced if r["accepted"]}
    all_sent = {(str(r["trace"]), str(r["span"])) for r in produced}
    # Only the traces of these runs: other runs' spans (earlier events of the same pipeline) are not counted.
    run_traces = {t for t, _ in all_sent}
    seen = {pod: [s for s in spans if s[0] in run_traces] for pod, spans in read_tier2(pipe.host_dir).items()}
    counts: Counter[tuple[str, str]] = Counter()
    trace_pods: dict[str, set[str]] = defaultdict(set)
    for pod, spans in seen.items():
        counts.update(spans)
        for trace_id, _ in spans:
            trace_pods[trace_id].add(pod)
    return Tally(
        per_pod_spans={pod: len(spans) for pod, spans in seen.items()},
        per_pod_traces={pod: len({t for t, _ in spans}) for pod, spans in seen.items()},
        sent=len(all_sent), accepted=len(accepted), traces_sent=len({t for t, _ in all_sent}),
        seen_unique=len(counts), lost=len(accepted - counts.keys()),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        split_traces=sum(1 for pods in trace_pods.values() if len(pods) > 1),
        unexpected=len(counts.keys() - all_sent),
    )


def wait_for_delivery(pipe: Pipeline, runs: list[str], timeout: float = 120) -> Tally:
    """Wait until tier 2 holds every accepted span (or the deadline), then until the files stop growing
    for one flush period, so late duplicates are counted too."""
    def complete() -> Tally | None:
        t = tally(pipe, runs)
        return t if t.lost == 0 else None

    with contextlib.suppress(LabError):  # the tally below reports what is missing
        wait_for("every accepted span at tier 2", complete, timeout, interval=0.5)
    previous = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sizes = tuple(sorted((p.name, p.stat().st_size) for p in pipe.host_dir.glob("*.jsonl")))
        if sizes == previous:
            break
        previous = sizes
        time.sleep(1.0)  # the file exporter flushes every 100 ms and batch waits 200 ms
    return tally(pipe, runs)


def remove(pipe: Pipeline, timeout: float = 120, before_namespace: Any = None) -> None:
    """Delete the resource first (while its operator runs, so the finalizer is honoured), then the namespace
    without waiting for its pods to finish terminating (``lab down`` ends whatever is left)."""
    pipe.lab.kubectl("delete", "loadbalancingexporters", "--all", "-n", pipe.namespace, "--wait=true",
                     f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
    if before_namespace is not None:
        before_namespace()
    pipe.lab.kubectl("delete", "namespace", pipe.namespace, "--wait=false", check=False, timeout=timeout)
