#!/usr/bin/env bash
# Build the real lab's Kubernetes (and the kind node image's kubeadm and kubectl) from Debian's own source
# package (with the backported fixes of scripts/kubernetes-patches), once, into a cache outside the checkout keyed
# by the source package's version:
#   $KINDLAB_CACHE/kubernetes/<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubeadm,kubectl,
#                                            kubelet,kube-proxy,pause}
# Later runs and clones find the stamp and build nothing. Also installs the Debian packages the
# real lab runs (runc, etcd-server, busybox-static; containerd is the pinned 1.7 that setup.sh unpacks).
# Exit 0 with the binaries in place; exit 3 with one line on stderr when this machine cannot
# (not Debian, not root, no source package): kindlab then uses its model of the kubelet.
set -euo pipefail

CACHE=${KINDLAB_CACHE:-/var/cache/kindlab}
WHAT="cmd/kubelet cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kube-proxy cmd/kubeadm cmd/kubectl"
# The vendored modern-go/reflect2 v1.0.1 reads Go's map internals of before 1.18: built with Go 1.19, kubeadm init
# panics (nil pointer in reflect2.UnsafeMapIterator.HasNext, encoding its kubeconfig). v1.0.2 is that fix and only
# that; it is fetched from the Go module proxy and put in vendor/ in its place.
REFLECT2=v1.0.2
# Fixes of upstream's, backported to this tree (each file says what, why and where from), applied in name order.
PATCHES=$(cd "$(dirname "$0")/kubernetes-patches" && pwd)
STAMP="$WHAT pause reflect2-$REFLECT2 patches-$(cat "$PATCHES"/*.patch | sha256sum | cut -c1-12)"
RUN_PACKAGES=(runc etcd-server busybox-static)   # containerd: the pinned 1.7 of kindlab/runtime_packages.py
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
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$STAMP" ]; then
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
say "vendoring github.com/modern-go/reflect2 $REFLECT2 (the Go 1.18+ fix of the vendored v1.0.1)"
GO_PROXY_TOOL=$(command -v /usr/local/go/bin/go go 2>/dev/null | head -1 || true)
[ -n "$GO_PROXY_TOOL" ] || { echo "kindlab kubernetes: no Go toolchain to fetch reflect2 $REFLECT2 with" >&2; exit 1; }
reflect2=$(cd / && env GOMODCACHE="$CACHE/go-mod" GOFLAGS=-mod=mod GO111MODULE=on \
           "$GO_PROXY_TOOL" mod download -json "github.com/modern-go/reflect2@$REFLECT2" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$reflect2" ] || { echo "kindlab kubernetes: could not fetch reflect2 $REFLECT2" >&2; exit 1; }
rm -rf src/vendor/github.com/modern-go/reflect2
cp -r "$reflect2" src/vendor/github.com/modern-go/reflect2
chmod -R u+w src/vendor/github.com/modern-go/reflect2
rm -f src/vendor/github.com/modern-go/reflect2/go.mod src/vendor/github.com/modern-go/reflect2/go.sum src/vendor/github.com/modern-go/reflect2/*_test.go
sed -i "s#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 $REFLECT2#g" src/go.mod src/vendor/modules.txt
for p in "$PATCHES"/*.patch; do
  say "applying $(basename "$p")"
  patch -d src -p1 --forward --quiet < "$p"
done
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
echo "$STAMP" > "$stamp"
cd /
rm -rf "$work"
say "built v$version in $(( $(date +%s) - start )) s: $dest/bin"
