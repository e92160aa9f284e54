"""Building the native extension: a hard requirement of ``pip install .``, and one wheel script for every image.

- ``pip install .`` (really: pip building the wheel) without a Rust toolchain, or with one older than the
  crate's ``rust-version``, fails and says the toolchain is a build requirement and how to get it.
- The crate's ``rust-version`` is true: no locked dependency needs a newer rustc (``cargo metadata``).
- ``dataplane/native/build-wheel.sh`` builds an abi3 wheel holding ``dataplane/_native*.so``, tagged
  manylinux for the glibc its symbols need, which must not exceed the image base's (Debian bookworm: 2.36),
  and installable into a fresh virtualenv whose Python then imports the extension.
- The Dockerfile's Rust stage (an official ``rust:<version>-slim-<debian>`` image) runs that same script
  and the image's Python stage installs its output; the pinned Rust satisfies ``rust-version`` and its
  Debian release is the runtime base's; ``e2e/build_image.sh`` replaces exactly that stage with the
  script's wheel. The Dockerfile path cannot be built here (no registry), hence the static checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.slowbuild import untimed

REPO = Path(__file__).resolve().parent.parent
CRATE = REPO / "dataplane" / "native"
SCRIPT = CRATE / "build-wheel.sh"
DOCKERFILE = REPO / "Dockerfile"
RUST_VERSION = tomllib.loads((CRATE / "Cargo.toml").read_text())["package"]["rust-version"]
# The runtime base of both image paths: python:3.11-slim-bookworm (Dockerfile), debootstrap bookworm here.
BOOKWORM_GLIBC = (2, 36)


def version_tuple(text: str) -> tuple[int, int, int]:
    """'1.85' and '1.85.0' are the same version."""
    major, minor, patch = (*(int(part) for part in text.split(".")), 0, 0)[:3]
    return major, minor, patch


# --- the toolchain is a build requirement ------------------------------------------------------------------


def source_copy(dest: Path) -> Path:
    """What pip builds from: the project's packaging inputs, without any in-place extension or build output."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "target", "build", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("dataplane", "operator"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def pip_wheel(src: Path, out: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CARGO", "RUSTC", "RUSTUP_TOOLCHAIN")}
    env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-w", str(out),
         str(src)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


def path_without_cargo(tmp_path: Path) -> str:
    """A PATH with nothing on it: pip runs by absolute path and its build needs no tool before the check."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    return str(empty)


def test_pip_install_without_cargo_fails_saying_rust_is_a_build_requirement(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    src = source_copy(tmp_path / "src")
    proc = pip_wheel(src, tmp_path / "dist", path_without_cargo(tmp_path))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert f"the Rust toolchain, cargo and rustc >= {RUST_VERSION}, is a build requirement" in output, output
    assert "cargo was not found on PATH" in output, output
    assert "https://sh.rustup.rs" in output, output
    assert not list(tmp_path.glob("dist/*.whl"))


def test_pip_install_with_a_too_old_rustc_fails_naming_both_versions(tmp_path: Path) -> None:
    # Debian 12's rustc is 1.63; installing it here would shadow the real toolchain of everyone on the
    # machine, so a stand-in answers `rustc -V` the way it does (the only thing the check asks it).
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("cargo", "rustc"):
        (tools / name).write_text(f"#!/bin/sh\necho '{name} 1.63.0'\n")
        (tools / name).chmod(0o755)
    (tmp_path / "src").mkdir()
    src = source_copy(tmp_path / "src")
    proc = pip_wheel(src, tmp_path / "dist", f"{tools}:{path_without_cargo(tmp_path)}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert f"rustc >= {RUST_VERSION}, is a build requirement" in output, output
    assert "is 1.63.0" in output and "https://sh.rustup.rs" in output, output


def test_extension_is_not_optional_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    (ext,) = project["tool"]["setuptools-rust"]["ext-modules"]
    assert ext["target"] == "dataplane._native" and ext["optional"] is False
    assert ext["py-limited-api"] == "cp311"
    assert project["build-system"]["build-backend"] == "ringleader_build"
    assert project["build-system"]["backend-path"] == ["dataplane/native"]


def test_crate_rust_version_covers_every_locked_dependency() -> None:
    if shutil.which("cargo") is None:
        pytest.fail("cargo is missing: `make native` installs nothing; install Rust with rustup (https://rustup.rs)")
    proc = untimed(lambda: subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--manifest-path", str(CRATE / "Cargo.toml")],
        capture_output=True, text=True, timeout=600,
    ))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    packages = json.loads(proc.stdout)["packages"]
    needs = {(p["name"], p["version"]): p["rust_version"] for p in packages if p.get("rust_version")}
    assert len(packages) > 20 and needs  # the transport's crates are there, and declare their MSRV
    too_new = {k: v for k, v in needs.items() if version_tuple(v) > version_tuple(RUST_VERSION)}
    assert not too_new, f"these need a newer rustc than the crate's rust-version {RUST_VERSION}: {too_new}"
    # ... and it is tight: some dependency needs exactly that version (else the message overstates it).
    assert max(version_tuple(v) for v in needs.values()) == version_tuple(RUST_VERSION), needs


# --- the wheel script -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = untimed(lambda: subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                                          timeout=1800))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.is_file()
    return path


def test_wheel_holds_the_abi3_extension_tagged_for_a_glibc_bookworm_has(wheel: Path) -> None:
    name, _version, python_tag, abi_tag, platform_tag = wheel.name[: -len(".whl")].split("-")
    assert (name, python_tag, abi_tag) == ("ringleader", "cp311", "abi3")
    tag = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64|manylinux_(\d+)_(\d+)_aarch64", platform_tag)
    assert tag is not None, platform_tag
    glibc = tuple(int(g) for g in tag.groups() if g is not None)
    assert glibc <= BOOKWORM_GLIBC, f"{wheel.name} needs glibc {glibc}, the image base has {BOOKWORM_GLIBC}"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = zf.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    assert [n for n in names if re.fullmatch(r"dataplane/_native\.abi3\.so", n)], names
    assert "dataplane/__main__.py" in names and "ringleader_operator/__main__.py" in names
    assert f"Tag: cp311-abi3-{platform_tag}" in record
    assert not [n for n in names if "native/src/" in n or n.endswith(".rs")], "crate sources leaked into the wheel"


def test_wheel_installs_into_a_fresh_virtualenv_and_imports_the_extension(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # No dependencies needed for this: the wheel is unpacked by pip from the test's interpreter.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    probe = "import dataplane._native as n, pathlib; print(pathlib.Path(n.__file__).name)"
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "_native.abi3.so"


def test_wheel_is_cached_by_source_hash_and_rebuilt_when_a_source_changes(wheel: Path) -> None:
    again = subprocess.run(["bash", str(SCRIPT), str(wheel.parent)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "cached:" in again.stderr and Path(again.stdout.strip()) == wheel
    key = subprocess.run(["bash", str(SCRIPT), "--key"], capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert (Path(os.environ.get("RINGLEADER_CACHE", Path.home() / ".cache" / "ringleader")) / "native-wheel" / key
            ).is_dir()  # fmt: skip


# --- the Dockerfile's Rust stage (static: registries are unreachable here) ---------------------------------


def dockerfile_stages() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Global ARG defaults, and each stage's instructions (continuations joined) by name ('final': the last)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    args: dict[str, str] = {}
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("FROM "):
            found = re.fullmatch(r"FROM (\S+)(?: AS (\S+))?", line)
            assert found, line
            current = [line]
            stages[found.group(2) or "final"] = current
        elif current is None:
            name, _, default = line.removeprefix("ARG ").partition("=")
            args[name] = default
        else:
            current.append(line)
    return args, stages


def test_dockerfile_rust_stage_runs_the_wheel_script_and_the_python_stage_installs_its_output() -> None:
    _args, stages = dockerfile_stages()
    assert list(stages) == ["native-wheel", "build", "final"]
    rust = stages["native-wheel"]
    assert rust[0] == "FROM ${RUST_IMAGE} AS native-wheel"
    assert "RUN bash dataplane/native/build-wheel.sh /wheels" in rust
    # The script builds from these: the whole packaging input is in the stage.
    for copied in ("COPY pyproject.toml README.md ./", "COPY dataplane ./dataplane", "COPY operator ./operator"):
        assert copied in rust
    build = stages["build"]
    assert build[0] == "FROM ${PYTHON_BASE} AS build"
    assert "COPY --from=native-wheel /wheels /wheels" in build
    (install,) = [line for line in build if line.startswith("RUN ") and "pip install" in line]
    assert "/wheels/ringleader-*.whl" in install and "--only-binary=:all:" in install
    assert "import dataplane._native" in install
    # Nothing of the Rust stage reaches the final image but through the build stage's virtualenv.
    final = stages["final"]
    assert final[0] == "FROM ${PYTHON_BASE}"
    assert [line for line in final if "--from=" in line] == ["COPY --from=build /opt/ringleader /opt/ringleader"]
    assert "USER 65532:65532" in final


def test_pinned_rust_image_satisfies_rust_version_on_the_runtime_base_debian_release() -> None:
    args, _ = dockerfile_stages()
    rust = re.fullmatch(r"rust:(\d+\.\d+\.\d+)-slim-([a-z]+)", args["RUST_IMAGE"])
    python = re.fullmatch(r"python:3\.(\d+)-slim-([a-z]+)", args["PYTHON_BASE"])
    assert rust and python, args
    assert version_tuple(rust.group(1)) >= version_tuple(RUST_VERSION), (rust.group(1), RUST_VERSION)
    assert int(python.group(1)) >= 11  # the extension is abi3-py311
    assert rust.group(2) == python.group(2) == "bookworm"  # same glibc (2.36) in the build and the runtime
    # The base this machine builds for the image (e2e/build_image.sh) is the same Debian release.
    assert re.search(r"^\s*SUITE=bookworm$", (REPO / "e2e" / "build_image.sh").read_text(), re.M)


def test_build_image_sh_replaces_the_rust_stage_with_the_same_scripts_wheel() -> None:
    script = (REPO / "e2e" / "build_image.sh").read_text()
    built = re.search(r'wheel="\$\(bash "\$REPO/dataplane/native/build-wheel.sh" "(\$WORK/native-wheel)/wheels"\)"',
                      script)  # fmt: skip
    assert built, "build_image.sh must build the wheel with dataplane/native/build-wheel.sh"
    assert f'--build-context "native-wheel={built.group(1)}"' in script
