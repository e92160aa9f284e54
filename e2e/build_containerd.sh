#!/usr/bin/env bash
# Build (once) containerd, its runc shim and ctr from Go modules, for the lab (e2e/lab.py).
#
# Binaries land in ${RINGLEADER_CACHE:-$HOME/.cache/ringleader}/containerd/<version>/bin/; the Go caches
# are shared with e2e/build_k8s.sh under ${RINGLEADER_CACHE}/go/.  A second run only checks the version
# and returns at once.  Concurrent runs serialise on a flock(1) lock; binaries are renamed into place.
#
# Why containerd 2 and not Debian's 1.6: kubelet 1.37 talks the CRI RuntimeConfig call that 1.6 lacks and
# only falls back through a feature gate marked for removal.  The storage drivers that need C libraries
# (btrfs, devmapper, zfs) are left out so the build is static and needs no headers.
#
# Usage:  e2e/build_containerd.sh [--print-bin-dir] [--check]
# Env:    RINGLEADER_CACHE, RINGLEADER_CONTAINERD_VERSION
set -euo pipefail

main() {
  trap 'echo "build_containerd.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  VERSION="${RINGLEADER_CONTAINERD_VERSION:-v2.4.2}"
  print_bin_dir=0
  check_only=0
  for arg in "$@"; do
    case "$arg" in
      --print-bin-dir) print_bin_dir=1 ;;
      --check) check_only=1 ;;
      -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
      *) echo "build_containerd.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
  done
  CACHE="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  ROOT="$CACHE/containerd/$VERSION"
  BIN="$ROOT/bin"
  log() { echo "build_containerd: $*" >&2; }

  built() {
    local out
    [[ -x "$BIN/containerd-shim-runc-v2" && -x "$BIN/ctr" && -x "$BIN/containerd" ]] &&
      out="$("$BIN/containerd" --version 2>/dev/null)" && [[ "$out" == *" $VERSION "* || "$out" == *" $VERSION" ]]
  }
  done_message() { if [[ $print_bin_dir -eq 1 ]]; then echo "$BIN"; else log "binaries ready in $BIN"; fi; }

  if built; then done_message; exit 0; fi
  if [[ $check_only -eq 1 ]]; then exit 1; fi
  if ! command -v go >/dev/null 2>&1; then
    echo "build_containerd.sh: 'go' was not found on PATH. Install Go >= 1.24 (https://go.dev/dl/) to build" \
         "containerd $VERSION for the lab." >&2
    exit 1
  fi

  mkdir -p "$BIN"
  exec 9>"$ROOT.lock"
  if ! flock -n 9; then log "another build holds $ROOT.lock; waiting for it"; flock 9; fi
  if built; then done_message; exit 0; fi

  export GOTOOLCHAIN=local CGO_ENABLED=0
  export GOFLAGS="-modcacherw -buildvcs=false -trimpath"
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  started=$SECONDS
  log "building containerd $VERSION from the Go module proxy (about 80 s on 2 cores)"

  # `go install pkg@version` builds from the module zip with its own go.mod (no wrapper needed); GOBIN
  # points at a scratch dir so a half-built set never lands in $BIN.
  local tmp="$ROOT/.gobin.$$" mod="github.com/containerd/containerd/v2" name
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN="$tmp" go install -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $mod/version.Version=$VERSION -X $mod/version.Package=$mod" \
    "$mod/cmd/containerd@$VERSION" "$mod/cmd/containerd-shim-runc-v2@$VERSION" "$mod/cmd/ctr@$VERSION"
  for name in containerd-shim-runc-v2 ctr containerd; do mv -f "$tmp/$name" "$BIN/$name"; done
  rm -rf "$tmp"
  if ! built; then
    echo "build_containerd.sh: built, but $BIN/containerd --version does not report $VERSION" >&2
    "$BIN/containerd" --version >&2 || true
    exit 1
  fi
  log "done in $((SECONDS - started))s"
  done_message
}

main "$@"
