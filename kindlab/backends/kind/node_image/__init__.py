"""kindlab's kind node image, made on the machine without a registry: `kindlab build node-image`.

  rootfs   the base: Debian 12 by debootstrap from the machine's mirror (systemd, runc, iptables, nftables,
           python3), with the pinned containerd 1.7 and CNI plugins 1.9.1 installed by dpkg, cached per package list
  files    what kindlab writes into it: its entrypoint, the kubelet's and the registry's units, containerd's
           configuration (CRI with cgroupfs, the node's own registry for every pull, restrict_oom_score_adj)
  images   the images kubeadm, kube-proxy and the walkthrough name, as OCI layouts the node's registry serves

The image is two layers of Docker's: the base, imported (`kindlab/node-base:<key>`), and kindlab's files, the
kubelet, kubeadm and kubectl of set-up's Kubernetes build and the images, added by a `docker build` that also
sets what `docker import` cannot (STOPSIGNAL, ENTRYPOINT). Its tag carries a digest of everything that went
in (`inputs_key`), so a build with the same inputs is found in the engine and not made again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ....errors import EnvironmentProblem
from ....progress import Reporter, quiet
from ...oci import registry as oci_registry
from . import files, images, rootfs

NAME = "kindlab/node"
BASE = "kindlab/node-base"
NODE_BINARIES = ("kubelet", "kubeadm", "kubectl")
#: What kind's node image has in /opt/cni/bin (kind images/base/Dockerfile): taken from the pinned plugins' package.
NODE_PLUGINS = ("host-local", "loopback", "portmap", "ptp")
EXCLUDED = ("./dev/*", "./proc/*", "./sys/*", "./.kindlab-done", "./var/cache/apt/*", "./var/lib/apt/lists/*")
DOCKERFILE = """\
FROM {base}
COPY add/ /
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
"""


def missing_binaries(bin_dir: Path) -> list[str]:
    """The Kubernetes binaries the node needs that set-up's build lacks."""
    return [b for b in NODE_BINARIES if not (bin_dir / b).is_file()]


def build(client: Any, bin_dir: Path, cache: Path, report: Reporter = quiet) -> str:
    """Make the node image in the Docker Engine of `client` unless it has it already; its tag."""
    if lack := missing_binaries(bin_dir):
        raise EnvironmentProblem(f"the kind node image needs {', '.join(lack)} from set-up's Kubernetes build in "
                                 f"{bin_dir}: run `make setup` (scripts/build-kubernetes.sh)")
    started = time.monotonic()
    root = rootfs.base(cache, report)
    base_tag = f"{BASE}:{rootfs.key()}"
    if not client.images.list(name=base_tag):
        _import_base(client, root, cache, base_tag, report)
    tag = f"{NAME}:{images.KUBERNETES_VERSION}-{inputs_key(bin_dir)}"
    if client.images.list(name=tag):
        report(f"node image: {tag} is there already")
        return tag
    context = _context(cache / "context", root, bin_dir, base_tag, report)
    report(f"node image: docker build {tag}")
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    report(f"node image: {tag} built in {time.monotonic() - started:.0f} s")
    return tag


def _import_base(client: Any, root: Path, cache: Path, tag: str, report: Reporter) -> None:
    archive = cache / f"{root.name}.tar"
    report(f"node image: importing the base {tag}")
    argv = ["tar", "-C", str(root), "--numeric-owner", *(f"--exclude={p}" for p in EXCLUDED), "-cf", str(archive), "."]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise EnvironmentProblem(f"packing the node image's base failed: {done.stderr.strip()}")
    try:
        repository, version = tag.split(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=version)
    finally:
        archive.unlink(missing_ok=True)


def _context(context: Path, root: Path, bin_dir: Path, base_tag: str, report: Reporter) -> Path:
    """The build context: the Dockerfile and `add/`, what kindlab puts over the base."""
    shutil.rmtree(context, ignore_errors=True)
    add = context / "add"
    for name in NODE_BINARIES:
        _copy(bin_dir / name, add / "usr/bin" / name, 0o755)
    for plugin in NODE_PLUGINS:
        _copy(root / "usr/lib/cni" / plugin, add / "opt/cni/bin" / plugin, 0o755)
    program = "#!/usr/bin/python3 -I\n" + Path(oci_registry.__file__).read_text()
    _write(add / files.REGISTRY_PROGRAM.lstrip("/"), program, 0o755)
    for path, (text, mode) in files.node_files(images.KUBERNETES_VERSION, images.PAUSE).items():
        _write(add / path, text, mode)
    for path, target in files.node_links().items():
        (add / path).parent.mkdir(parents=True, exist_ok=True)
        (add / path).symlink_to(target)
    report("node image: making the images it carries")
    folder = add / files.IMAGES_DIR.lstrip("/")
    images.all_images(bin_dir, root, folder)
    for archive in folder.glob("*.tar"):   # the layouts are what the registry serves
        archive.unlink()
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=base_tag))
    return context


def _copy(source: Path, target: Path, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def _write(target: Path, text: str, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


#: kindlab's own sources that make the image: what it writes, the images, the CNI, the registry, the echo server.
SOURCES = ("backends/kind/node_image", "backends/kind/cni.py", "backends/oci", "cni_plugin.py", "echo.py")
#: The machine's files that go into the images (oci.images and images.py).
MACHINE_FILES = (images.ETCD_BINARY, Path("/bin/busybox"), Path("/usr/bin/python3.11"))


def inputs_key(bin_dir: Path) -> str:
    """A digest of everything the image is made from: the base's key, the Kubernetes binaries, kindlab's sources
    that write it, and the machine's files it takes (by size and time)."""
    h = hashlib.sha256(rootfs.key().encode())
    package = Path(__file__).resolve().parents[3]
    paths = sorted(p for source in SOURCES for p in ([package / source] if (package / source).is_file()
                                                     else (package / source).rglob("*.py")))
    for path in [*(bin_dir / b for b in sorted({*NODE_BINARIES, *images.CONTROL_PLANE, "kube-proxy", "pause"})),
                 *paths]:
        h.update(path.name.encode())
        with open(path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    for path in MACHINE_FILES:
        st = path.stat() if path.exists() else None
        h.update(f"{path}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}".encode())
    return h.hexdigest()[:12]
