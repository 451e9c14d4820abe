"""What the netns backend needs from the machine: root, tools, the CNI reference plugins, overlayfs."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ...errors import EnvironmentProblem
from .commands import which

TOOLS = ("ip", "nsenter", "unshare", "mount", "umount", "bash", "sleep", "iptables", "iptables-save", "curl")
CNI_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"), Path("/usr/libexec/cni"))
PLUGINS = ("bridge", "host-local", "portmap", "loopback")


@functools.cache
def check() -> Path:
    """Check everything once per process; returns the folder of the machine's CNI plugins."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("the netns backend needs root (it makes network and mount namespaces): "
                                 "run as root, e.g. with sudo, or use the kind backend")
    for tool in TOOLS:
        which(tool)
    return cni_dir()


def cni_dir() -> Path:
    """The folder holding the CNI reference plugins (Debian: /usr/lib/cni)."""
    for folder in CNI_DIRS:
        if all(os.access(folder / p, os.X_OK) for p in PLUGINS):
            return folder
    raise EnvironmentProblem(f"the CNI reference plugins ({', '.join(PLUGINS)}) are not installed (looked in "
                             f"{', '.join(map(str, CNI_DIRS))}): apt-get install containernetworking-plugins")


def check_overlay() -> None:
    """overlayfs must be available: it gives each node its own /opt/cni/bin."""
    try:
        known = Path("/proc/filesystems").read_text()
    except OSError:
        return
    if "overlay" not in known and not Path("/sys/module/overlay").exists():
        raise EnvironmentProblem("the kernel offers no overlay filesystem, which the netns backend uses for "
                                 "each node's /opt/cni/bin: run `modprobe overlay`")
