#!/usr/bin/env bash
# Build the real lab's Kubernetes from Debian's own source package, once, into a cache outside
# the checkout keyed by the source package's version:
#   $KINDLAB_CACHE/kubernetes/<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,
#                                            kubelet,kube-proxy,pause}
# Later runs and clones find the stamp and build nothing. Also installs the Debian packages the
# real lab runs (containerd, runc, etcd-server, busybox-static).
# Exit 0 with the binaries in place; exit 3 with one line on stderr when this machine cannot
# (not Debian, not root, no source package): kindlab then uses its model of the kubelet.
set -euo pipefail

CACHE=${KINDLAB_CACHE:-/var/cache/kindlab}
WHAT="cmd/kubelet cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kube-proxy"
RUN_PACKAGES=(containerd runc etcd-server busybox-static)
BUILD_PACKAGES=(golang-go rsync jq dpkg-dev gcc libc6-dev)

say() { echo "kindlab kubernetes: $*"; }
cannot() { echo "kindlab kubernetes: $* (the lab uses its model of the kubelet)" >&2; exit 3; }

[ "$(id -u)" = 0 ] || cannot "not root: cannot install packages or run a real kubelet"
command -v apt-get >/dev/null || cannot "no apt-get: the real lab is built from Debian 12's packages"
grep -q '^12' /etc/debian_version 2>/dev/null || cannot "not Debian 12: the real lab is built from its kubernetes source package"

export DEBIAN_FRONTEND=noninteractive
updated=
apt_update() { [ -n "$updated" ] || { apt-get update -qq; updated=1; }; }
install_missing() {
  local want=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || want+=("$pkg")
  done
  if [ ${#want[@]} -gt 0 ]; then
    say "installing ${want[*]}"
    apt_update
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  fi
}

# A deb-src entry for the machine's own Debian mirror: the binary entry, with Types: deb-src.
SRC_LIST=/etc/apt/sources.list.d/kindlab-deb-src.sources
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  main=/etc/apt/sources.list.d/debian.sources
  [ -f "$main" ] || cannot "no $main to derive a deb-src entry from"
  sed 's/^Types: deb$/Types: deb-src/' "$main" > "$SRC_LIST"
  say "added $SRC_LIST (deb-src of $main)"
  updated=
fi

install_missing "${RUN_PACKAGES[@]}"

version=$(apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -1)
if [ -z "$version" ]; then
  apt_update
  version=$(apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -1)
fi
[ -n "$version" ] || cannot "apt-cache finds no source package kubernetes"

upstream=${version##*really}; upstream=${upstream%%-*}   # 1.20.5+really1.20.2-1.1+deb12u1 -> 1.20.2
dest="$CACHE/kubernetes/$version"
stamp="$dest/.built"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$WHAT pause" ]; then
  say "v$version already built in $dest/bin"
  exit 0
fi

install_missing "${BUILD_PACKAGES[@]}"
work="$CACHE/build"
rm -rf "$work"
mkdir -p "$work" "$dest/bin" "$CACHE/go-build"
cd "$work"
say "fetching the source package kubernetes $version"
apt-get source -qq --download-only "kubernetes=$version" >/dev/null 2>&1 || apt-get source -qq --download-only kubernetes >/dev/null
dpkg-source -x --no-check ./*.dsc src >/dev/null
mkdir -p .go/src/k8s.io
ln -s "$work/src" .go/src/k8s.io/kubernetes

say "building $WHAT (about 10 min on 2 cores; log: $work/build.log)"
start=$(date +%s)
(
  cd .go/src/k8s.io/kubernetes
  env GOPATH="$work/.go" GOCACHE="$CACHE/go-build" CGO_ENABLED=0 \
      KUBE_GIT_VERSION="v$upstream" KUBE_GIT_TREE_STATE=clean \
      make WHAT="$WHAT" >"$work/build.log" 2>&1
) &
builder=$!
while kill -0 "$builder" 2>/dev/null; do
  sleep 20
  kill -0 "$builder" 2>/dev/null || break
  last=$(grep -o '+++ \[.*' "$work/build.log" | tail -1 | cut -c1-90 || true)
  say "  $(( $(date +%s) - start )) s ${last:+- $last}"
done
if ! wait "$builder"; then
  tail -20 "$work/build.log" >&2
  echo "kindlab kubernetes: the build failed; the log is $work/build.log" >&2
  exit 1
fi
for b in $WHAT; do
  install -m 0755 "src/_output/bin/${b#cmd/}" "$dest/bin/"
done
gcc -static -Os -o "$dest/bin/pause" src/build/pause/linux/pause.c
strip "$dest/bin/pause" 2>/dev/null || true
echo "$WHAT pause" > "$stamp"
cd /
rm -rf "$work"
say "built v$version in $(( $(date +%s) - start )) s: $dest/bin"
