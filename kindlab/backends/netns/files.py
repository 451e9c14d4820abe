"""`docker cp` between the host and a node, through the node init's view of the filesystem.

Rules as docker cp's: a file onto an existing folder lands inside it; onto a path ending in '/'
the folder must exist; a folder onto a missing path becomes that path; onto an existing folder it
lands inside (`src/.` copies the contents). Modes are kept, so binaries stay executable.
A node's path is resolved inside the node's root (/proc/<init>/root) as a chroot would resolve it:
`..` stops at the root and a symlink's target starts again from it, so nothing outside is reached.
Kernel file systems (/proc, /sys, /dev) are never copied, to or from, nor walked into.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections import deque
from pathlib import Path

from ...errors import ExecError

HOST_ROOT = Path("/")
KERNEL_DIRS = ("/proc", "/sys", "/dev")
MAX_SYMLINKS = 40   # as the kernel's ELOOP limit


def in_node(root: Path, path: str, spec: str) -> Path:
    """The host path of the node's `path` (from `NODE:PATH` = `spec`), resolved inside `root`."""
    if not path:
        raise ExecError(f"cp: {spec!r} names no path in the node; give one, e.g. {spec}/etc/cni/net.d/", returncode=1)
    return root / resolve(root, path, spec).lstrip("/")


def resolve(root: Path, path: str, spec: str) -> str:
    """`path` resolved below `root` as if `root` were `/`: the absolute path inside, with no symlink left."""
    todo = deque(part for part in path.split("/") if part)
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.popleft()
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        if is_kernel("/" + "/".join(done)):
            done.append(part)      # below /proc, /sys or /dev: not followed (copy refuses kernel file systems)
            continue
        try:
            if not here.is_symlink():
                done.append(part)
                continue
            target = os.readlink(here)
        except OSError as exc:
            raise ExecError(f"cp {spec}: cannot resolve {'/' + '/'.join((*done, part))} in the node: "
                            f"{exc.strerror}", returncode=1) from None
        hops += 1
        if hops > MAX_SYMLINKS:
            raise ExecError(f"cp {spec}: too many levels of symbolic links", returncode=1)
        if target.startswith("/"):
            done = []
        todo.extendleft(reversed([p for p in target.split("/") if p]))
    return "/" + "/".join(done)


def inside(path: Path, root: Path) -> str:
    """`path` (a host path below `root`) as the side it belongs to sees it."""
    rel = os.path.relpath(path, root)
    return "/" if rel == "." else "/" + rel


def is_kernel(path: str) -> bool:
    """True for /proc, /sys, /dev and what lies below them."""
    return any(path == k or path.startswith(k + "/") for k in KERNEL_DIRS)


def copy(src: Path, dest: Path, src_label: str, dest_label: str, dest_ends_with_slash: bool,
         src_root: Path = HOST_ROOT, dest_root: Path = HOST_ROOT) -> None:
    """Copy `src` to `dest` (host paths; a node's lie below its root, /proc/<pid>/root, given as `*_root`)."""
    for path, root, label in ((src, src_root, src_label), (dest, dest_root, dest_label)):
        if is_kernel(inside(Path(os.path.abspath(path)), root)):
            raise ExecError(f"cp {src_label} {dest_label}: {label} is in a kernel file system (/proc, /sys, /dev), "
                            "which cp never copies; copy a regular file or folder", returncode=1)
    try:
        _copy(src, dest, src_label, dest_label, dest_ends_with_slash, _skip_kernel(src, src_root), dest_root)
    except OSError as exc:
        why = {errno.EROFS: "read-only file system", errno.ENOENT: "no such file or directory",
               errno.ENOTDIR: "not a directory", errno.EISDIR: "is a directory",
               errno.ENOSPC: "no space left on device"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise ExecError(f"cp {src_label} {dest_label}: {why}", returncode=1, stderr=str(exc)) from None


def _skip_kernel(src: Path, root: Path):
    """A folder copy's `ignore`: leave out the kernel file systems when the walk reaches them."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        where = inside(Path(os.path.abspath(folder)), root)
        return {n for n in names if is_kernel(os.path.join(where, n))}
    return ignore


def _copy(src: Path, dest: Path, src_label: str, dest_label: str, dest_slash: bool, ignore,
          dest_root: Path = HOST_ROOT) -> None:
    def place(path: Path) -> Path:   # a destination below a node's root, resolved inside it again
        return path if dest_root == HOST_ROOT else dest_root / resolve(dest_root, inside(path, dest_root),
                                                                      dest_label).lstrip("/")
    if not src.exists() and not src.is_symlink():
        raise ExecError(f"cp: could not find the file {src_label}: no such file or directory", returncode=1)
    contents_only = src_label.rstrip("/").endswith("/.")
    if src.is_dir():
        if dest.exists() and not dest.is_dir():
            raise ExecError(f"cp {src_label} {dest_label}: cannot copy a directory to a file", returncode=1)
        target = dest if (not dest.exists() or contents_only) else place(dest / src.resolve().name)
        if not target.parent.exists():
            raise ExecError(f"cp {src_label} {dest_label}: destination directory does not exist", returncode=1)
        _copy_tree(src, target, ignore, place)
        return
    if dest.is_dir():
        target = place(dest / src.name)
    elif dest_slash:
        raise ExecError(f"cp {src_label} {dest_label}: destination directory {dest_label} must exist", returncode=1)
    else:
        target = dest
        if not target.parent.is_dir():
            raise ExecError(f"cp {src_label} {dest_label}: destination directory does not exist", returncode=1)
    # never unlink a target: through /proc/<pid>/root that could detach one of the node's mounts
    shutil.copy2(src, target, follow_symlinks=True)


def _copy_tree(src: Path, target: Path, ignore, place) -> None:
    """copytree(symlinks=True), with every destination passed through `place`: a symlink already in a
    node cannot lead the copy out of the node."""
    for folder, dirs, names in os.walk(src):
        skipped = ignore(folder, dirs + names)
        links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        dirs[:] = [d for d in dirs if d not in skipped and d not in links]
        here = place(target / os.path.relpath(folder, src))
        here.mkdir(exist_ok=True)
        for name in [n for n in names + links if n not in skipped]:
            source, to = Path(folder, name), place(here / name)
            if source.is_symlink():
                if not to.is_symlink() and not to.exists():
                    to.symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, to, follow_symlinks=True)
        shutil.copystat(folder, here)
