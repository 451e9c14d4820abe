"""Container images made on the machine, as OCI image layouts and archives: nothing is downloaded.

- the pause image (`registry.k8s.io/pause:3.2`): Kubernetes' own static `pause`, built by set-up;
- `docker.io/library/busybox:1.36`: Debian's static busybox, the image of doctor's node debug pods;
- `docker.io/inanimate/echo-server:latest`: kindlab's echo server (kindlab/echo.py, unchanged) run
  by the machine's Debian python3 with the shared libraries `ldd` names and the part of the stdlib
  the server imports (found by importing it, optional ssl/bz2/lzma left out): a 15 MB layer.
  Its entry point handles SIGTERM, which PID 1 of a container otherwise ignores.

Each image is one uncompressed layer (so the layer's digest is its diff_id), written reproducibly
(sorted entries, root-owned; a file from the machine keeps its mtime, anything else has mtime 0). The mtimes
matter: a cached .pyc is used only while its source's mtime is the one it recorded, so a layer of mtime-0
sources made the echo server compile its stdlib at every start (0.6 s before it listened).
`ctr -n k8s.io images import <archive>` loads an archive;
`registry.py` serves the same layouts to containerd's pulls.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import subprocess
import tarfile
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

from ... import echo as echo_module
from ...errors import EnvironmentProblem
from .registry import MANIFEST

PAUSE_NAME = "registry.k8s.io/pause:3.2"
ECHO_NAME = "docker.io/inanimate/echo-server:latest"
PYTHON = Path("/usr/bin/python3.11")
BUSYBOX_NAME = "docker.io/library/busybox:1.36"
BUSYBOX = Path("/bin/busybox")
LEFT_OUT = ("ssl", "_ssl", "bz2", "_bz2", "lzma", "_lzma", "hashlib", "_hashlib")   # optional imports
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
#: The OCI architecture of the machine's files (uname's name -> the image config's).
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
ENTRY = """\
import signal
import sys

sys.path.insert(0, "/app")
# PID 1 of a PID namespace ignores SIGTERM unless it handles it: stop at once, as the real image does.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
from kindlab.echo import main  # noqa: E402

main()
"""


@dataclass(frozen=True)
class Image:
    """An image written as an OCI layout folder and as an archive of it."""

    name: str
    layout: Path
    archive: Path
    manifest_digest: str
    size: int

    @property
    def repository(self) -> str:
        return self.name.rsplit(":", 1)[0].split("/", 1)[1]

    @property
    def tag(self) -> str:
        return self.name.rsplit(":", 1)[1]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(layout: Path, data: bytes) -> dict:
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


def layer_tar(files: dict[str, Path | bytes], executables: Set[str] = frozenset(),
              links: dict[str, str] | None = None) -> bytes:
    """A reproducible tar of `files` (image path -> host file or bytes) and symbolic `links` (image path ->
    target), with every parent folder; a host file keeps its mtime (for Python's bytecode cache), folders,
    links and bytes have mtime 0."""
    links = links or {}
    dirs = {str(p) for f in [*files, *links] for p in Path(f).parents if str(p) not in ("/", ".")}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | set(files) | set(links) | {"/tmp"}):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            if name in links:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, links[name], 0o777
                tar.addfile(info)
                continue
            source = files.get(name)
            if source is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "/tmp" else 0o755
                tar.addfile(info)
                continue
            executable = name in executables
            if isinstance(source, Path):
                st = source.stat()
                data, info.mtime = source.read_bytes(), int(st.st_mtime)
                executable = executable or bool(st.st_mode & 0o111)
            else:
                data = source
            info.size, info.mode = len(data), 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_layout(folder: Path, name: str, layer: bytes, config: dict) -> Image:
    """Write an OCI image layout with one layer into `folder` and an archive `<folder>.tar` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    layer_desc = {"mediaType": LAYER, **_blob(folder, layer)}
    full = {"architecture": ARCHITECTURES.get(platform.machine(), platform.machine()), "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
            "history": [{"created_by": "kindlab (made on this machine)"}]}
    config_desc = {"mediaType": CONFIG, **_blob(folder, json.dumps(full, sort_keys=True).encode())}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": config_desc,
                           "layers": [layer_desc]}, sort_keys=True).encode()
    manifest_desc = {"mediaType": MANIFEST, **_blob(folder, manifest),
                     "annotations": {"io.containerd.image.name": name,
                                     "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}
    (folder / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (folder / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}, sort_keys=True))
    archive = folder.with_name(folder.name + ".tar")
    with tarfile.open(archive, "w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return Image(name, folder, archive, manifest_desc["digest"], len(layer))


def pause_image(pause_binary: Path, folder: Path, name: str = PAUSE_NAME) -> Image:
    """The sandbox image: the static pause binary as /pause."""
    layer = layer_tar({"/pause": pause_binary}, executables={"/pause"})
    return write_layout(folder / "pause", name, layer, {"Entrypoint": ["/pause"], "WorkingDir": "/"})


def busybox_image(folder: Path, busybox: Path = BUSYBOX) -> Image:
    """`busybox:1.36` from Debian's busybox-static, as /bin/busybox: the node debug pods' image (doctor)."""
    layer = layer_tar({"/bin/busybox": busybox}, executables={"/bin/busybox"})
    return write_layout(folder / "busybox", BUSYBOX_NAME, layer,
                        {"Entrypoint": ["/bin/busybox"], "Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"})


def run(argv: list[str | Path], what: str) -> subprocess.CompletedProcess:
    """Run a tool of the machine's; EnvironmentProblem with its words when it fails."""
    done = subprocess.run([str(a) for a in argv], capture_output=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"{what}: `{' '.join(map(str, argv))}` exited {done.returncode}: "
                                 f"{done.stderr.decode(errors='replace').strip()}")
    return done


def shared_libraries(binary: Path) -> list[Path]:
    """The files the dynamic linker loads for `binary`, as `ldd` names them (the interpreter included)."""
    text = run(["ldd", binary], f"listing the libraries of {binary}").stdout.decode()
    return [Path(m) for m in re.findall(r"(/\S+) \(0x", text)]


def stdlib_files(python: Path) -> list[Path]:
    """The stdlib files `python -S` loads to run the echo server (optional modules left out), with their .pyc."""
    probe = ("import sys\n"
             f"for name in {LEFT_OUT!r}: sys.modules[name] = None\n"
             "import importlib.util, signal\n"
             f"spec = importlib.util.spec_from_file_location('echo', {str(Path(echo_module.__file__))!r})\n"
             "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
             "print('\\n'.join(sorted({m.__file__ for m in sys.modules.values() if getattr(m, '__file__', None)})))\n")
    text = run([python, "-S", "-I", "-c", probe], "listing the echo server's stdlib files").stdout.decode()
    stdlib = f"/usr/lib/{python.name}/"
    files = []
    for line in text.split():
        path = Path(line)
        if not line.startswith(stdlib):
            continue
        files.append(path)
        cached = path.parent / "__pycache__" / f"{path.stem}.cpython-{python.name[6:].replace('.', '')}.pyc"
        if path.suffix == ".py" and cached.exists():
            files.append(cached)
        if path.suffix == ".so":
            files += shared_libraries(path)
    return files


def echo_image(folder: Path, python: Path = PYTHON) -> Image:
    """`inanimate/echo-server`: python3 running kindlab/echo.py as PID 1, listening on $PORT (8080)."""
    files: dict[str, Path | bytes] = {str(p): p for p in [python, *shared_libraries(python), *stdlib_files(python)]}
    files[f"/usr/lib/{python.name}/lib-dynload/.keep"] = b""   # the folder python looks for at start-up
    files["/app/kindlab/__init__.py"] = b""
    files["/app/kindlab/echo.py"] = Path(echo_module.__file__)
    files["/app/entry.py"] = ENTRY.encode()
    config = {"Entrypoint": [str(python), "-S", "-B", "/app/entry.py"], "Env": ["PATH=/usr/bin:/bin"],
              "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/"}
    return write_layout(folder / "echo-server", ECHO_NAME, layer_tar(files), config)
