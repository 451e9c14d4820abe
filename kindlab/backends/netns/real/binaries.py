"""The real lab's Kubernetes binaries (kindlab.kubernetes_build says where set-up keeps them), and what this
machine lacks to run them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .... import kubernetes_build, runtime_packages
from ....kubernetes_build import cache as cache
from ..names import STD_PATH

KUBERNETES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "pause")
PACKAGES = {"runc": "runc", "etcd": "etcd-server", "iptables": "iptables", "nsenter": "util-linux",
            "unshare": "util-linux", "ip": "iproute2", "curl": "curl"}
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def bin_dir() -> Path | None:
    """The newest complete build's bin folder, or None when set-up has not built one."""
    return kubernetes_build.bin_dir(KUBERNETES)


def path() -> str:
    """PATH for the real components: the pinned containerd's folder first (containerd finds its shim on PATH)."""
    pinned = runtime_packages.containerd_bin()
    return f"{pinned}:{STD_PATH}" if pinned else STD_PATH


def missing(cni_dir: Path | None = None) -> list[str]:
    """What this machine lacks to run the real components, each with what provides it (empty: nothing)."""
    out = runtime_packages.missing()
    cni_dir = cni_dir or runtime_packages.cni_dir() or Path("/usr/lib/cni")
    if os.geteuid() != 0:
        out.append("root")
    if bin_dir() is None:
        out.append(f"the Kubernetes binaries in {cache()}/<version>/bin (bash scripts/build-kubernetes.sh)")
    for tool, package in PACKAGES.items():
        if not shutil.which(tool, path=STD_PATH):
            out.append(f"{tool} (apt-get install {package})")
    out += [f"{cni_dir}/{p} (make setup)" for p in CNI_PLUGINS
            if not (cni_dir / p).exists()]
    return out
