"""Go-built delivery tools for tests: helm, promtool, and ``go test`` of the Argo CD health checks.

Nothing is fetched as a release binary: :func:`tool` runs ``e2e/build_tool.sh``, which
``go install``s the tool from the Go module proxy once and caches it under
``$RINGLEADER_CACHE`` (or ``~/.cache/ringleader``)::

    from e2e.gotools import tool, go_test

    helm = tool("helm")                  # Path to helm v3.22.0, built on first use (~1-2 min)
    go_test(REPO / "argocd" / "luatest") # CompletedProcess of `go test -count=1 ./...`

Go's module and build caches live in the same cache directory as ``e2e/build_k8s.sh``'s,
so nothing is written inside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from e2e.envtest import cache_dir

E2E_DIR = Path(__file__).resolve().parent
BUILD_TOOL = E2E_DIR / "build_tool.sh"


class ToolError(RuntimeError):
    """A tool could not be built; the message carries the build log's tail."""


def go_environ() -> dict[str, str]:
    """The environment for ``go`` commands: local toolchain, caches outside the repo."""
    cache = cache_dir() / "go"
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN="local",
        GOMODCACHE=str(cache / "mod"),
        GOCACHE=str(cache / "build"),
        GOFLAGS="-modcacherw -mod=readonly",
    )
    return env


def require_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolError("'go' was not found on PATH: install Go >= 1.24 (the delivery tests build their tools with it)")
    return go


def tool(name: str) -> Path:
    """Path of ``name`` (``helm`` or ``promtool``), building it from Go modules on first use."""
    require_go()
    log_path = cache_dir() / f"build_{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.run([str(BUILD_TOOL), name], stdout=subprocess.PIPE, stderr=log)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise ToolError(f"{BUILD_TOOL.name} {name} failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")
    return Path(proc.stdout.decode().strip().splitlines()[-1])


def go_test(module_dir: Path, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """``go test -count=1 -v ./...`` in ``module_dir`` (never served from Go's test cache)."""
    go = require_go()
    return subprocess.run(
        [go, "test", "-count=1", "-v", "./..."],
        cwd=module_dir,
        env=go_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
