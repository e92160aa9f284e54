#!/usr/bin/env bash
# Build Ringleader's wheel, the native extension dataplane._native included: the one build both image
# paths use (the Dockerfile's Rust stage for users, e2e/build_image.sh on this machine), so the image's
# Python stage installs a wheel and needs no compiler.
#
#   dataplane/native/build-wheel.sh OUT_DIR     build (or take from the cache) and copy the wheel to OUT_DIR;
#                                               prints the wheel's path on stdout
#   dataplane/native/build-wheel.sh --key       print the cache key of the current sources and toolchain
#
# - Sources: pyproject.toml, README.md, dataplane/, operator/ of this checkout (no build output, caches or
#   in-place extensions), staged in a temporary directory, so the checkout is never written to.
# - Toolchain: cargo/rustc >= the crate's rust-version (dataplane/native/Cargo.toml), python3 >= 3.11 with
#   venv. The build's Python environment (the build-system.requires of pyproject.toml) is a virtualenv
#   under the cache; cargo's output goes to ${CARGO_TARGET_DIR:-$CACHE/cargo/target}, shared with
#   `make native` (both name the same interpreter in PYO3_PYTHON, so neither rebuilds the other's work).
# - The extension is abi3 (CPython >= 3.11): one wheel serves every CPython >= 3.11 on the platform.
# - glibc: the extension's ELF symbol versions give the highest glibc it needs; the wheel is tagged
#   manylinux_2_<that>_<arch> (pip then refuses it on an older glibc instead of failing at import), after
#   checking that it links only libraries every manylinux system has.
# - Cache: ${RINGLEADER_CACHE:-~/.cache/ringleader}/native-wheel/<key>/, the key hashing the staged
#   sources, this script, rustc's and python's versions; concurrent callers serialise on a flock.
set -euo pipefail

main() {
  trap 'echo "build-wheel.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  local out="" key_only=0
  for arg in "$@"; do
    case "$arg" in
      --key) key_only=1 ;;
      -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
      -*) die 2 "unknown argument: $arg" ;;
      *) [[ -z "$out" ]] || die 2 "one output directory, got '$out' and '$arg'"; out="$arg" ;;
    esac
  done
  [[ $key_only -eq 1 || -n "$out" ]] || die 2 "usage: build-wheel.sh OUT_DIR | --key"

  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  CACHE="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  PYTHON="${PYTHON:-python3}"
  check_toolchain

  STAGE="$(mktemp -d "${TMPDIR:-/tmp}/ringleader-wheel.XXXXXX")"
  trap 'rm -rf "$STAGE"' EXIT
  stage_sources "$STAGE/src"
  local key
  key="$( { cd "$STAGE/src" && find . -type f | LC_ALL=C sort | xargs sha256sum; sha256sum "$0" | cut -c1-64;
            rustc -V; "$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)'; } | sha256sum | cut -c1-16)"
  if [[ $key_only -eq 1 ]]; then echo "$key"; return 0; fi

  local dir="$CACHE/native-wheel" wheel
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  if ! flock -n 9; then log "another build holds $dir/.lock; waiting"; flock 9; fi
  wheel="$(find "$dir/$key" -maxdepth 1 -name 'ringleader-*.whl' 2>/dev/null | head -n1 || true)"
  if [[ -z "$wheel" ]]; then
    build "$dir" "$key"
    wheel="$(find "$dir/$key" -maxdepth 1 -name 'ringleader-*.whl' | head -n1)"
    # Keep the five newest source states.
    find "$dir" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' -printf '%T@ %p\n' |
      sort -rn | tail -n +6 | cut -d' ' -f2- | xargs -r rm -rf
  else
    log "cached: $wheel"
  fi
  mkdir -p "$out"
  rm -f "$out"/ringleader-*.whl
  cp "$wheel" "$out/"
  echo "$(cd "$out" && pwd)/$(basename "$wheel")"
}

log() { echo "build-wheel: $*" >&2; }
die() { local rc="$1"; shift; echo "build-wheel.sh: $*" >&2; exit "$rc"; }

# The crate's rust-version is the minimum; say how to get a toolchain when there is none or it is too old.
check_toolchain() {
  local need have
  need="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$REPO/dataplane/native/Cargo.toml" | head -n1)"
  [[ -n "$need" ]] || die 1 "no rust-version in dataplane/native/Cargo.toml"
  local howto="install it with rustup (https://rustup.rs): curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y"
  command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1 ||
    die 1 "the Rust toolchain (cargo and rustc >= $need) is a build requirement of Ringleader's native data path; $howto"
  have="$(rustc -V | cut -d' ' -f2)"
  [[ "$(printf '%s\n%s\n' "$need" "${have%%-*}" | sort -V | head -n1)" == "$need" ]] ||
    die 1 "rustc $have is older than $need, the crate's rust-version (distribution packages are often too old); $howto"
  "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die 1 "$PYTHON >= 3.11 with its venv module is needed to build the wheel"
  command -v readelf >/dev/null 2>&1 || die 1 "readelf (binutils) is needed to check the extension's glibc symbols"
}

# What the wheel is built from; never build output, caches or an extension built in place.
stage_sources() {
  local dst="$1" p paths=()
  for p in pyproject.toml README.md dataplane operator; do [[ -e "$REPO/$p" ]] && paths+=("$p"); done
  mkdir -p "$dst"
  (cd "$REPO" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' --exclude='*.so' --exclude=target \
      --exclude=build --exclude='*.egg-info' --exclude=.hypothesis --exclude=.mypy_cache "${paths[@]}") |
    tar -xf - -C "$dst"
  # tar keeps the files' old times; cargo judges freshness by times alone (its dep-info paths are relative),
  # so staged sources older than an output in the shared target dir, built from OTHER sources, would be
  # taken as up to date and that stale extension shipped. Staged now, they are newer than any output.
  find "$dst" -exec touch {} +
}

build() {
  local dir="$1" key="$2" requires venv started=$SECONDS
  requires="$(cd "$STAGE/src" && "$PYTHON" -c \
      'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')"
  # The build environment, reused while build-system.requires and the interpreter stay the same: pyo3's
  # build script reruns (and the crate rebuilds) whenever the interpreter's path changes, which a fresh
  # isolated environment per build would do.
  venv="$dir/venv-$( { echo "$requires"; "$PYTHON" -VV; } | sha256sum | cut -c1-12)"
  if [[ ! -x "$venv/bin/python" ]]; then
    log "build environment $venv: $(echo "$requires" | tr '\n' ' ')"
    rm -rf "$venv.tmp"
    "$PYTHON" -m venv "$venv.tmp"
    { echo "$requires"; echo 'wheel>=0.40'; } >"$STAGE/requires.txt"
    "$venv.tmp/bin/python" -m pip install -q --disable-pip-version-check -r "$STAGE/requires.txt" >&2
    mv "$venv.tmp" "$venv"
  fi
  # pyo3's build script reruns, and the crate rebuilds, whenever PYO3_PYTHON changes: name the interpreter
  # itself, not the build environment's link to it, so this build and `make native` (which does the same)
  # share cargo's output in CARGO_TARGET_DIR.
  local target="${CARGO_TARGET_DIR:-$CACHE/cargo/target}" pyo3_python
  pyo3_python="$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys._base_executable))')"
  log "building the wheel (cargo target $target, PYO3_PYTHON $pyo3_python)"
  mkdir -p "$STAGE/dist"
  (cd "$STAGE/src" && CARGO_TARGET_DIR="$target" PYO3_PYTHON="$pyo3_python" "$venv/bin/python" -m pip wheel -q \
      --no-deps --no-build-isolation --disable-pip-version-check -w "$STAGE/dist" . >&2)
  local built
  built="$(find "$STAGE/dist" -name 'ringleader-*.whl' | head -n1)"
  [[ -n "$built" ]] || die 1 "pip wheel produced no wheel"
  tag_manylinux "$venv" "$built"
  rm -rf "$dir/$key.tmp"; mkdir -p "$dir/$key.tmp"
  cp "$STAGE/dist"/ringleader-*.whl "$dir/$key.tmp/"
  rm -rf "$dir/$key"; mv "$dir/$key.tmp" "$dir/$key"
  log "built $(ls "$dir/$key") in $((SECONDS - started))s"
}

# Tag the wheel manylinux_2_<N>_<arch>, N the highest GLIBC_2.N symbol version the extension needs, after
# checking it links nothing beyond the manylinux set (libc, libm, libpthread, libdl, librt, libgcc_s, ld.so).
tag_manylinux() {
  local venv="$1" whl="$2" unpacked="$STAGE/unpacked" so needed bad glibc arch
  mkdir -p "$unpacked"
  "$venv/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$unpacked"
  so="$(find "$unpacked/dataplane" -maxdepth 1 -name '_native*.so' | head -n1)"
  [[ -n "$so" ]] || die 1 "the wheel has no dataplane/_native*.so: the extension was not built"
  needed="$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
  bad="$(echo "$needed" | grep -v -E '^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libgcc_s\.so\.1|ld-linux-[a-z0-9_-]+\.so\.[0-9])$' || true)"
  [[ -z "$bad" ]] || die 1 "the extension links libraries outside the manylinux set: $bad"
  glibc="$(readelf -V "$so" | grep -o 'GLIBC_2\.[0-9]*' | cut -d. -f2 | sort -n | tail -n1)"
  [[ -n "$glibc" ]] || die 1 "no GLIBC symbol versions found in $so"
  arch="$(uname -m)"
  log "extension needs glibc >= 2.$glibc, links $(echo "$needed" | tr '\n' ' ')-> manylinux_2_${glibc}_$arch"
  (cd "$(dirname "$whl")" && "$venv/bin/python" -m wheel tags --remove --platform-tag "manylinux_2_${glibc}_$arch" \
      "$(basename "$whl")" >/dev/null)
}

main "$@"; exit $?
