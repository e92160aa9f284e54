"""The build backend of ``pip install .``: setuptools with setuptools-rust, after a Rust toolchain check.

Ringleader's data path is the native extension ``dataplane._native``, built from the crate in
``dataplane/native`` (``pyproject.toml``: ``[[tool.setuptools-rust.ext-modules]]``, not optional). Building
a wheel -- ``pip install .``, ``pip install -e .``, ``pip wheel .`` -- therefore needs cargo and rustc at
least the crate's ``rust-version`` (``dataplane/native/Cargo.toml``). Without them setuptools-rust fails
with a generic message; this backend fails first and says what is missing and how to get it::

    Ringleader's native data path (dataplane/native, a Rust crate) is built by `pip install`: the Rust
    toolchain, cargo and rustc >= 1.85, is a build requirement, and cargo was not found on PATH. ...

Everything else is ``setuptools.build_meta``, unchanged; a source distribution needs no toolchain. Images
get the extension as a prebuilt wheel instead (``dataplane/native/build-wheel.sh``, docs/install.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # the hooks this backend does not change
    build_sdist,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

CARGO_TOML = Path(__file__).resolve().parent / "Cargo.toml"
RUSTUP = "curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y  (https://rustup.rs), then open a new shell"


def rust_version() -> str:
    """The crate's ``rust-version``: the oldest rustc that builds it with its locked dependencies."""
    return str(tomllib.loads(CARGO_TOML.read_text())["package"]["rust-version"])


def toolchain_problem() -> str | None:
    """Why the extension cannot be built here, or None when cargo and a recent enough rustc are on PATH."""
    need = rust_version()
    intro = (
        "Ringleader's native data path (dataplane/native, a Rust crate) is built by `pip install`: the Rust "
        f"toolchain, cargo and rustc >= {need}, is a build requirement"
    )
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    rustc = os.environ.get("RUSTC") or shutil.which("rustc")
    if cargo is None or rustc is None:
        missing = "cargo" if cargo is None else "rustc"
        return f"{intro}, and {missing} was not found on PATH. Install the toolchain with rustup:\n    {RUSTUP}"
    try:
        out = subprocess.run([rustc, "-V"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{intro}, and `{rustc} -V` failed ({exc}). Install the toolchain with rustup:\n    {RUSTUP}"
    found = re.match(r"rustc (\d+)\.(\d+)\.(\d+)", out)
    if found is None:
        return f"{intro}; `{rustc} -V` printed {out.strip()!r}, not a rustc version"
    have = tuple(int(part) for part in found.groups())
    if have < tuple(int(part) for part in need.split(".")):
        return (
            f"{intro}, and {rustc} is {'.'.join(map(str, have))} (distribution packages are often older: "
            f"Debian 12's is 1.63). Install a current toolchain with rustup, which PATH must list first:\n"
            f"    {RUSTUP}"
        )
    return None


def _require_toolchain() -> None:
    problem = toolchain_problem()
    if problem is not None:
        raise SystemExit(f"\nerror: {problem}\n")


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    _require_toolchain()
    return list(_setuptools.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    _require_toolchain()
    return list(_setuptools.get_requires_for_build_editable(config_settings))


def build_wheel(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    _require_toolchain()
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    _require_toolchain()
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))
