"""The images a kindlab kind node carries, made on the machine as OCI layouts (kindlab.backends.oci.images).

kubeadm v1.20.2 names its control plane's images under k8s.gcr.io; the node's own registry (files.REGISTRY)
serves these layouts under every registry name, so that kubeadm's static pods, kube-proxy's DaemonSet, the
sandboxes and the seed's `inanimate/echo-server` pull them from the node itself:

- kube-apiserver, kube-controller-manager, kube-scheduler: the static binaries of set-up's Kubernetes build;
- kube-proxy: its binary, with the node rootfs's iptables (nft and legacy) and conntrack, and their libraries;
- etcd: Debian's etcd-server (the machine's, as the real lab runs it), with its libraries;
- pause, busybox, the echo server: as the real lab makes them;
- kindlab's CNI installer: busybox, its script and kindlab-cni (kind/cni.py says what it does).

CoreDNS is not made (no Debian 12 package has it): its pods stay Pending, which the walkthrough never needs.
"""

from __future__ import annotations

from pathlib import Path

from .... import cni_plugin
from ...oci import images as oci
from .. import cni as kind_cni

KUBERNETES_VERSION = "v1.20.2"
REGISTRY = "k8s.gcr.io"
PAUSE = f"{REGISTRY}/pause:3.2"
ETCD = f"{REGISTRY}/etcd:3.4.13-0"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
PATH_ENV = "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: kube-proxy's tools from the node's rootfs (iptables' alternatives point at the nft one, as on Debian 12).
PROXY_TOOLS = ("usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi", "usr/sbin/conntrack")
IPTABLES_NAMES = ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                  "ip6tables-restore")
ETCD_BINARY = Path("/usr/bin/etcd")


def _static(name: str, binary: Path, folder: Path, image: str) -> oci.Image:
    layer = oci.layer_tar({f"/usr/local/bin/{name}": binary}, executables={f"/usr/local/bin/{name}"})
    return oci.write_layout(folder / name, image, layer, {"Env": [PATH_ENV], "WorkingDir": "/"})


def control_plane(bin_dir: Path, folder: Path) -> list[oci.Image]:
    """kube-apiserver, kube-controller-manager and kube-scheduler as kubeadm names them."""
    return [_static(name, bin_dir / name, folder, f"{REGISTRY}/{name}:{KUBERNETES_VERSION}") for name in CONTROL_PLANE]


def with_libraries(files: dict[str, Path | bytes], rootfs: Path, binary: str) -> None:
    """Add a binary of `rootfs` and the libraries it loads (resolved by the machine's ldd: the same Debian)."""
    path = rootfs / binary
    files[f"/{binary}"] = path
    for library in oci.shared_libraries(path):
        inside = rootfs / str(library).lstrip("/")
        files[str(library)] = inside if inside.exists() else library


def kube_proxy(bin_dir: Path, rootfs: Path, folder: Path) -> oci.Image:
    """kube-proxy with iptables (nft, as the node's own) and conntrack."""
    files: dict[str, Path | bytes] = {"/usr/local/bin/kube-proxy": bin_dir / "kube-proxy"}
    for tool in PROXY_TOOLS:
        with_libraries(files, rootfs, tool)
    modules = rootfs / "usr/lib/x86_64-linux-gnu/xtables"
    for module in sorted(modules.glob("*.so")):
        files[f"/{module.relative_to(rootfs)}"] = module
    layer = oci.layer_tar(files, executables={"/usr/local/bin/kube-proxy"},
                          links={f"/usr/sbin/{name}": "xtables-nft-multi" for name in IPTABLES_NAMES})
    return oci.write_layout(folder / "kube-proxy", f"{REGISTRY}/kube-proxy:{KUBERNETES_VERSION}", layer,
                            {"Env": [PATH_ENV], "WorkingDir": "/"})


def etcd(folder: Path, binary: Path = ETCD_BINARY) -> oci.Image:
    """etcd, Debian's build (3.4), under the tag kubeadm 1.20 names."""
    files: dict[str, Path | bytes] = {"/usr/local/bin/etcd": binary}
    files.update({str(lib): lib for lib in oci.shared_libraries(binary)})
    layer = oci.layer_tar(files, executables={"/usr/local/bin/etcd"})
    return oci.write_layout(folder / "etcd", ETCD, layer, {"Env": [PATH_ENV], "WorkingDir": "/"})


def cni_installer(folder: Path, busybox: Path = oci.BUSYBOX) -> oci.Image:
    """kindlab's CNI installer: busybox, the install script and kindlab-cni for the node's python3."""
    files: dict[str, Path | bytes] = {
        "/bin/busybox": busybox,
        "/install": kind_cni.SCRIPT.encode(),
        "/kindlab-cni": kind_cni.plugin_script(Path(cni_plugin.__file__).read_text()).encode(),
    }
    layer = oci.layer_tar(files, executables={"/bin/busybox", "/install", "/kindlab-cni"},
                          links={"/bin/sh": "busybox"})
    return oci.write_layout(folder / "cni-installer", kind_cni.CNI_INSTALLER, layer,
                            {"Entrypoint": ["/bin/busybox", "sh", "/install"], "Env": ["PATH=/bin"],
                             "WorkingDir": "/"})


def all_images(bin_dir: Path, rootfs: Path, folder: Path) -> list[oci.Image]:
    """Every image the node carries, written under `folder`."""
    return [*control_plane(bin_dir, folder), kube_proxy(bin_dir, rootfs, folder), etcd(folder),
            oci.pause_image(bin_dir / "pause", folder, name=PAUSE), oci.busybox_image(folder),
            oci.echo_image(folder), cni_installer(folder)]
