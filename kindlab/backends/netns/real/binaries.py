"""Where set-up (scripts/build-kubernetes.sh) keeps the built Kubernetes binaries, and what is missing.

    $KINDLAB_CACHE/kubernetes/<Debian source version>/bin/{kube-apiserver,...,kubelet,kube-proxy,pause}
    $KINDLAB_CACHE/kubernetes/<Debian source version>/.built   the stamp, written last
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..names import STD_PATH

KUBERNETES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "pause")
PACKAGES = {"containerd": "containerd", "containerd-shim-runc-v2": "containerd", "ctr": "containerd",
            "runc": "runc", "etcd": "etcd-server", "iptables": "iptables", "nsenter": "util-linux",
            "unshare": "util-linux", "ip": "iproute2", "curl": "curl"}
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def cache() -> Path:
    return Path(os.environ.get("KINDLAB_CACHE", "/var/cache/kindlab")) / "kubernetes"


def bin_dir() -> Path | None:
    """The newest complete build's bin folder, or None when set-up has not built one."""
    builds = sorted(cache().glob("*/.built"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stamp in builds:
        folder = stamp.parent / "bin"
        if all((folder / b).is_file() for b in KUBERNETES):
            return folder
    return None


def missing(cni_dir: Path = Path("/usr/lib/cni")) -> list[str]:
    """What this machine lacks to run the real components, each with what provides it (empty: nothing)."""
    out = []
    if os.geteuid() != 0:
        out.append("root")
    if bin_dir() is None:
        out.append(f"the Kubernetes binaries in {cache()}/<version>/bin (bash scripts/build-kubernetes.sh)")
    for tool, package in PACKAGES.items():
        if not shutil.which(tool, path=STD_PATH):
            out.append(f"{tool} (apt-get install {package})")
    out += [f"{cni_dir}/{p} (apt-get install containernetworking-plugins)" for p in CNI_PLUGINS
            if not (cni_dir / p).exists()]
    return out
