"""``ringleader-dataplane ring``: owners of keys, the share table, config files and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataplane.ring import build_ring
from dataplane.ring_cli import main

REPO = Path(__file__).resolve().parent.parent
EPS = ["tier2-a:4317", "tier2-b:4317", "tier2-c:4317"]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_id_key_is_hashed_as_its_16_raw_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--endpoints", ",".join(EPS), TRACE_ID)
    assert code == 0
    owner = build_ring("ringleader", EPS).owner_of(bytes.fromhex(TRACE_ID))
    assert out == f"{TRACE_ID}\ttraceID\t{owner}\n"


def test_other_keys_are_service_names_hashed_as_trace_routing_builds_the_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--endpoints", ",".join(EPS), "checkout", "zürich")
    assert code == 0
    ring = build_ring("ringleader", EPS)
    assert out.splitlines() == [
        f"checkout\tservice\t{ring.owner_of(b'service.name=checkout|')}",
        f"zürich\tservice\t{ring.owner_of('service.name=zürich|'.encode())}",
    ]


@pytest.mark.parametrize(
    ("signal", "routing_key", "value", "hashed"),
    [
        ("traces", "service", "checkout", b"service.name=checkout|"),
        ("logs", "service", "checkout", b"checkout"),
        ("metrics", "service", "checkout", b"checkout"),
        ("traces", "traceID", TRACE_ID, bytes.fromhex(TRACE_ID)),
        ("logs", "traceID", TRACE_ID.upper(), TRACE_ID.encode()),
        ("metrics", "metric", "http.server.duration", b"http.server.duration"),
        ("logs", "resource", "b=2,a=1", b"resource/a=1|b=2"),
    ],
)
def test_every_routing_key_is_built_as_routing_builds_it(
    capsys: pytest.CaptureFixture[str], signal: str, routing_key: str, value: str, hashed: bytes
) -> None:
    code, out, err = run(
        capsys, "--endpoints", ",".join(EPS), "--signal", signal, "--routing-key", routing_key, "--json", value
    )
    assert (code, err) == (0, "")
    owner = json.loads(out)["owners"][0]
    assert bytes.fromhex(owner["hashed"]) == hashed
    assert owner["owner"] == build_ring("ringleader", EPS).owner_of(hashed)


def test_attribute_keys_follow_the_routing_attributes_order_and_mark_absent_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--endpoints", ",".join(EPS), "--routing-key", "attributes", "--routing-attributes", "tenant,region"]
    code, out, err = run(capsys, *argv, "--json", "tenant=acme")
    assert (code, err) == (0, "")
    assert bytes.fromhex(json.loads(out)["owners"][0]["hashed"]) == b"tenant=acme|region=|"


def test_text_flag_forces_a_32_hex_key_to_text(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--endpoints", ",".join(EPS), "--text", TRACE_ID)
    assert out == f"{TRACE_ID}\ttext\t{build_ring('ringleader', EPS).owner_of(TRACE_ID.encode())}\n"


def test_hex_flag_takes_hex_bytes_of_any_length(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--endpoints", "endpoint-1,endpoint-2", "--algorithm", "upstream", "--hex", "01020000")
    assert out == "01020000\thex\tendpoint-2\n"  # upstream's own test vector


@pytest.mark.parametrize(
    ("algorithm", "owners"),
    [("upstream", ["endpoint-2", "endpoint-2"]), ("upstream-v0.152", ["endpoint-2", "endpoint-1"])],
)
def test_upstream_algorithms_reproduce_upstream_vectors(
    capsys: pytest.CaptureFixture[str], algorithm: str, owners: list[str]
) -> None:
    _, out, _ = run(
        capsys,
        "--endpoints",
        "endpoint-2,endpoint-1",
        "--algorithm",
        algorithm,
        "--text",
        "ad-service-7",
        "get-recommendations-1",
    )
    assert [line.split("\t")[2] for line in out.splitlines()] == owners


def test_stats_prints_every_endpoint_share_and_the_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--endpoints", ",".join(EPS), "--stats")
    assert code == 0
    shares = build_ring("ringleader", EPS).shares()
    lines = out.splitlines()
    for ep, share in shares.items():
        assert any(line.startswith(ep) and f"{share * 100:.3f}%" in line for line in lines)
    assert lines[-1].startswith("algorithm=ringleader backends=3 max/avg=1.0")
    assert "min/avg=0.9" in lines[-1]


def test_json_output_carries_owners_and_ring_description(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--endpoints", ",".join(EPS), "--json", "--stats", TRACE_ID)
    doc = json.loads(out)
    assert doc["owners"][0]["kind"] == "traceID"
    assert doc["ring"]["backends"] == 3


def write_config(tmp_path: Path, resolver: str, extra: str = "") -> Path:
    """A minimal data-plane config; ``resolver`` and ``extra`` are YAML lines for the exporter block."""
    lines = ["receivers:", "  otlp:", "    protocols:", "      grpc:", "exporters:", "  loadbalancing:"]
    lines += [f"    {line}" for line in extra.splitlines()]
    lines += ["    resolver:"] + [f"      {line}" for line in resolver.splitlines()]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_with_static_resolver_supplies_endpoints_and_algorithm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, "static:\n  hostnames: [endpoint-1, endpoint-2]\n", extra="ring_algorithm: upstream\n")
    code, out, err = run(capsys, "--config", str(cfg), "--hex", "01020000", "80800000")
    assert (code, err) == (0, "")
    assert [line.split("\t")[2] for line in out.splitlines()] == ["endpoint-2", "endpoint-1"]


def test_algorithm_flag_overrides_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "static:\n  hostnames: [a:4317, b:4317]\n", extra="ring_algorithm: upstream\n")
    _, out, _ = run(capsys, "--config", str(cfg), "--algorithm", "ringleader", "--stats")
    assert "algorithm=ringleader" in out


def test_config_with_dns_resolver_is_refused_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "dns:\n  hostname: tier2.observability.svc\n")
    code, out, err = run(capsys, "--config", str(cfg), "x")
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "dns resolver" in err and "--endpoints" in err


def test_unreadable_config_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.yaml"), "x")
    assert code == 2
    assert len(err.splitlines()) == 1 and "cannot read" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--endpoints", "a,b", "--hex", "xyz"], "not valid hex"),
        (["x"], "no endpoints"),
        (["--endpoints", " , ", "x"], "no endpoints"),
        (["--endpoints", "a,b"], "nothing to do"),
        (["--endpoints", "a", "--algorithm", "maglev", "x"], "invalid choice"),
        (["--endpoints", "a", "--text", "--hex", "x"], "not allowed with"),
        (["--endpoints", "a", "--routing-key", "traceID", "checkout"], "not a trace ID"),
        (["--endpoints", "a", "--signal", "metrics", "--routing-key", "traceID", "x"], "cannot be routed by"),
        (["--endpoints", "a", "--signal", "logs", "--routing-key", "streamID", "x"], "cannot be routed by"),
        (["--endpoints", "a", "--signal", "metrics", "--routing-key", "streamID", "x"], "--hex"),
        (["--endpoints", "a", "--routing-key", "attributes", "x=1"], "--routing-attributes"),
        (["--endpoints", "a", "--signal", "logs", "--routing-key", "resource", "novalue"], "not name=value"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("ringleader-dataplane ring: error:") and message in err


def test_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataplane.ring_cli",
            "--endpoints",
            "endpoint-1,endpoint-2",
            "--algorithm",
            "upstream",
            "--text",
            "get-recommendations-1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "get-recommendations-1\ttext\tendpoint-2\n"
