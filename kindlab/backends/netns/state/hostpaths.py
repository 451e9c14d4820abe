"""Paths the labs make on the host, shared between labs and removed when the last lab that uses them goes.

What the labs make today is a missing hostPath folder that Docker would make (kind/config's `empty`),
kind 'tree': every lab that mounts it is counted as a user (the one that made it and any lab after it), and
it is removed, with what was put in it, when the last of them goes, so that the next `up` starts broken
again. A path is removed only while it is still the very folder the lab made (same device and inode, not a
symlink): content the labs did not make is never deleted. Mount points
are made inside the nodes' own roots (rootfs.py), never here; kinds 'dir' and 'file' (removed only
while empty) remain for paths that a lab must make on the host itself.
The registry is /run/kindlab/hostpaths.json, changed under /run/kindlab/hostpaths.lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from ..names import STATE_ROOT
from .store import read_json, write_json

REGISTRY = STATE_ROOT / "hostpaths.json"


@contextlib.contextmanager
def _registry() -> Iterator[dict[str, dict]]:
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(STATE_ROOT / "hostpaths.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        entries = read_json(REGISTRY, {})
        yield entries
        write_json(REGISTRY, entries)


def ensure(lab_name: str, path: Path, kind: str) -> None:
    """Make `path` (kind 'dir', 'file' or 'tree') if missing, recording each part made for `lab`.

    'tree' is a hostPath folder: removed with its contents when no lab uses it any more.
    """
    with _registry() as entries:
        missing = []
        p = path
        while not p.exists() and not p.is_symlink():
            missing.append(p)
            p = p.parent
        for i, part in enumerate(reversed(missing)):
            last = i == len(missing) - 1
            if last and kind == "file":
                part.touch()
            else:
                part.mkdir()
            info = os.lstat(part)
            entries[str(part)] = {"kind": kind if last else "dir", "labs": [lab_name],
                                  "made": [info.st_dev, info.st_ino]}
        if str(path) in entries and lab_name not in entries[str(path)]["labs"]:
            entries[str(path)]["labs"].append(lab_name)
        # parents made for another lab are used by this one too
        for parent in path.parents:
            entry = entries.get(str(parent))
            if entry and lab_name not in entry["labs"]:
                entry["labs"].append(lab_name)


def release(lab_name: str) -> list[str]:
    """Forget `lab`; remove what no lab uses any more (deepest first). Returns the paths removed."""
    removed = []
    with _registry() as entries:
        for key in sorted(entries, key=lambda k: k.count("/"), reverse=True):
            entry = entries[key]
            if lab_name in entry["labs"]:
                entry["labs"].remove(lab_name)
            if entry["labs"]:
                continue
            path = Path(key)
            del entries[key]
            if not _still_made(path, entry):
                continue          # gone or replaced since: what is there now is not the labs' to delete
            try:
                if entry["kind"] == "tree":
                    shutil.rmtree(path)
                elif entry["kind"] == "file":
                    if path.stat().st_size == 0:
                        path.unlink()
                else:
                    path.rmdir()   # only while empty: what others put there stays
                removed.append(key)
            except OSError:
                pass
    return removed


def _still_made(path: Path, entry: dict) -> bool:
    """True while `path` is the file or folder the labs made: same device and inode, and not a symlink."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return not stat.S_ISLNK(info.st_mode) and [info.st_dev, info.st_ino] == entry.get("made")


def made_for_labs(path: Path) -> bool:
    """True when `path` is a hostPath folder a lab made (so a lab that mounts it now is one more user)."""
    entry = read_json(REGISTRY, {}).get(str(path))
    return bool(entry) and entry["kind"] == "tree" and _still_made(path, entry)


def users() -> dict[str, list[str]]:
    """Registered paths and the labs that use them."""
    return {k: v["labs"] for k, v in read_json(REGISTRY, {}).items()}
