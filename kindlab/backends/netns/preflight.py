"""What the netns backend needs from the machine: root, tools, the CNI reference plugins, overlayfs, and a
state folder that can hold overlay layers."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ... import runtime_packages
from ...errors import EnvironmentProblem
from ...model.cni import CNI_BIN
from .names import STATE_ROOT
from .tools import which

TOOLS = ("ip", "nsenter", "unshare", "mount", "umount", "pivot_root", "bash", "sleep", "iptables", "iptables-save",
         "curl")
CNI_DIRS = (Path("/usr/lib/cni"), Path(CNI_BIN), Path("/usr/libexec/cni"))
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
    """The folder holding the CNI reference plugins: the pinned 1.9.1 set-up unpacked (kindlab.runtime_packages),
    else the machine's own package (Debian: /usr/lib/cni)."""
    pinned = runtime_packages.cni_dir()
    for folder in (*([pinned] if pinned else []), *CNI_DIRS):
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
                                 "each node's own root and /opt/cni/bin: run `modprobe overlay`")


def check_layers(state: Path = STATE_ROOT) -> None:
    """The nodes' writable layers live in the lab state: overlayfs refuses an upper folder on an overlay."""
    if fs_type(state) == "overlay":
        raise EnvironmentProblem(f"the lab state folder {state} is on an overlay file system, which overlayfs "
                                 f"refuses for the nodes' writable layers: mount a tmpfs there (mount -t tmpfs "
                                 f"kindlab {state})")


def fs_type(path: Path) -> str | None:
    """The file system type of the mount holding `path` (or its nearest existing parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    best, kind = "", None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point, fstype = fields[4].replace("\\040", " "), fields[fields.index("-") + 1]
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fstype
    return kind
