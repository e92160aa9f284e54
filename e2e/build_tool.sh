#!/usr/bin/env bash
# Build (once) a delivery tool from the Go module proxy: helm or promtool.
#
#     e2e/build_tool.sh helm        # helm.sh/helm/v3/cmd/helm@v3.22.0
#     e2e/build_tool.sh promtool    # github.com/prometheus/prometheus/cmd/promtool (Prometheus 3.x)
#
# The binary lands in ${RINGLEADER_CACHE:-$HOME/.cache/ringleader}/tools/<name>-<version>/<name> and the
# script prints that path on stdout (progress goes to stderr), so callers can do
#     HELM="$(e2e/build_tool.sh helm)"
# The Go module and build caches are shared with build_k8s.sh (${RINGLEADER_CACHE}/go). A warm cache is a
# no-op; concurrent callers serialise on a flock(1) lock and the binary is renamed into place atomically.
# Env: RINGLEADER_CACHE, RINGLEADER_HELM_VERSION, RINGLEADER_PROMETHEUS_VERSION.
set -euo pipefail

main() {
  local name="${1:-}"
  local module version check tags=""
  case "$name" in
    helm)
      version="${RINGLEADER_HELM_VERSION:-v3.22.0}"
      module="helm.sh/helm/v3/cmd/helm"
      check=(version --short)
      ;;
    promtool)
      # Go module tag v0.316.0 is Prometheus v3.16.0 (Prometheus tags its Go module v0.3XX.Y).
      version="${RINGLEADER_PROMETHEUS_VERSION:-v0.316.0}"
      module="github.com/prometheus/prometheus/cmd/promtool"
      check=(--version)
      # Rule checks and rule unit tests need no service discovery; Prometheus's own build tag leaves
      # every SD plugin (cloud SDKs, client-go, ...) out: ~3 CPU-minutes cold instead of ~15.
      tags="remove_all_sd"
      ;;
    -h|--help|"") sed -n '2,13p' "$0"; [[ -n "$name" ]]; exit $? ;;
    *) echo "build_tool.sh: unknown tool '$name' (known: helm, promtool)" >&2; exit 2 ;;
  esac

  local cache="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  local dir="$cache/tools/$name-$version"
  local bin="$dir/$name"
  if [[ -x "$bin" ]]; then echo "$bin"; return 0; fi

  if ! command -v go >/dev/null 2>&1; then
    echo "build_tool.sh: 'go' was not found on PATH; install Go >= 1.24 to build $name $version" >&2
    exit 1
  fi
  mkdir -p "$dir"
  exec 9>"$dir.lock"
  if ! flock -n 9; then
    echo "build_tool: another build holds $dir.lock; waiting for it" >&2
    flock 9
  fi
  if [[ -x "$bin" ]]; then echo "$bin"; return 0; fi

  export GOTOOLCHAIN=local CGO_ENABLED=0
  export GOFLAGS="-modcacherw -buildvcs=false -trimpath"
  export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
  # Global, not local: the EXIT trap runs after main has returned.
  tmp="$dir/.gobin.$$"
  mkdir -p "$GOMODCACHE" "$GOCACHE" "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  local started=$SECONDS
  echo "build_tool: go install $module@$version (first build takes minutes)" >&2
  local ldflags="-s -w"
  if [[ "$name" == helm ]]; then
    # What helm's Makefile stamps, so `helm version` reports the release instead of "main".
    ldflags+=" -X helm.sh/helm/v3/internal/version.version=$version"
  fi
  GOBIN="$tmp" go install -tags "${tags:-}" -ldflags "$ldflags" "$module@$version" >&2
  "$tmp/$name" "${check[@]}" >/dev/null
  mv -f "$tmp/$name" "$bin"
  echo "build_tool: $name $version built in $((SECONDS - started))s: $bin" >&2
  echo "$bin"
}

main "$@"; exit $?
