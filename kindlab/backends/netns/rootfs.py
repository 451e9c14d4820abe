"""A node's root filesystem: the machine's files below, the node's own writable layer above, as a container's.

Design: a folder of the lab state, `nodes/<node>.root/rootfs`, becomes the node's `/` (pivot_root in the node's
mount namespace), and holds one entry per entry of the machine's `/`:
  a folder (etc, usr, var, opt, root, home, ...)   an overlay: the machine's folder as the read-only lower
                                                   layer, `nodes/<node>.root/layers/<name>/upper` above
  /dev                                             the same overlay (the machine's devices, node-owned files),
                                                   with the machine's /dev/pts and a tmpfs /dev/shm of its own
  /run, /tmp                                       a tmpfs of the node's own (/run: mode 755, /tmp: 1777)
  /proc, /sys                                      the machine's, recursively (cgroup mounts included)
  a symlink (bin -> usr/bin, ...)                  the same symlink
  a file (/.dockerenv, ...)                        bound read-only
So everything a node or a command inside it writes (`lab.exec`, `lab.cp`, the CNI provider, the
agent's sandboxes and workloads) lands in its layers, its tmpfs or its own state folders, and reaches
the machine only through the config's extraMounts, exactly as with Docker. Those are bound after the
pivot, their sources seen through the old root: the node's private /run never hides a source under
/run/kindlab, and a missing mount point is made through the node's own symlinks, not the machine's.
The machine gets no mount and no mount point: the node's mounts exist only in its own mount namespace,
and the old root (with the copies of every other namespace's nsfs mount it brought, which would keep
those namespaces alive) is detached once the binds are made.

Why overlays and not read-only binds plus writable folders: a node must be able to write anywhere a
container can (apt, /etc/hosts, /usr/local/bin, the seed's `docker cp` into /etc/cni/net.d), and only
overlays give every folder a writable layer without listing them. Why one overlay per folder and not
one of `/`: the upper layer lives in the lab state, which is below `/`, so it would change its own
lower layer while mounted (undefined for overlayfs), and an overlay of `/` shows none of the machine's
other mounts anyway. An upper folder must not be on an overlay itself: the layers stay on the state's
own file system, a real one or a tmpfs (preflight.check_layers). The real lab's components need some
folders on a real file system, not on an overlay (containerd's snapshots under /var/lib/containerd):
`mounts.plan(own=...)` binds node-owned folders of the state there (components.OWN_DIRS).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

OLD_ROOT = "/.kindlab-host"      # where the machine's root is, inside the node, until it is detached
HOST_ROOT = Path("/")
TMPFS = {"run": "755", "tmp": "1777"}
KERNEL = ("proc", "sys")
SKIP = ("lost+found",)
SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")   # names that may appear in overlay options


@dataclass(frozen=True)
class Entry:
    """One entry of the node's `/`."""

    name: str
    kind: str          # "overlay", "tmpfs", "kernel", "link", "file", "bind" or "empty"
    target: str = ""   # a symlink's target


def entries(host: Path = HOST_ROOT) -> list[Entry]:
    """The node's `/`, entry by entry, from the machine's."""
    out = []
    for item in sorted(os.scandir(host), key=lambda e: e.name):
        out.append(_entry(item))
    names = {e.name for e in out}
    out += [Entry(n, "tmpfs") for n in TMPFS if n not in names]
    out += [Entry(n, "kernel") for n in KERNEL if n not in names]
    return out


def _entry(item: os.DirEntry) -> Entry:
    name = item.name
    if item.is_symlink():
        return Entry(name, "link", os.readlink(item.path))
    if name in TMPFS:
        return Entry(name, "tmpfs")
    if name in KERNEL:
        return Entry(name, "kernel")
    if name in SKIP:
        return Entry(name, "empty")
    if item.is_dir():
        return Entry(name, "overlay" if SAFE_NAME.fullmatch(name) else "bind")
    return Entry(name, "file")


@dataclass(frozen=True)
class RootDirs:
    """Where a node's root and its layers live in the lab state."""

    node_root: Path

    @property
    def root(self) -> Path:
        return self.node_root / "rootfs"

    def upper(self, name: str) -> Path:
        return self.node_root / "layers" / name / "upper"

    def work(self, name: str) -> Path:
        return self.node_root / "layers" / name / "work"

    def make(self, items: list[Entry]) -> None:
        """The skeleton of the root and the layers' folders (host side, before the namespace exists)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / OLD_ROOT.lstrip("/")).mkdir(exist_ok=True)
        for e in items:
            path = self.root / e.name
            if e.kind == "link":
                if not path.is_symlink():
                    path.symlink_to(e.target)
            elif e.kind == "file":
                path.touch()
            else:
                path.mkdir(exist_ok=True)
            if e.kind == "overlay":
                self.upper(e.name).mkdir(parents=True, exist_ok=True)
                self.work(e.name).mkdir(parents=True, exist_ok=True)


def host_path(dirs: RootDirs, path: str) -> Path:
    """Where the node's `path`, covered by no mount of its own, is written on the host: its layer's upper.

    ValueError for paths in a tmpfs or a kernel file system (nothing on the host holds them).
    """
    parts = [p for p in os.path.normpath(path).split("/") if p]
    if not parts:
        return dirs.root
    if parts[0] in TMPFS or parts[0] in KERNEL:
        raise ValueError(f"{path} is in the node's own tmpfs or a kernel file system, not on the host")
    return dirs.upper(parts[0]).joinpath(*parts[1:])


def build(dirs: RootDirs, items: list[Entry], host: Path = HOST_ROOT) -> list[str]:
    """Shell lines, run in the node's new mount namespace, that make its root and pivot into it."""
    root = shlex.quote(str(dirs.root))
    lines = [f"mount --bind {root} {root}"]
    for e in items:
        lines += _mount(dirs, e, host)
    lines += [f"cd {root}", f"pivot_root . {shlex.quote(OLD_ROOT.lstrip('/'))}", "cd /"]
    return lines


def _mount(dirs: RootDirs, e: Entry, host: Path) -> list[str]:
    """The shell lines that make entry `e` of the node's root."""
    source, target = shlex.quote(str(host / e.name)), shlex.quote(str(dirs.root / e.name))
    if e.kind == "overlay":
        opts = f"lowerdir={host / e.name},upperdir={dirs.upper(e.name)},workdir={dirs.work(e.name)}"
        lines = [f"mount -t overlay kindlab-root -o {shlex.quote(opts)} {target} 2>/dev/null "
                 f"|| mount --rbind -o ro {source} {target}"]
        if e.name == "dev":
            lines += [f"mkdir -p {target}/pts {target}/shm", f"mount --rbind {source}/pts {target}/pts",
                      f"mount -t tmpfs -o mode=1777 kindlab-shm {target}/shm"]
        return lines
    if e.kind == "tmpfs":
        return [f"mount -t tmpfs -o mode={TMPFS[e.name]} kindlab-{e.name} {target}"]
    if e.kind == "kernel":
        return [f"mount --rbind {source} {target}"]
    if e.kind in ("file", "bind"):
        return [f"mount --rbind -o ro {source} {target}"]
    return []


def detach() -> list[str]:
    """Shell lines that drop the machine's root once every bind from it is made."""
    return [f"umount -l {OLD_ROOT}", f"rmdir {OLD_ROOT}"]


def from_host(path: Path | str) -> str:
    """A machine path as the node sees it between the pivot and `detach`."""
    return OLD_ROOT + str(Path(path).absolute())
