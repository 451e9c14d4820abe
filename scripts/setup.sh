#!/usr/bin/env bash
# Install what kindlab needs and is missing, nothing else:
#   the Debian packages of the netns backend, the real lab's Kubernetes build (cached, once),
#   then .venv with the pinned requirements, then the CNI plugins and containerd every lab runs: Debian's newer
#   builds, pinned by version and SHA-256, unpacked into the cache (kindlab/runtime_packages.py).
#   With --kind: kind itself (scripts/install-kind.sh: go install, into the cache) for the kind backend.
# Where it cannot (not root, no apt-get), it says what to install by hand and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

KIND=
if [ "${1:-}" = "--kind" ]; then KIND=1; shift; fi

APT_PACKAGES=(iproute2 iptables nftables util-linux containernetworking-plugins curl)
# A tool each package provides, to tell whether it is there.
declare -A PROVIDES=([iproute2]=/usr/sbin/ip [iptables]=/usr/sbin/iptables-save [nftables]=/usr/sbin/nft [util-linux]=/usr/bin/nsenter
                     [containernetworking-plugins]=/usr/lib/cni/portmap [curl]=/usr/bin/curl)
EXTRA_APT=("$@")   # e.g. chromium for the browser check; docker.io and debootstrap for kind

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  [ -e "${PROVIDES[$pkg]}" ] || missing+=("$pkg")
done
for pkg in "${EXTRA_APT[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "kindlab setup: missing packages: ${missing[*]}" >&2
    echo "kindlab setup: install them as root, e.g.: sudo apt-get install -y ${missing[*]}" >&2
    echo "kindlab setup: (on other distributions: iproute2, iptables, util-linux, the CNI reference plugins, curl)" >&2
    exit 1
  fi
  echo "kindlab setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # docker.io is for tests that start their own dockerd in namespaces of their own: do not let the package
  # start the system's daemon, which would put its bridge and iptables rules into this machine's namespace.
  if [[ " ${missing[*]} " == *" docker.io "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Real Kubernetes for the lab, built once from Debian's source package into a cache outside the checkout
# (scripts/build-kubernetes.sh); where the machine cannot (exit 3), the lab uses its model of the kubelet.
if [ -z "${KINDLAB_NO_KUBERNETES_BUILD:-}" ]; then
  rc=0
  bash scripts/build-kubernetes.sh || rc=$?
  if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
    echo "kindlab setup: building Kubernetes failed (exit $rc)" >&2
    exit "$rc"
  fi
fi

# kind, as its docs install it (go install), where asked for; without a Go toolchain (exit 3) it says so.
if [ -n "$KIND" ]; then
  bash scripts/install-kind.sh
fi

PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  echo "kindlab setup: creating .venv"
  "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "kindlab setup: installing the pinned requirements into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

# The CNI plugins 1.9.1 and containerd 1.7 from Debian's newer suites, into the cache (the machine's own packages
# stay as they are); it says which it took, or (exit 3) why this machine cannot.
rc=0
.venv/bin/python -m kindlab.runtime_packages || rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then exit "$rc"; fi
