#!/usr/bin/env bash
# Build (once per source change) `benchtool`, the Go sender and sinks of `make bench` (e2e/benchtool/main.go),
# from the Go module cache shared with build_otelcol.sh (its grpc-go is the collector's, so a warm cache needs no
# network). The binary lands in ${RINGLEADER_CACHE:-$HOME/.cache/ringleader}/benchtool/<source hash>/benchtool;
# concurrent runs serialise on a lock. Prints the binary's path.
set -euo pipefail
main() {
  local here src cache sum out
  here="$(cd "$(dirname "$0")" && pwd)"
  src="$here/benchtool"
  cache="${RINGLEADER_CACHE:-$HOME/.cache/ringleader}"
  sum="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
  out="$cache/benchtool/$sum/benchtool"
  if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
  command -v go >/dev/null 2>&1 || { echo "build_benchtool.sh: 'go' not found; make bench needs Go >= 1.25" >&2; exit 1; }
  mkdir -p "$cache/benchtool/$sum"
  exec 9>"$cache/benchtool/.lock"
  flock 9
  if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"
  export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
  echo "build_benchtool: building $out" >&2
  (cd "$src" && go build -trimpath -o "$out.tmp.$$" .)
  mv -f "$out.tmp.$$" "$out"
  echo "$out"
}
main "$@"
