#!/usr/bin/env bash
# Build (once) the container images the lab (e2e/lab.py) runs, without Docker and without a registry:
#
#   localhost/pause:lab          the sandbox image, pause.c from the k8s.io/kubernetes module, gcc -static
#   localhost/otelcol:<ver>      the upstream collector of e2e/build_otelcol.sh (static binary only)
#   localhost/telemetrygen:<ver> upstream telemetrygen, same release
#   localhost/ringleader:lab     Debian bookworm minbase + python3 + this project's wheel (dataplane/native/build-wheel.sh)
#   localhost/loadgen:lab        the same base + the OpenTelemetry SDK + e2e/loadgen.py, e2e/lab_loadgen.py
#
# The Python images share one base layer (debootstrap --variant=minbase, built once).  Images are
# assembled with umoci in one OCI layout and written by skopeo as docker-archive tarballs that
# `ctr images import` takes:  ${RINGLEADER_CACHE:-$HOME/.cache/ringleader}/images/archives/<name>.tar
# Each archive is rebuilt only when its inputs change (a hash of them is kept next to it); the project
# images are keyed on the project's sources, so editing dataplane/ or operator/ rebuilds them.
# Concurrent runs serialise on a flock(1) lock.
#
# Usage:  e2e/build_images.sh [--print-dir] [NAME...]     (NAME: pause otelcol telemetrygen ringleader loadgen)
set -Eeuo pipefail

main() {
  trap 'echo "build_images.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  local here repo print_dir=0 names=()
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  repo="$(cd "$here/.." && pwd)"
  for arg in "$@"; do
    case "$arg" in
      --print-dir) print_dir=1 ;;
      -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
      pause|otelcol|telemetrygen|ringleader|loadgen) names+=("$arg") ;;
      *) echo "build_images.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
  done
  [[ ${#names[@]} -gt 0 ]] || names=(pause otelcol telemetrygen ringleader loadgen)

  CACHE="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  ROOT="$CACHE/images"
  OUT="$ROOT/archives"
  LAYOUT="$ROOT/oci"
  K8S_VERSION="${RINGLEADER_K8S_VERSION:-v1.37.1}"
  OTELCOL_VERSION="${RINGLEADER_OTELCOL_VERSION:-v0.161.0}"
  SUITE=bookworm
  MIRROR="${RINGLEADER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  log() { echo "build_images: $*" >&2; }

  if [[ "$(id -u)" != 0 ]]; then
    echo "build_images.sh: building images needs root (debootstrap, chroot, umoci unpack)" >&2; exit 1
  fi
  local tool
  for tool in debootstrap umoci skopeo gcc; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]] || {
      echo "build_images.sh: '$tool' is missing: run e2e/lab_deps.sh (apt-get install debootstrap umoci skopeo gcc)" >&2
      exit 1
    }
  done

  mkdir -p "$OUT"
  exec 9>"$ROOT.lock"
  if ! flock -n 9; then log "another build holds $ROOT.lock; waiting for it"; flock 9; fi
  [[ -d "$LAYOUT" ]] || umoci init --layout "$LAYOUT"

  local name
  for name in "${names[@]}"; do "build_$name"; done
  if [[ $print_dir -eq 1 ]]; then echo "$OUT"; else log "images ready in $OUT"; fi
}

# fresh KEY NAME: true when $OUT/NAME.tar exists and was built from inputs hashing to KEY.
fresh() { [[ -f "$OUT/$2.tar" && "$(cat "$OUT/$2.key" 2>/dev/null)" == "$1" ]]; }

# export TAG NAME REF KEY: write the layout's TAG as docker-archive $OUT/NAME.tar named REF, atomically.
export_archive() {
  local tag="$1" name="$2" ref="$3" key="$4" tmp="$OUT/.$2.tar.$$"
  rm -f "$tmp"
  skopeo copy -q "oci:$LAYOUT:$tag" "docker-archive:$tmp:$ref" >&2
  mv -f "$tmp" "$OUT/$name.tar"
  echo "$key" >"$OUT/$name.key"
  umoci gc --layout "$LAYOUT" || true
  log "$ref -> $OUT/$name.tar ($(du -h "$OUT/$name.tar" | cut -f1))"
}

# static_image TAG FILE...: a one-layer image holding the given files under /usr/local/bin and a CA bundle.
static_image() {
  local tag="$1"; shift
  local bundle="$ROOT/bundle.$tag.$$" f
  rm -rf "$bundle"
  umoci new --image "$LAYOUT:$tag"
  umoci unpack --image "$LAYOUT:$tag" "$bundle" >/dev/null
  mkdir -p "$bundle/rootfs/usr/local/bin" "$bundle/rootfs/etc/ssl/certs" "$bundle/rootfs/tmp"
  chmod 1777 "$bundle/rootfs/tmp"
  for f in "$@"; do install -m 0755 "$f" "$bundle/rootfs/usr/local/bin/"; done
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$bundle/rootfs/etc/ssl/certs/"
  fi
  umoci repack --image "$LAYOUT:$tag" "$bundle"
  rm -rf "$bundle"
}

build_pause() {
  local src mod
  mod="$(GOFLAGS=-modcacherw GOMODCACHE="$CACHE/go/mod" go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  src="$mod/build/pause/linux/pause.c"
  [[ -f "$src" ]] || { echo "build_images.sh: $src not found in the k8s.io/kubernetes module" >&2; exit 1; }
  local key; key="$(sha256sum "$src" | cut -c1-16)"
  fresh "$key" pause && return 0
  log "pause: compiling $src"
  local tmp="$ROOT/pause.$$"; mkdir -p "$tmp"
  gcc -Os -static -o "$tmp/pause" "$src"
  strip "$tmp/pause" || true
  static_image pause "$tmp/pause"
  rm -rf "$tmp"
  umoci config --image "$LAYOUT:pause" --config.entrypoint /usr/local/bin/pause --config.user 65535:65535
  export_archive pause pause localhost/pause:lab "$key"
}

otelcol_bin_dir() { bash "$(dirname "${BASH_SOURCE[0]}")/build_otelcol.sh" --print-bin-dir; }

build_otelcol() {
  local bin key; bin="$(otelcol_bin_dir)"
  key="$(sha256sum "$bin/otelcol" | cut -c1-16)"
  fresh "$key" otelcol && return 0
  static_image otelcol "$bin/otelcol"
  umoci config --image "$LAYOUT:otelcol" --config.entrypoint /usr/local/bin/otelcol --config.user 65532:65532
  export_archive otelcol otelcol "localhost/otelcol:${OTELCOL_VERSION#v}" "$key"
}

build_telemetrygen() {
  local bin key; bin="$(otelcol_bin_dir)"
  key="$(sha256sum "$bin/telemetrygen" | cut -c1-16)"
  fresh "$key" telemetrygen && return 0
  static_image telemetrygen "$bin/telemetrygen"
  umoci config --image "$LAYOUT:telemetrygen" --config.entrypoint /usr/local/bin/telemetrygen \
    --config.user 65532:65532
  export_archive telemetrygen telemetrygen "localhost/telemetrygen:${OTELCOL_VERSION#v}" "$key"
}

# The Python base: debootstrap minbase with python3 and venv, built once and kept as the layout's "base".
build_base() {
  [[ -f "$ROOT/base.done" ]] && return 0
  local rootfs="$ROOT/base-rootfs.$$" bundle="$ROOT/bundle.base.$$"
  rm -rf "$rootfs" "$bundle"
  log "base: debootstrap $SUITE minbase + python3 from $MIRROR (a few minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$MIRROR" \
    >"$ROOT/debootstrap.log" 2>&1 || { tail -20 "$ROOT/debootstrap.log" >&2; exit 1; }
  # Slim it: no apt caches, docs or man pages in every image.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  umoci new --image "$LAYOUT:base"
  umoci unpack --image "$LAYOUT:base" "$bundle" >/dev/null
  rm -rf "$bundle/rootfs"; mv "$rootfs" "$bundle/rootfs"
  umoci repack --image "$LAYOUT:base" "$bundle"
  rm -rf "$bundle"
  touch "$ROOT/base.done"
}

# python_image TAG NAME REF KEY INSTALL...: unpack the base, run pip in a chroot (env -i, so the host's
# PIP_* settings do not leak in; the host CA bundle, since package traffic may pass a proxy CA), add a
# layer, set the config.  Extra files are staged in $STAGE by the caller and copied to /app.
python_image() {
  local tag="$1" name="$2" ref="$3" key="$4"; shift 4
  local bundle="$ROOT/bundle.$tag.$$"
  rm -rf "$bundle"
  umoci unpack --image "$LAYOUT:base" "$bundle" >/dev/null
  local r="$bundle/rootfs"
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  mkdir -p "$r/app"; cp -a "$STAGE/." "$r/app/"
  mount --bind /dev "$r/dev"; mount -t proc proc "$r/proc"
  local rc=0
  chroot "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    /bin/sh -ec "python3 -m venv /opt/venv && /opt/venv/bin/pip install -q $*" || rc=$?
  umount "$r/proc" "$r/dev"
  [[ $rc -eq 0 ]] || { echo "build_images.sh: pip install in the $name image failed" >&2; exit 1; }
  : >"$r/etc/resolv.conf"
  find "$r/opt/venv" -name __pycache__ -prune -o -name '*.pyc' -print0 | xargs -0 rm -f
  rm -rf "$r/app/build" "$r/root/.cache"
  umoci repack --image "$LAYOUT:$tag" "$bundle"
  rm -rf "$bundle"
  umoci config --image "$LAYOUT:$tag" --config.user 65532:65532 --config.workingdir /app \
    --config.env PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin --config.env PYTHONUNBUFFERED=1 \
    --config.env PYTHONDONTWRITEBYTECODE=1
  export_archive "$tag" "$name" "$ref" "$key"
}

# A hash of the project files that go into the ringleader image.
project_key() {
  local paths=() p
  for p in pyproject.toml README.md dataplane operator; do [[ -e "$REPO/$p" ]] && paths+=("$p"); done
  (cd "$REPO" && find "${paths[@]}" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' |
      LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16
}

build_ringleader() {
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local key; key="$(project_key)"
  fresh "$key" ringleader && return 0
  build_base
  log "ringleader: installing the project's wheel (native extension included) into the base image"
  STAGE="$ROOT/stage.ringleader.$$"; rm -rf "$STAGE"; mkdir -p "$STAGE"
  # The base has no Rust toolchain (Debian's rustc is too old anyway): the wheel is built here, with the
  # machine's cargo, by the script the Dockerfile's Rust stage runs.
  bash "$REPO/dataplane/native/build-wheel.sh" "$STAGE" >/dev/null
  python_image ringleader ringleader localhost/ringleader:lab "$key" "--only-binary=:all: /app/ringleader-*.whl"
  rm -rf "$STAGE"
}

build_loadgen() {
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local key
  key="$( (cd "$REPO" && sha256sum e2e/loadgen.py e2e/lab_loadgen.py) | sha256sum | cut -c1-16)"
  fresh "$key" loadgen && return 0
  build_base
  log "loadgen: installing the OpenTelemetry SDK into the base image"
  STAGE="$ROOT/stage.loadgen.$$"; rm -rf "$STAGE"; mkdir -p "$STAGE/e2e"
  cp "$REPO/e2e/loadgen.py" "$REPO/e2e/lab_loadgen.py" "$STAGE/e2e/"; : >"$STAGE/e2e/__init__.py"
  python_image loadgen loadgen localhost/loadgen:lab "$key" \
    "'opentelemetry-sdk>=1.24' 'opentelemetry-exporter-otlp-proto-grpc>=1.24' 'opentelemetry-exporter-otlp-proto-http>=1.24'"
  rm -rf "$STAGE"
}

main "$@"
