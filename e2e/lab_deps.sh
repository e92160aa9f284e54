#!/usr/bin/env bash
# Install (once) the Debian packages the lab (e2e/lab.py) drives: runc, the CNI plugins, iptables and
# conntrack for kube-proxy, and debootstrap/umoci/skopeo to build and package images without a registry.
# A no-op when everything is present; as root it installs what is missing with apt-get, otherwise it
# names the exact `apt-get install` line to run and fails.
set -euo pipefail

# command-or-file:package
NEEDED=(
  "runc:runc"
  "/usr/lib/cni/bridge:containernetworking-plugins"
  "iptables:iptables"
  "ip6tables:iptables"
  "conntrack:conntrack"
  "debootstrap:debootstrap"
  "umoci:umoci"
  "skopeo:skopeo"
  "ip:iproute2"
  "gcc:gcc"
  "flock:util-linux"
)

missing=()
for pair in "${NEEDED[@]}"; do
  what="${pair%%:*}"; pkg="${pair#*:}"
  if [[ "$what" == /* ]]; then
    [[ -e "$what" ]] && continue
  else
    command -v "$what" >/dev/null 2>&1 || [[ -x "/usr/sbin/$what" || -x "/sbin/$what" ]] && continue
  fi
  [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" != 0 ]]; then
  echo "lab_deps.sh: the lab needs these Debian packages: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "lab_deps.sh: no apt-get here; install the equivalents of: ${missing[*]}" >&2
  exit 1
fi
echo "lab_deps.sh: installing ${missing[*]}" >&2
# The lock serialises concurrent `make` runs on one machine (apt's own lock would just fail them).
exec 9>/tmp/ringleader-apt.lock
flock 9
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
