"""Where set-up (scripts/build-kubernetes.sh) keeps the Kubernetes it builds, for every backend that runs it.

    $KINDLAB_CACHE/kubernetes/<Debian source version>/bin/{kube-apiserver,...,kubelet,kube-proxy,kubeadm,kubectl,pause}
    $KINDLAB_CACHE/kubernetes/<Debian source version>/.built   the stamp, written last
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def cache_root() -> Path:
    """kindlab's cache outside the checkout: $KINDLAB_CACHE, else /var/cache/kindlab."""
    return Path(os.environ.get("KINDLAB_CACHE", "/var/cache/kindlab"))


def cache() -> Path:
    """Where the builds are."""
    return cache_root() / "kubernetes"


def bin_dir(needs: Iterable[str]) -> Path | None:
    """The newest complete build's bin folder that has every binary `needs` names, or None."""
    wanted = tuple(needs)
    builds = sorted(cache().glob("*/.built"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stamp in builds:
        folder = stamp.parent / "bin"
        if all((folder / b).is_file() for b in wanted):
            return folder
    return None
