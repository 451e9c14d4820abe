"""A real Docker Engine for the kind backend's tests, in namespaces of its own, and kind-like node containers.

`start()` runs kindlab's own engine (kindlab.backends.kind.engine: Debian's dockerd 20.10 in a network namespace
`kdock-<hex>` and a private mount namespace, runc less the capabilities this machine lacks) with its data root,
exec root, pid file and unix socket in a temporary folder. `stop()` removes every container, stops the daemon,
kills whatever is left in its namespace or cgroups, deletes the namespace, the cgroups and the folder, and says
what it could not remove. `sweep()` does that for the daemons of test sessions that died.

Nodes are made as kind makes them (pkg/cluster/internal/providers/docker/provision.go): named `<cluster>-<role>N`,
labelled `io.x-k8s.kind.cluster` and `io.x-k8s.kind.role`, a tmpfs on /tmp and /run, a volume on /var,
/lib/modules bound read-only, the config's extraMounts bound, on a bridge network `kind`. Not privileged: this
machine's capability bounding set lacks CAP_SYS_RESOURCE, which runc would have to grant. The image is imported
(`docker import`) from a local rootfs: busybox-static, Debian's `timeout` and `find` (kind's node image is Debian's),
and kind's CNI folders with small stand-ins for the node image's plugins.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from kindlab.backends.kind import engine as engine_mod
from kindlab.errors import BackendUnavailable
from kindlab.topology import Node, Topology

NODE_IMAGE = "kindlab/node:docker-test"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KIND_PLUGINS = ("host-local", "loopback", "portmap", "ptp")
#: Debian's own tools in kind's node image that busybox lacks or does differently (timeout's exit 124, find -delete).
FROM_HOST = ("timeout", "find")


class Unavailable(Exception):
    """dockerd cannot run here; the message says why (the tests skip with it)."""


@dataclass
class Daemon:
    """A test's engine (kindlab.backends.kind.engine) and its network namespace's inode."""

    engine: engine_mod.Engine
    netns_inode: int  # to find its processes after the namespace's name is gone

    @property
    def folder(self) -> Path:
        return self.engine.folder

    @property
    def netns(self) -> str:
        return self.engine.netns

    @property
    def url(self) -> str:
        """The daemon's unix socket, as docker.DockerClient's base_url."""
        return self.engine.url

    def pid(self) -> int | None:
        return self.engine.pid()

    def client(self) -> docker.DockerClient:
        """A Docker SDK client on this daemon."""
        return docker.DockerClient(base_url=self.url, timeout=30)

    def log_tail(self, lines: int = 15) -> str:
        return self.engine.log_tail(lines)


def missing() -> str | None:
    """Why dockerd cannot run here (not root, a tool missing), or None."""
    lack = engine_mod.missing() + [f"{t} (apt-get install busybox-static)" for t in ("busybox",) if not shutil.which(t)]
    return "; ".join(lack) or None


def start(folder: Path) -> Daemon:
    """Start kindlab's engine in `folder` with a network namespace of its own; Unavailable when it cannot."""
    reason = missing()
    if reason:
        raise Unavailable(reason)
    engine = engine_mod.Engine(folder, f"kdock-{secrets.token_hex(3)}", folder / "data")
    try:
        engine_mod.start(engine)
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from None
    return Daemon(engine, engine.netns_path.stat().st_ino)


# -- teardown ----------------------------------------------------------------------------------------
def stop(daemon: Daemon) -> list[str]:
    """Remove the containers, stop dockerd and everything it started, delete its state; what is left, if any."""
    left = engine_mod.stop(daemon.engine)
    return left + [f"process {pid}" for pid in netns_pids(daemon) if f"process {pid}" not in left]


def sweep(min_age: float = 60.0) -> list[str]:
    """Remove what test daemons whose test session died left behind (its teardown never ran); what was removed.

    A `kdock-*` folder names its owner (the test process) and its namespace: where the owner is gone, its dockerd,
    the processes in its namespace and cgroups, the namespace, the cgroups and the folder go. A `kdock-*` namespace
    no folder names goes when no process is in it. Anything younger than `min_age` seconds is left (being started).
    """
    removed, claimed, now = [], set(), time.time()
    for folder in sorted(Path(tempfile.gettempdir()).glob("kdock-*")):
        try:
            owner, netns = (folder / engine_mod.OWNER).read_text().split()
        except (OSError, ValueError):
            owner, netns = "", ""
        claimed.add(netns)
        alive = Path(f"/proc/{owner}").exists() if owner else now - _mtime(folder) < min_age
        if alive or not folder.is_dir():
            continue
        gone = engine_mod.dismantle(engine_mod.Engine(folder, netns, folder / "data"))
        removed += [f"{what} (of dead test session {owner or '?'})" for what in gone]
    for path in sorted(Path("/run/netns").glob("kdock-*")):
        try:
            idle = now - _mtime(path) >= min_age and not pids_in_netns(path.stat().st_ino)
        except OSError:
            continue
        if path.name not in claimed and idle:
            removed += engine_mod.dismantle(engine_mod.Engine(Path("/nonexistent"), path.name, Path("/nonexistent")))
    return removed


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def netns_pids(daemon: Daemon) -> list[int]:
    """The processes in the daemon's network namespace (dockerd, containerd, the shims), as `ip netns pids`."""
    return pids_in_netns(daemon.netns_inode)


pids_in_netns = engine_mod.pids_in_netns
cgroup_dirs = engine_mod.cgroup_dirs
cgroup_pids = engine_mod.cgroup_pids
host_mounts_under = engine_mod.host_mounts_under


# -- the node image ----------------------------------------------------------------------------------
def rootfs_tar() -> bytes:
    """A tiny node rootfs as a tar: busybox applets, Debian's timeout and find with their libraries, kind's folders."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "usr/bin", "usr/local/bin", "etc/cni/net.d", "opt/cni/bin", "kind", "lib/modules",
                       "proc", "sys", "dev", "root", "run", "var/lib"):
            _add_dir(tar, folder)
        _add_dir(tar, "tmp", 0o1777)
        _add_dir(tar, "var/tmp", 0o1777)
        tar.add(shutil.which("busybox"), "bin/busybox")
        for applet in _busybox_applets():
            _add_link(tar, f"bin/{applet}", "busybox")
        for tool in FROM_HOST:
            _add_with_libraries(tar, shutil.which(tool), f"usr/bin/{tool}")
        for plugin in KIND_PLUGINS:
            _add_file(tar, f"opt/cni/bin/{plugin}", _fake_plugin(plugin), 0o755)
        _add_file(tar, "etc/hostname", b"node\n", 0o644)
    return buf.getvalue()


def _busybox_applets() -> list[str]:
    out = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    return [a for a in out if a != "busybox" and a not in FROM_HOST]


def _fake_plugin(name: str) -> bytes:
    """A stand-in CNI plugin that answers VERSION and names itself."""
    return (f'#!/bin/sh\n# kind node image stand-in: {name}\n'
            'echo \'{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\'\n').encode()


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_with_libraries(tar: tarfile.TarFile, binary: str, name: str) -> None:
    """A dynamically linked binary and the libraries `ldd` names, at their own paths."""
    tar.add(binary, name)
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        path = next((w for w in line.split() if w.startswith("/")), None)
        if path and path.lstrip("/") not in tar.getnames():
            tar.add(os.path.realpath(path), path.lstrip("/"))


def import_node_image(client: docker.DockerClient) -> str:
    """`docker import` the node rootfs as NODE_IMAGE (no registry); returns the image's tag."""
    client.api.import_image_from_data(rootfs_tar(), repository=NODE_IMAGE.split(":")[0],
                                      tag=NODE_IMAGE.split(":")[1], changes=[f"ENV {PATH_ENV}"])
    return NODE_IMAGE


# -- kind's node containers ------------------------------------------------------------------------------
def kind_network(client: docker.DockerClient) -> Any:
    """The bridge network `kind`, as kind makes it (inside the daemon's network namespace)."""
    return client.networks.create("kind", driver="bridge", options={
        "com.docker.network.bridge.enable_ip_masquerade": "true", "com.docker.network.driver.mtu": "1500"})


def run_node(client: docker.DockerClient, cluster: str, node: Node, own: dict[str, Path]) -> Any:
    """A node container as kind runs one: its labels, tmpfs, /var volume, /lib/modules and the extraMounts.

    `own` maps kind's own bind targets (/lib/modules, /dev/mapper) to host folders standing in for the host's.
    """
    binds = [f"{host}:{target}:ro" if target == "/lib/modules" else f"{host}:{target}" for target, host in own.items()]
    binds += [f"{m.host_path}:{m.container_path}" + (":ro" if m.read_only else "") for m in node.mounts]
    return client.containers.run(
        NODE_IMAGE, ["sleep", "86400"], name=node.name, hostname=node.name, detach=True, tty=True, init=False,
        labels={"io.x-k8s.kind.cluster": cluster, "io.x-k8s.kind.role": node.role},
        security_opt=["seccomp=unconfined", "apparmor=unconfined"], tmpfs={"/tmp": "", "/run": ""},
        volumes=["/var", *binds], network="kind", restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})


def run_nodes(client: docker.DockerClient, topology: Topology, folder: Path, order: list[int]) -> list[Any]:
    """The topology's nodes, started in `order` (indexes), with stand-ins for /lib/modules (all) and
    /dev/mapper (the last node, as kind binds it on btrfs and zfs hosts)."""
    own = {"/lib/modules": folder / "modules", "/dev/mapper": folder / "mapper"}
    for path in own.values():
        path.mkdir(exist_ok=True)
    last = len(topology.nodes) - 1
    return [run_node(client, topology.name, topology.nodes[i],
                     own if i == last else {"/lib/modules": own["/lib/modules"]}) for i in order]


def netns_exec(netns: str, *argv: str) -> str:
    """A command's stdout, run in the daemon's network namespace (to look, never to change)."""
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=True).stdout
