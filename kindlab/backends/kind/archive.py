"""`docker cp` semantics on in-memory tar archives: locations, packing, renaming, unpacking."""

from __future__ import annotations

import io
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import KindlabError


@dataclass(frozen=True)
class Location:
    """One side of a copy: a host path (node None) or `node:/path` inside a node."""

    node: str | None
    path: str

    @property
    def name(self) -> str:
        """The last path component, as docker cp names the copied item."""
        return posixpath.basename(self.path.rstrip("/")) or "/"

    def __str__(self) -> str:
        return f"{self.node}:{self.path}" if self.node else self.path


def is_under(path: str, folder: str) -> bool:
    """True when the node path `path` is `folder` or inside it."""
    path, folder = posixpath.normpath(path), posixpath.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def parse_location(spec: str) -> Location:
    """`NODE:PATH` (docker cp's container syntax) or a host path; `./a:b` is a host path."""
    node, sep, path = spec.partition(":")
    if sep and node and "/" not in node and not node.startswith("."):
        if not path.startswith("/"):
            raise KindlabError(f"cp: {spec!r}: the path in a node must be absolute, e.g. {node}:/etc/cni/net.d/")
        return Location(node, path)
    return Location(None, spec)


def pack(source: Path, arcname: str) -> bytes:
    """A tar archive holding `source` (a file, or a folder recursively) under the name `arcname`."""
    if not source.exists():
        raise KindlabError(f"cp: {source}: no such file or folder on the host")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(source), arcname=arcname)
    return buf.getvalue()


def pack_bytes(files: dict[str, bytes], mode: int = 0o600) -> bytes:
    """A tar archive of in-memory files, name -> content."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def rename_top(data: bytes, old: str, new: str) -> bytes:
    """The same archive with its top entry `old` (and everything under it) renamed to `new`."""
    if old == new:
        return data
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            if member.name == old or member.name.startswith(old + "/"):
                member.name = new + member.name[len(old):]
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def unpack(data: bytes, folder: Path) -> None:
    """Extract an archive into a host folder, refusing absolute paths and escapes (tarfile's data filter)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")


def host_target(dest: str, name: str) -> tuple[Path, str]:
    """Where a copied item named `name` lands on the host: (folder, new name), as docker cp decides."""
    path = Path(dest)
    if path.is_dir():
        return path, name
    if dest.endswith("/"):
        raise KindlabError(f"cp: {dest}: no such folder on the host")
    if not path.parent.is_dir():
        raise KindlabError(f"cp: {path.parent}: no such folder on the host")
    return path.parent, path.name


def node_target(dest: Location, name: str, is_dir: bool) -> tuple[str, str]:
    """Where a copied item named `name` lands in a node: (folder, new name); is_dir: dest is a folder there."""
    if is_dir or dest.path.endswith("/"):
        return dest.path, name
    return posixpath.dirname(dest.path) or "/", dest.name
