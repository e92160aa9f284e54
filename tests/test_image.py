"""The container image built from the repository's Dockerfile (``make image``), run for real with runc.

``e2e/build_image.sh`` builds the Dockerfile with buildah on a Debian-built base (cached; a cold build takes
minutes). Here the docker-archive is unpacked with umoci and run with runc as the image's own user, with
the root filesystem mounted read-only, the way a pod with ``readOnlyRootFilesystem: true`` runs it:

- both console scripts answer ``--help``;
- the process runs as uid/gid 65532, not root, and cannot write to its root filesystem;
- the data plane starts from a config and answers ``/healthz`` and ``/metrics`` (only ``/tmp`` is writable);
- the native data path is in it: the image's Python imports ``dataplane._native`` from the virtualenv (the
  wheel of ``dataplane/native/build-wheel.sh``, installed by the Dockerfile's Python stage);
- the final stage has no pip, no compiler and no Rust toolchain; the OCI labels carry the version and the source.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.slowbuild import untimed

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "e2e" / "build_image.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


class Image:
    """An unpacked image: its OCI config and a runc bundle whose config.json can be rewritten per run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.bundle = workdir / "bundle"
        self.spec: dict[str, Any] = json.loads((self.bundle / "config.json").read_text())
        index = json.loads((workdir / "oci" / "index.json").read_text())
        manifest = self._blob(index["manifests"][0]["digest"])
        self.config: dict[str, Any] = self._blob(manifest["config"]["digest"])

    def _blob(self, digest: str) -> Any:
        algo, value = digest.split(":", 1)
        return json.loads((self.workdir / "oci" / "blobs" / algo / value).read_text())

    def run(
        self, args: list[str], mounts: list[dict[str, Any]] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        spec = json.loads(json.dumps(self.spec))
        spec["process"]["args"] = args
        spec["process"]["terminal"] = False
        spec["root"]["readonly"] = True
        spec["mounts"] = [
            *spec["mounts"],
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=16m"]},
            *(mounts or []),
        ]
        (self.bundle / "config.json").write_text(json.dumps(spec))
        state = self.workdir / "runc-state"
        name = f"ringleader-test-{uuid.uuid4().hex[:12]}"
        try:
            return subprocess.run(
                ["runc", "--root", str(state), "run", "--bundle", str(self.bundle), name],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        finally:
            subprocess.run(["runc", "--root", str(state), "delete", "--force", name], capture_output=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (buildah, umoci unpack preserving owners, runc)")
    missing = [tool for tool in ("runc", "umoci", "skopeo") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {' '.join(missing)}: run `make system-deps` (Debian packages of the same names)")
    built = untimed(lambda: subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1800))
    assert built.returncode == 0, built.stderr[-4000:]
    archive = built.stdout.strip().splitlines()[-1]
    workdir = tmp_path_factory.mktemp("image")
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{workdir / 'oci'}:test"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{workdir / 'oci'}:test", str(workdir / "bundle")], check=True,
                   capture_output=True)  # fmt: skip
    yield Image(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("script", ["ringleader-dataplane", "ringleader-operator"])
def test_both_console_scripts_answer_help(image: Image, script: str) -> None:
    proc = image.run([script, "--help"])
    assert proc.returncode == 0, proc.stderr
    assert f"usage: {script}" in proc.stdout


def test_runs_as_the_numeric_non_root_user(image: Image) -> None:
    assert image.config["config"]["User"] == "65532:65532"
    proc = image.run(["sh", "-c", "id -u; id -g"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["65532", "65532"]
    # Libraries that look the user up (getpwuid, e.g. for an identity) must get an answer, not KeyError.
    proc = image.run(["python3", "-c", "import os, pwd; e = pwd.getpwuid(os.getuid()); print(e.pw_name, e.pw_shell)"])
    assert proc.stdout.split() == ["ringleader", "/usr/sbin/nologin"], proc.stderr


def test_root_filesystem_is_not_written(image: Image) -> None:
    probe = (
        "import os\n"
        "for path in ('/opt/ringleader/x', '/x', '/etc/x'):\n"
        "    try:\n"
        "        open(path, 'w').close(); print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
        "open('/tmp/ok', 'w').close(); print('tmp ok')\n"
    )
    proc = image.run(["python3", "-c", probe])
    assert proc.returncode == 0, proc.stderr
    assert "wrote" not in proc.stdout
    assert proc.stdout.count("refused") == 3 and "tmp ok" in proc.stdout


DATAPLANE_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:14317"}
      http: {endpoint: "127.0.0.1:14318"}
exporters:
  loadbalancing:
    protocol:
      otlp: {tls: {insecure: true}}
    resolver:
      static: {hostnames: ["127.0.0.1:24317", "127.0.0.1:24318"]}
telemetry:
  endpoint: "127.0.0.1:18888"
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [loadbalancing]}
"""

STARTS_AND_ANSWERS = """\
import subprocess, sys, time, urllib.request
proc = subprocess.Popen(["ringleader-dataplane", "--config", "/config/dataplane.yaml"])
deadline = time.monotonic() + 60
try:
    while True:
        try:
            health = urllib.request.urlopen("http://127.0.0.1:18888/healthz", timeout=2).status
            metrics = urllib.request.urlopen("http://127.0.0.1:18888/metrics", timeout=2).read().decode()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                print("data plane did not answer; exit code", proc.poll()); sys.exit(1)
            time.sleep(0.2)
    backends = [l for l in metrics.splitlines() if l.startswith("otelcol_loadbalancer_num_backends{")]
    print("healthz", health); print(*backends, sep="\\n")
finally:
    proc.terminate()
    print("exit", proc.wait(30))
"""


def test_data_plane_starts_and_answers_with_a_read_only_root(image: Image, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "dataplane.yaml").write_text(DATAPLANE_CONFIG)
    config.chmod(0o755)
    (config / "dataplane.yaml").chmod(0o644)
    mount = {"destination": "/config", "type": "bind", "source": str(config), "options": ["rbind", "ro"]}
    proc = image.run(["python3", "-c", STARTS_AND_ANSWERS], mounts=[mount])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "healthz 200" in proc.stdout
    assert re.search(r'otelcol_loadbalancer_num_backends\{resolver="static"\} 2\.0', proc.stdout), proc.stdout
    assert "exit 0" in proc.stdout


NATIVE_PROBE = """\
import dataplane._native as native, importlib.metadata as md, os
print(native.__file__)
print(sorted(name for name in dir(native) if not name.startswith("_")))
print(os.confstr("CS_GNU_LIBC_VERSION"))
print(md.distribution("ringleader").read_text("WHEEL"))
"""


def test_native_extension_is_in_the_image(image: Image) -> None:
    proc = image.run(["python3", "-c", NATIVE_PROBE])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"/opt/ringleader/lib/python3\.\d+/site-packages/dataplane/_native\.abi3\.so", lines[0]), lines
    assert "RingTable" in lines[1] and "WireSplitter" in lines[1], lines[1]
    # Installed from the wheel build-wheel.sh tagged for the glibc its symbols need: the image's glibc
    # (bookworm: 2.36) is at least that.
    libc = re.fullmatch(r"glibc 2\.(\d+)", lines[2])
    tag = re.search(r"^Tag: cp311-abi3-manylinux_2_(\d+)_x86_64$", proc.stdout, re.M)
    assert libc is not None and tag is not None, proc.stdout
    assert int(tag.group(1)) <= int(libc.group(1)), proc.stdout


def test_final_stage_has_no_package_installer_or_compiler(image: Image) -> None:
    tools = ("pip", "pip3", "gcc", "cc", "cargo", "rustc", "rustup")
    probe = f"import importlib.util as u, shutil\nprint(u.find_spec('pip'), [shutil.which(c) for c in {tools!r}])"
    proc = image.run(["python3", "-c", probe])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"None {[None] * len(tools)}"
    # Where the official Rust image keeps its toolchain (CARGO_HOME, RUSTUP_HOME).
    proc = image.run(["sh", "-c", "ls -d /usr/local/cargo /usr/local/rustup 2>&1; true"])
    assert proc.stdout.count("No such file or directory") == 2, proc.stdout


def test_oci_labels_carry_version_and_source(image: Image) -> None:
    labels = image.config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.title"] == "ringleader"
