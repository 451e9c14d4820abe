"""A node's mounts on top of its own root (rootfs.py): /opt/cni/bin, /etc/cni/net.d, the node's folder and
the config's extraMounts, in the order Docker would apply them.

"Image" mounts come first (what kind's node image holds):
  the lab's software the folders its own programs run from inside a node (this package, the Python
                     environment), bound read-only at their own paths where the node's own /tmp or
                     /run would hide them (a checkout under /tmp): kindlab-cni, the echo server
  /opt/cni/bin       overlay: the machine's CNI plugins below, the node's own writable layer above
  /etc/cni/net.d     the node's folder in the lab state
  /run/kindlab/node  the node's folder in the lab state (the lab plugin reads subnet.env there)
then node-owned folders of the state (`own`, for the real components), then the extraMounts,
shallowest containerPath first (Docker sorts them by depth), as recursive binds.
They are made inside the node after the pivot, sources seen through the old root (rootfs.from_host),
so a mount point that does not exist is made where the node sees it: in its own layers, or inside an
earlier bind (as Docker makes it); never on the host's own file system.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ...model.cni import CNI_BIN, NET_D, stand_in
from ...topology import Node, Topology
from . import rootfs
from .names import NODE_LINK
from .state import hostpaths

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def software() -> list[Path]:
    """The folders the lab's programs run from inside a node (this package's checkout, the Python environment)
    that the node's own root would hide: those below a folder it makes its own (/tmp, /run)."""
    out: list[Path] = []
    for folder in sorted({PROJECT_ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}):
        top = folder.parts[1] if len(folder.parts) > 1 else ""
        if top in rootfs.TMPFS and not any(folder.is_relative_to(o) for o in out):
            out.append(folder)
    return out


@dataclass(frozen=True)
class NodeDirs:
    """A node's folders in the lab state."""

    root: Path

    @property
    def netd(self) -> Path:
        return self.root / "net.d"

    @property
    def upper(self) -> Path:
        return self.root / "cni-bin-upper"

    @property
    def work(self) -> Path:
        return self.root / "cni-bin-work"

    @property
    def rootfs(self) -> rootfs.RootDirs:
        """The node's own root and its writable layers, beside this folder (the node sees this one)."""
        return rootfs.RootDirs(self.root.with_name(self.root.name + ".root"))

    def own(self, path: str) -> Path:
        """The state folder bound on the node's `path` (mounts.plan's `own`)."""
        return self.root / "own" / path.strip("/")

    def make(self) -> None:
        for d in (self.netd, self.upper, self.work, self.root / "ipam"):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class NodeMount:
    """One mount in a node's mount namespace."""

    target: str
    source: Path
    kind: str = "bind"          # "bind" or "overlay"
    read_only: bool = False
    is_dir: bool = True
    origin: str = "image"       # "image" or "extraMounts[i]"
    made_source: bool = False   # a missing hostPath folder, made as Docker makes it (now or by another lab)

    def covers(self, path: str) -> bool:
        return path == self.target or path.startswith(self.target.rstrip("/") + "/")


@dataclass(frozen=True)
class Substitution:
    """A mount of Cilium's file replaced by the lab plugin's sibling file."""

    node: str
    host_from: Path
    host_to: Path
    target_from: str
    target_to: str

    def line(self, base: Path | None = None) -> str:
        def show(p: Path) -> str:
            return os.path.relpath(p, base) if base else str(p)
        return f"netns: kindlab-cni stands in for cilium-cni: {show(self.host_from)} -> {show(self.host_to)}"


def plan(topology: Topology, node: Node, dirs: NodeDirs, cni_dir: Path,
         own: tuple[str, ...] = ()) -> tuple[list[NodeMount], list[Substitution]]:
    """The node's mounts in order, and the Cilium files replaced by the lab plugin's.

    `own`: node paths that get a folder of the node's state of their own (a real file system, not an overlay).
    """
    mounts = [NodeMount(str(folder), folder, read_only=True, origin="software") for folder in software()]
    mounts += [
        NodeMount(CNI_BIN, cni_dir, kind="overlay"),
        NodeMount(NET_D, dirs.netd),
        NodeMount(str(NODE_LINK), dirs.root),
    ]
    mounts += [NodeMount(os.path.normpath(p), dirs.own(p), origin="own") for p in own
               if not any(m.target == os.path.normpath(p) for m in mounts)]
    subs = []
    extra = sorted(enumerate(node.mounts), key=lambda im: len(os.path.normpath(im[1].container_path).split("/")))
    for i, m in extra:
        source, target = m.host_path.absolute(), os.path.normpath(m.container_path)
        if replaced := stand_in(source, target):
            subs.append(Substitution(node.name, source, replaced[0], target, replaced[1]))
            source, target = replaced
        made = not source.exists() or hostpaths.made_for_labs(source)   # made now, or by another lab: shared
        mounts.append(NodeMount(target, source, read_only=m.read_only, is_dir=made or source.is_dir(),
                                origin=f"extraMounts[{i}]", made_source=made))
    return mounts, subs


def host_path(mounts: list[NodeMount], path: str, dirs: NodeDirs | None = None) -> Path:
    """Where the node's `path` lives on the host, for writing, given the mounts applied before it."""
    for m in reversed(mounts):
        if m.covers(path):
            rel = os.path.relpath(path, m.target)
            if m.kind == "overlay":
                if dirs is None:
                    raise ValueError("an overlay path needs the node's folders")
                return dirs.upper if rel == "." else dirs.upper / rel
            return m.source if rel == "." else m.source / rel
    if dirs is None:
        raise ValueError("a path of the node's own root needs the node's folders")
    return rootfs.host_path(dirs.rootfs, path)


def prepare(lab_name: str, mounts: list[NodeMount], dirs: NodeDirs) -> list[rootfs.Entry]:
    """Make missing hostPath folders (as Docker does), the node-owned folders and the node's root skeleton,
    before the node's mount namespace is made; returns the root's entries."""
    for m in mounts:
        if m.made_source:
            hostpaths.ensure(lab_name, m.source, "tree")
        elif m.origin == "own":
            m.source.mkdir(parents=True, exist_ok=True)
    items = rootfs.entries()
    dirs.rootfs.make(items)
    return items


def script(mounts: list[NodeMount], dirs: NodeDirs) -> list[str]:
    """Shell lines that apply the mounts inside the node, after the pivot into its own root."""
    lines = []
    for m in mounts:
        target = shlex.quote(m.target)
        lines.append(_mount_point(m, target))
        if m.kind == "overlay":
            opts = (f"lowerdir={rootfs.from_host(m.source)},upperdir={rootfs.from_host(dirs.upper)},"
                    f"workdir={rootfs.from_host(dirs.work)}")
            lines.append(f"mount -t overlay kindlab-cni-bin -o {shlex.quote(opts)} {target}")
        else:
            lines.append(f"mount --rbind {shlex.quote(rootfs.from_host(m.source))} {target}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    return lines


def _mount_point(m: NodeMount, target: str) -> str:
    """The shell line making the mount point inside the node, where it is missing."""
    if m.is_dir:
        return f"mkdir -p {target}"
    return f"[ -e {target} ] || {{ mkdir -p \"$(dirname {target})\" && touch {target}; }}"
