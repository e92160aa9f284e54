#!/usr/bin/env bash
# Build (once) the Kubernetes control-plane binaries the e2e tests run: etcd and kube-apiserver,
# optionally kube-controller-manager, and with --with-node everything a one-node cluster (the lab,
# e2e/lab.py) needs as well: kubelet, kube-proxy, kube-scheduler, kube-controller-manager, kubectl.
#
# Everything comes from the Go module proxy; nothing is fetched as a release tarball and nothing is
# written inside the repository.  Binaries land in
#     ${RINGLEADER_CACHE:-$HOME/.cache/ringleader}/k8s/<k8s-version>/bin/
# and the Go module and build caches in ${RINGLEADER_CACHE}/go/.  A second run only checks that the
# binaries exist and report the expected versions, so it is instant.  Concurrent runs serialise on a
# flock(1) lock file, and binaries are moved into place atomically, so a reader never sees half a file.
#
# Usage:  e2e/build_k8s.sh [--with-controller-manager] [--with-node] [--print-bin-dir] [--check]
#         --check only reports (exit 0 or 1) whether the binaries are ready; it never builds.
# Env:    RINGLEADER_CACHE, RINGLEADER_K8S_VERSION (default below), RINGLEADER_ETCD_VERSION
#
# Why a wrapper module: k8s.io/kubernetes is not meant to be consumed as a module.  Its go.mod requires
# the "staging" modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and replaces them with
# ./staging/src/..., and replace directives of dependencies are ignored.  The wrapper re-creates those
# replaces, pointing each staging module at the published v0.<minor>.<patch> tag instead, derived from the
# go.mod the proxy serves, so the list never goes stale when Kubernetes adds a staging module.
set -euo pipefail

# All work happens in main(), called on the last line: bash then parses the whole file before running
# anything, so editing this script while a build runs cannot derail that build.
main() {
  trap 'echo "build_k8s.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

  # Newest release whose go.mod ("go 1.26.0") the local go1.26 toolchain accepts and whose source zip and
  # staging modules the proxy serves: v1.37.2 is listed but its zip is refused (403), v1.38 is not out.
  K8S_VERSION="${RINGLEADER_K8S_VERSION:-v1.37.1}"
  # etcd 3.6 is the server line Kubernetes 1.37 is tested against.
  ETCD_VERSION="${RINGLEADER_ETCD_VERSION:-v3.6.16}"
  MIN_GO="1.26"

  with_kcm=0
  with_node=0
  print_bin_dir=0
  check_only=0
  for arg in "$@"; do
    case "$arg" in
      --with-controller-manager) with_kcm=1 ;;
      --with-node) with_node=1; with_kcm=1 ;;
      --print-bin-dir) print_bin_dir=1 ;;
      --check) check_only=1 ;;
      -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
      *) echo "build_k8s.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
  done

  CACHE="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  ROOT="$CACHE/k8s/$K8S_VERSION"
  BIN="$ROOT/bin"
  SRC="$ROOT/src"
  ETCD_SRC="$CACHE/etcd/$ETCD_VERSION/src"

  log() { echo "build_k8s: $*" >&2; }

  k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
  staging_version="v0.${K8S_VERSION#v1.}"   # v1.37.2 -> v0.37.2

  # True when $1 exists and its --version output contains $2. The output is captured first: with
  # pipefail, `--version | grep -q` fails at random when grep exits before the binary finished
  # writing (SIGPIPE), which made a warm cache look cold on a loaded machine.
  binary_ok() {
    local out
    [[ -x "$1" ]] && out="$("$1" --version 2>/dev/null)" && [[ "$out" == *"$2"* ]]
  }

  all_built() {
    binary_ok "$BIN/kube-apiserver" "Kubernetes $K8S_VERSION" &&
      binary_ok "$BIN/etcd" "etcd Version: ${ETCD_VERSION#v}" &&
      { [[ $with_kcm -eq 0 ]] || binary_ok "$BIN/kube-controller-manager" "Kubernetes $K8S_VERSION"; } &&
      { [[ $with_node -eq 0 ]] || node_built; }
  }

  # The node's binaries; kubectl has no --version flag, so it is asked with `version --client`.
  NODE_CMDS=(kubelet kube-proxy kube-scheduler)
  node_built() {
    local name out
    for name in "${NODE_CMDS[@]}"; do
      binary_ok "$BIN/$name" "Kubernetes $K8S_VERSION" || return 1
    done
    [[ -x "$BIN/kubectl" ]] && out="$("$BIN/kubectl" version --client 2>/dev/null)" &&
      [[ "$out" == *"Client Version: $K8S_VERSION"* ]]
  }

  done_message() {
    if [[ $print_bin_dir -eq 1 ]]; then echo "$BIN"; else log "binaries ready in $BIN"; fi
  }

  # Fast path, no lock needed: finished binaries are only ever renamed into place.
  if all_built; then done_message; exit 0; fi
  if [[ $check_only -eq 1 ]]; then exit 1; fi

  if ! command -v go >/dev/null 2>&1; then
    echo "build_k8s.sh: 'go' was not found on PATH. Install Go >= $MIN_GO (https://go.dev/dl/) to build" \
         "etcd $ETCD_VERSION and kube-apiserver $K8S_VERSION for the e2e tests." >&2
    exit 1
  fi
  go_version="$(go env GOVERSION)"   # e.g. go1.26.8
  go_mm="${go_version#go}"; go_major="${go_mm%%.*}"; go_rest="${go_mm#*.}"; go_minor="${go_rest%%[.a-z]*}"
  if (( go_major < 1 || (go_major == 1 && go_minor < ${MIN_GO#1.}) )); then
    echo "build_k8s.sh: found $go_version, but Kubernetes $K8S_VERSION needs Go >= $MIN_GO." \
         "Install a newer Go (https://go.dev/dl/)." >&2
    exit 1
  fi

  mkdir -p "$CACHE/k8s" "$BIN"
  exec 9>"$ROOT.lock"
  if ! flock -n 9; then
    log "another build holds $ROOT.lock; waiting for it"
    flock 9
  fi
  # The other holder may have finished the work while we waited.
  if all_built; then done_message; exit 0; fi

  # Keep the toolchain as installed (no auto-download), produce static binaries, let go.mod/go.sum of the
  # generated wrapper be completed automatically, and keep the module cache deletable with plain rm -rf.
  export GOTOOLCHAIN=local CGO_ENABLED=0
  export GOFLAGS="-mod=mod -modcacherw -buildvcs=false -trimpath"
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
  mkdir -p "$GOMODCACHE" "$GOCACHE"

  started=$SECONDS
  log "building what is missing in $BIN (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION) from the Go module" \
      "proxy; a first build takes minutes and a few GB under $CACHE"

  # Build the main package $2 of wrapper module dir $1 into $BIN/$3 atomically.
  build_into_bin() {
    local dir="$1" pkg="$2" name="$3" ldflags="$4"
    local tmp="$BIN/.$name.tmp.$$"
    log "building $name ($pkg)"
    (cd "$dir" && go build -ldflags "$ldflags" -o "$tmp" "$pkg")
    mv -f "$tmp" "$BIN/$name"
  }

  # --- etcd -------------------------------------------------------------------------------------------
  # The etcd binary's own module (go.etcd.io/etcd/v3) carries replace directives, so `go install` of it
  # is refused; a two-line main around go.etcd.io/etcd/server/v3/etcdmain is the same program.
  if ! binary_ok "$BIN/etcd" "etcd Version: ${ETCD_VERSION#v}"; then
    mkdir -p "$ETCD_SRC"
    cat >"$ETCD_SRC/go.mod" <<EOF
module ringleader.local/etcdbuild

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    cat >"$ETCD_SRC/main.go" <<'EOF'
// Command etcd is upstream etcd's server entry point, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    : >"$ETCD_SRC/go.sum"
    # Pin every etcd module of the same release line, so MVS cannot mix 3.6 server with other client bits.
    (cd "$ETCD_SRC" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/api/v3@$ETCD_VERSION" \
        "go.etcd.io/etcd/client/v3@$ETCD_VERSION" "go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" \
        "go.etcd.io/etcd/pkg/v3@$ETCD_VERSION")
    build_into_bin "$ETCD_SRC" . etcd "-s -w"
    log "etcd built after $((SECONDS - started))s"
  fi

  # --- kube-apiserver (and kube-controller-manager) ------------------------------------------------------
  mkdir -p "$SRC"
  # Ask the go command itself (so GOPROXY/GONOSUMDB settings are honoured) for the source zip, the upstream
  # go.mod and the commit; a version the proxy lists but does not serve fails here with its reason.
  download_json="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" || true)"
  if grep -q '"Error"' <<<"$download_json"; then
    echo "build_k8s.sh: cannot download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy:" >&2
    grep '"Error"' <<<"$download_json" >&2
    echo "Pick another release with RINGLEADER_K8S_VERSION=v1.X.Y." >&2
    exit 1
  fi
  k8s_mod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$download_json")"
  git_commit="$(sed -n 's/^[[:space:]]*"Hash": "\([0-9a-f]*\)",\{0,1\}$/\1/p' <<<"$download_json" | head -n1)"
  # Every "k8s.io/foo => ./staging/src/k8s.io/foo" becomes "k8s.io/foo => k8s.io/foo v0.X.Y".
  replaces="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*$#\t\1 => \1 '"$staging_version"'#p' "$k8s_mod")"
  if [[ -z "$replaces" ]]; then
    echo "build_k8s.sh: found no staging replace directives in the go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2
    exit 1
  fi
  cat >"$SRC/go.mod" <<EOF
// Generated by ringleader e2e/build_k8s.sh; see the comment there.
module ringleader.local/k8sbuild

go 1.26.0

require k8s.io/kubernetes $K8S_VERSION

replace (
$replaces
)
EOF
  [[ -f "$SRC/go.sum" ]] || : >"$SRC/go.sum"

  # What hack/lib/version.sh would stamp, so `--version` and /version report the real release.
  build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  k8s_ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
    k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    if [[ -n "$git_commit" ]]; then k8s_ldflags+=" -X $pkg.gitCommit=$git_commit"; fi
  done

  if ! binary_ok "$BIN/kube-apiserver" "Kubernetes $K8S_VERSION"; then
    build_into_bin "$SRC" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$k8s_ldflags"
    log "kube-apiserver built after $((SECONDS - started))s"
  fi
  if [[ $with_kcm -eq 1 ]] && ! binary_ok "$BIN/kube-controller-manager" "Kubernetes $K8S_VERSION"; then
    build_into_bin "$SRC" k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$k8s_ldflags"
    log "kube-controller-manager built after $((SECONDS - started))s"
  fi

  if [[ $with_node -eq 1 ]] && ! node_built; then
    # One `go build` for all of them: the packages they share are compiled once and linking overlaps.
    local tmpdir="$BIN/.node.tmp.$$" name
    rm -rf "$tmpdir"; mkdir -p "$tmpdir"
    log "building ${NODE_CMDS[*]} kubectl (about 6 minutes on 2 cores with a warm cache)"
    (cd "$SRC" && go build -ldflags "$k8s_ldflags" -o "$tmpdir/" k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
    for name in "${NODE_CMDS[@]}" kubectl; do mv -f "$tmpdir/$name" "$BIN/$name"; done
    rm -rf "$tmpdir"
    log "node binaries built after $((SECONDS - started))s"
  fi

  if ! all_built; then
    echo "build_k8s.sh: build finished but the binaries in $BIN do not report the expected versions" >&2
    exit 1
  fi
  log "done in $((SECONDS - started))s"
  done_message
}

main "$@"
