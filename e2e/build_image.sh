#!/usr/bin/env bash
# Build the Ringleader image from the repository's Dockerfile without Docker or a registry.
#
#   e2e/build_image.sh            build if the sources changed, print the archive path on stdout
#   e2e/build_image.sh --force    rebuild even if the cached archive matches the sources
#
# 1. Base image (once, cached): `debootstrap --variant=minbase` of Debian bookworm with python3,
#    python3-venv and ca-certificates, plus this machine's CA bundle (package traffic here goes
#    through a proxy CA), packed as an OCI image with umoci. It stands in for python:3.11-slim.
# 2. Ringleader's wheel with the native extension, built by dataplane/native/build-wheel.sh (the
#    script the Dockerfile's Rust stage runs) with this machine's cargo, cached by source hash. No
#    registry here, so no official Rust image: the wheel replaces the Dockerfile's native-wheel stage
#    (`--build-context native-wheel=DIR`). Debian's own rustc (1.63) is too old for the crate.
# 3. The Dockerfile, built by buildah (Debian package; vfs storage driver, chroot isolation, its
#    storage under the cache) with PYTHON_BASE pointing at that base: the same file a user builds
#    with `docker build`.
# 4. The result as a docker-archive, ready for `ctr -n k8s.io images import`:
#        ${RINGLEADER_CACHE:-~/.cache/ringleader}/image/ringleader-<version>-<source hash>.tar  (tag ringleader:<version>)
#    and the link ringleader-<version>.tar to the archive built last.
#
# Needs root, the Rust toolchain (cargo >= the crate's rust-version) and the Debian packages debootstrap,
# umoci, skopeo, buildah (installed when missing and root). Concurrent callers serialise on a flock; the
# archive is renamed into place atomically; its name carries the hash of the sources it was built from
# (Dockerfile, pyproject.toml, README.md, dataplane/, operator/), so an unchanged tree is a no-op.
set -euo pipefail

main() {
  trap 'echo "build_image.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  local force=0
  for arg in "$@"; do
    case "$arg" in
      --force) force=1 ;;
      -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
      *) echo "build_image.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
  done

  REPO="$(cd "$(dirname "$0")/.." && pwd)"
  CACHE="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  IMG="$CACHE/image"
  SUITE=bookworm
  BASE_NAME="localhost/ringleader-base:python3-$SUITE"
  VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/pyproject.toml" | head -n1)"
  TAG="ringleader:$VERSION"
  log() { echo "build_image: $*" >&2; }
  mkdir -p "$IMG"

  # What the image is built from: the Dockerfile and everything it copies (tracked or not, never ignored).
  local src_hash
  src_hash="$(cd "$REPO" && { echo Dockerfile; echo .dockerignore; echo pyproject.toml; echo README.md;
      git ls-files -co --exclude-standard -- dataplane operator; } | sort -u |
      while read -r f; do [[ -f "$f" ]] && { echo "== $f"; cat "$f"; }; done | sha256sum | cut -c1-16)"
  # One archive per source state, so worktrees on other commits sharing this cache do not rebuild in
  # turn; ringleader-<version>.tar links to the one built last.
  ARCHIVE="$IMG/ringleader-$VERSION-$src_hash.tar"
  LATEST="$IMG/ringleader-$VERSION.tar"

  if [[ $force -eq 0 && -f "$ARCHIVE" ]]; then
    report; echo "$ARCHIVE"; return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "build_image.sh: needs root (debootstrap, buildah with vfs storage); run as root" >&2; exit 1
  fi
  local missing=""
  for pair in debootstrap:debootstrap umoci:umoci skopeo:skopeo buildah:buildah; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=" ${pair#*:}"
  done
  if [[ -n "$missing" ]]; then
    log "installing$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi

  exec 9>"$IMG/.lock"
  if ! flock -n 9; then log "another build holds $IMG/.lock; waiting"; flock 9; fi
  if [[ $force -eq 0 && -f "$ARCHIVE" ]]; then
    report; echo "$ARCHIVE"; return 0
  fi

  BUILDAH=(buildah --root "$IMG/containers/storage" --runroot "$IMG/containers/run" --storage-driver vfs)
  WORK="$(mktemp -d "$IMG/work.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT

  local started=$SECONDS
  build_base
  log "base ready after $((SECONDS - started))s"

  local wheel
  wheel="$(bash "$REPO/dataplane/native/build-wheel.sh" "$WORK/native-wheel/wheels")"
  log "wheel $(basename "$wheel") ready after $((SECONDS - started))s"

  local revision
  revision="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  log "buildah bud $TAG (PYTHON_BASE=$BASE_NAME, native-wheel from $WORK/native-wheel)"
  "${BUILDAH[@]}" bud --isolation chroot --network host --pull-never --layers=false \
      --build-context "native-wheel=$WORK/native-wheel" \
      --build-arg "PYTHON_BASE=$BASE_NAME" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$revision" \
      -t "$TAG" -f "$REPO/Dockerfile" "$REPO" >&2
  log "image built after $((SECONDS - started))s"
  "${BUILDAH[@]}" push "$TAG" "docker-archive:$WORK/out.tar:$TAG" >&2
  mv -f "$WORK/out.tar" "$ARCHIVE"
  ln -sfn "$(basename "$ARCHIVE")" "$LATEST"
  rm -f "$LATEST.src"
  # Keep the three newest source states (~300 MiB each).
  ls -t "$IMG"/ringleader-"$VERSION"-*.tar | tail -n +4 | xargs -r rm -f
  # Drop this build's intermediate stage and dangling images; the base stays for the next build.
  "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  log "done in $((SECONDS - started))s"
  report
  echo "$ARCHIVE"
}

# Debian minbase + python3 as a local OCI image, imported into buildah's storage as $BASE_NAME.
build_base() {
  local layout="$IMG/base-$SUITE"
  if [[ ! -f "$layout/.complete" ]]; then
    rm -rf "$layout"
    local root="$WORK/rootfs"
    log "debootstrap $SUITE minbase + python3 (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$root" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; return 1; }
    # This machine reaches package indexes through a proxy with its own CA: trust what the host trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/locale/* "$root"/var/log/*
    umoci init --layout "$WORK/base" >&2
    umoci new --image "$WORK/base:python3" >&2
    umoci unpack --image "$WORK/base:python3" "$WORK/bundle" >&2
    cp -a "$root/." "$WORK/bundle/rootfs/"
    umoci repack --image "$WORK/base:python3" "$WORK/bundle" >&2
    umoci config --image "$WORK/base:python3" --config.cmd python3 \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env LANG=C.UTF-8 >&2
    umoci gc --layout "$WORK/base" >&2
    rm -rf "$WORK/bundle" "$root"
    mv "$WORK/base" "$layout"
    touch "$layout/.complete"
  fi
  if ! "${BUILDAH[@]}" inspect --type image "$BASE_NAME" >/dev/null 2>&1; then
    # Straight into buildah's storage under the name the Dockerfile's PYTHON_BASE will use.
    skopeo copy -q "oci:$layout:python3" \
        "containers-storage:[vfs@$IMG/containers/storage+$IMG/containers/run]$BASE_NAME" >&2
    "${BUILDAH[@]}" inspect --type image "$BASE_NAME" >/dev/null
  fi
}

# Sizes on stderr: the archive (what is imported) and the unpacked layers (what a node stores).
report() {
  local archive_mb layers_mb
  archive_mb="$(( $(stat -c %s "$ARCHIVE") / 1024 / 1024 ))"
  layers_mb="$(tar -tvf "$ARCHIVE" | awk '$6 ~ /\.tar$|^[0-9a-f]{64}$/ {s += $3} END {printf "%d", s / 1048576}')"
  log "image $TAG: docker-archive $ARCHIVE is ${archive_mb} MiB (layers ${layers_mb} MiB uncompressed)"
}

main "$@"; exit $?
