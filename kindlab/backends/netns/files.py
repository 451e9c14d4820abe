"""`docker cp` between the host and a node, through the node init's view of the filesystem.

Rules as docker cp's: a file onto an existing folder lands inside it; onto a path ending in '/'
the folder must exist; a folder onto a missing path becomes that path; onto an existing folder it
lands inside (`src/.` copies the contents). Modes are kept, so binaries stay executable.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from ...errors import ExecError


def copy(src: Path, dest: Path, src_label: str, dest_label: str, dest_ends_with_slash: bool) -> None:
    """Copy `src` to `dest` (host paths; either may lie under /proc/<pid>/root)."""
    try:
        _copy(src, dest, src_label, dest_label, dest_ends_with_slash)
    except OSError as exc:
        why = {errno.EROFS: "read-only file system", errno.ENOENT: "no such file or directory",
               errno.ENOTDIR: "not a directory", errno.EISDIR: "is a directory",
               errno.ENOSPC: "no space left on device"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise ExecError(f"cp {src_label} {dest_label}: {why}", returncode=1, stderr=str(exc)) from None


def _copy(src: Path, dest: Path, src_label: str, dest_label: str, dest_slash: bool) -> None:
    if not src.exists() and not src.is_symlink():
        raise ExecError(f"cp: could not find the file {src_label}: no such file or directory", returncode=1)
    contents_only = src_label.rstrip("/").endswith("/.")
    if src.is_dir():
        if dest.exists() and not dest.is_dir():
            raise ExecError(f"cp {src_label} {dest_label}: cannot copy a directory to a file", returncode=1)
        target = dest if (not dest.exists() or contents_only) else dest / src.resolve().name
        if not target.parent.exists():
            raise ExecError(f"cp {src_label} {dest_label}: destination directory does not exist", returncode=1)
        shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        return
    if dest.is_dir():
        target = dest / src.name
    elif dest_slash:
        raise ExecError(f"cp {src_label} {dest_label}: destination directory {dest_label} must exist", returncode=1)
    else:
        target = dest
        if not target.parent.is_dir():
            raise ExecError(f"cp {src_label} {dest_label}: destination directory does not exist", returncode=1)
    # never unlink a target: through /proc/<pid>/root that could detach one of the node's mounts
    shutil.copy2(src, target, follow_symlinks=True)
