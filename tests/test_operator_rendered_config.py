"""The config the operator renders, run by the real data plane: SDK traces in, real backends out.

Only the listen addresses are moved to free loopback ports (a pod has the ports to itself; this machine
does not); everything else is the operator's text as the pod would read it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dataplane.config import load_config
from e2e.loadgen import send_traces
from ringleader_operator.builders import build_all
from ringleader_operator.owner import Owner
from ringleader_operator.render import CONFIG_FILE
from ringleader_operator.spec import parse_spec
from tests.harness import DataPlaneProcess, SinkProcess, spans_of, wait_until

OWNER = Owner("tier1", "observability", "uid-1")


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[list[SinkProcess]]:
    started = [SinkProcess(tmp_path, f"tier2-{i}").start() for i in range(3)]
    yield started
    for sink in started:
        sink.stop()


def test_the_rendered_config_delivers_sdk_traces_whole_to_one_backend_each(
    tmp_path: Path, sinks: list[SinkProcess]
) -> None:
    spec = parse_spec(
        {
            "resolver": {"static": {"hostnames": [s.endpoint for s in sinks]}},
            "otlp": {"tls": {"insecure": True}, "timeout": "2s"},
            "sendingQueue": {"enabled": True},
            "drainTimeout": "5s",
        }
    )
    dp = DataPlaneProcess(tmp_path, yaml.safe_load(build_all(OWNER, spec).config_text)).start()
    try:
        produced = send_traces(dp.grpc_endpoint, "grpc", traces=120, spans_per_trace=5, seed=11)
        assert len(produced) == 600

        def received() -> dict[str, list[tuple[bytes, bytes, str, str]]]:
            return {s.name: spans_of(s.records()) for s in sinks}

        wait_until(lambda: sum(map(len, received().values())) >= 600, 60, what="600 spans at the backends")
        got = received()
        counts = collections.Counter(span_id for spans in got.values() for _, span_id, _, _ in spans)
        assert set(counts) == {p.span_id for p in produced}
        assert max(counts.values()) == 1, "a span was delivered twice"
        owners: dict[bytes, set[str]] = collections.defaultdict(set)
        for name, spans in got.items():
            for trace_id, _, _, _ in spans:
                owners[trace_id].add(name)
        assert len(owners) == 120 and all(len(o) == 1 for o in owners.values()), "a trace was split"
        assert all(spans for spans in got.values()), {k: len(v) for k, v in got.items()}
        assert dp.metric("ringleader_items_failed_total") == 0
    finally:
        dp.stop()


def test_a_header_from_a_secret_reaches_the_data_plane_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec(
        {
            "resolver": {"k8s": {"service": "otelcol-tier2"}},
            "otlp": {
                "headers": [
                    {"name": "x-scope-orgid", "value": "team-$a"},
                    {"name": "authorization", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "token"}}},
                ]
            },
        }
    )
    desired = build_all(OWNER, spec)
    assert "s3cr3t" not in desired.config_text
    (container,) = next(o for o in desired.owned if o["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    (env,) = container["env"]
    # What the kubelet does with the Deployment's env entry: the Secret's value in the variable.
    monkeypatch.setenv(env["name"], "Bearer s3cr3t")
    path = tmp_path / CONFIG_FILE
    path.write_text(desired.config_text, encoding="utf-8")
    headers = load_config(path).exporter.protocol.headers
    assert headers == (("x-scope-orgid", "team-$a"), ("authorization", "Bearer s3cr3t"))
