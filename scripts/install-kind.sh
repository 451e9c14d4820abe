#!/usr/bin/env bash
# kind, installed as its documentation says (`go install sigs.k8s.io/kind@VERSION`), into the cache outside the
# checkout: $KINDLAB_CACHE/kind/<version>/bin/kind. The version is pinned in one place, KIND_VERSION in
# kindlab/backends/kind/tools.py (why that one: its comment). Later runs find it and do nothing.
# Exit 0 with kind in place; exit 3 with one line on stderr where it cannot be installed (no Go toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${KINDLAB_CACHE:-/var/cache/kindlab}
VERSION=$(sed -n 's/^KIND_VERSION = "\(v[0-9.]*\)".*/\1/p' kindlab/backends/kind/tools.py)
[ -n "$VERSION" ] || { echo "kindlab kind: no KIND_VERSION in kindlab/backends/kind/tools.py" >&2; exit 1; }
dest="$CACHE/kind/$VERSION/bin"
if [ -x "$dest/kind" ] && "$dest/kind" version 2>/dev/null | grep -q "kind $VERSION "; then
  echo "kindlab kind: $VERSION already in $dest"
  exit 0
fi
GO=$(command -v /usr/local/go/bin/go go 2>/dev/null | head -1 || true)
[ -n "$GO" ] || { echo "kindlab kind: no Go toolchain to install kind with (https://go.dev/doc/install)" >&2; exit 3; }
echo "kindlab kind: go install sigs.k8s.io/kind@$VERSION ($("$GO" version | cut -d' ' -f3))"
mkdir -p "$dest"
env GOBIN="$dest" GOMODCACHE="$CACHE/go-mod" GOCACHE="$CACHE/go-build-kind" GOFLAGS=-buildvcs=false \
    "$GO" install "sigs.k8s.io/kind@$VERSION"
"$dest/kind" version
