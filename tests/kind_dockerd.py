"""A real Docker Engine for the kind backend's tests, in namespaces of its own, and kind-like node containers.

`start()` runs Debian's dockerd (docker.io 20.10) with its own data root, exec root, pid file and unix socket in a
temporary folder, inside a network namespace made for it (`ip netns add kdock-<hex>`: its bridges and iptables
rules live there, never in the host's) and a private mount namespace (a tmpfs over /run and a private folder over
/etc/docker, so that its plugin folder and trust key stay in the temporary folder too); containers go under the
cgroup parent `kdock-<hex>`. `stop()` removes every container, stops the daemon, kills whatever is left in its
namespace or cgroups, deletes the namespace, the cgroups and the folder, and says what it could not remove.

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
import signal
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from kindlab.topology import Node, Topology

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
NODE_IMAGE = "kindlab/node:docker-test"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KIND_PLUGINS = ("host-local", "loopback", "portmap", "ptp")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Debian's own tools in kind's node image that busybox lacks or does differently (timeout's exit 124, find -delete).
FROM_HOST = ("timeout", "find")
#: In a daemon's folder: the test process that owns it and the daemon's network namespace, for `sweep`.
OWNER = "owner"
TOOLS = ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "ip", "nsenter", "unshare", "busybox", *FROM_HOST)
# The daemon's mount namespace: a fresh /run (its plugin folder, xtables lock) and a private /etc/docker (key.json).
WRAPPER = 'mount -t tmpfs -o mode=0755 kdock /run && mount --bind "$0" /etc/docker && exec dockerd "$@"'


class Unavailable(Exception):
    """dockerd cannot run here; the message says why (the tests skip with it)."""


@dataclass
class Daemon:
    """A running dockerd: its folder, network namespace, process and client."""

    folder: Path
    netns: str
    netns_inode: int  # to find its processes after the namespace's name is gone
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        """The daemon's unix socket, as docker.DockerClient's base_url."""
        return f"unix://{self.folder / 'docker.sock'}"

    def client(self) -> docker.DockerClient:
        """A Docker SDK client on this daemon."""
        return docker.DockerClient(base_url=self.url, timeout=30)

    def log_tail(self, lines: int = 15) -> str:
        """The end of the daemon's log."""
        try:
            return "\n".join((self.folder / "dockerd.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""


def missing() -> str | None:
    """Why dockerd cannot run here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces, cgroups)"
    absent = [t for t in TOOLS if not shutil.which(t)]
    if absent:
        return f"missing {', '.join(absent)} (apt-get install docker.io busybox-static)"
    if not Path("/etc/docker").is_dir():
        return "/etc/docker is missing (the docker.io package makes it)"
    return None


def start(folder: Path) -> Daemon:
    """Start dockerd in a new network namespace and a private mount namespace; Unavailable when it cannot."""
    reason = missing()
    if reason:
        raise Unavailable(reason)
    netns = f"kdock-{secrets.token_hex(3)}"
    (folder / OWNER).write_text(f"{os.getpid()} {netns}\n")
    for sub in ("etc", "data", "run"):
        (folder / sub).mkdir(parents=True)
    (folder / "daemon.json").write_text("{}")
    if subprocess.run(["ip", "netns", "add", netns], capture_output=True).returncode != 0:
        raise Unavailable(f"`ip netns add {netns}` failed (a network namespace of its own is needed)")
    inode = os.stat(f"/run/netns/{netns}").st_ino
    daemon = Daemon(folder, netns, inode, _spawn(folder, netns))
    try:
        _wait_until_up(daemon)
    except Unavailable:
        stop(daemon)
        raise
    return daemon


def _spawn(folder: Path, netns: str) -> subprocess.Popen:
    args = ["--config-file", folder / "daemon.json", "--data-root", folder / "data", "--exec-root", folder / "run",
            "--pidfile", folder / "docker.pid", "--host", f"unix://{folder / 'docker.sock'}",
            "--cgroup-parent", f"/{netns}", "--userland-proxy=false"]
    argv = ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation", "slave",
            "sh", "-c", WRAPPER, str(folder / "etc"), *map(str, args)]
    with open(folder / "dockerd.log", "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _wait_until_up(daemon: Daemon) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise Unavailable(f"dockerd exited {daemon.proc.returncode}:\n{daemon.log_tail()}")
        if (daemon.folder / "docker.sock").exists():
            try:
                if daemon.client().ping():
                    return
            except docker.errors.DockerException:
                pass
        time.sleep(0.2)
    raise Unavailable(f"dockerd did not answer in {START_TIMEOUT:g}s:\n{daemon.log_tail()}")


# -- teardown ----------------------------------------------------------------------------------------
def stop(daemon: Daemon) -> list[str]:
    """Remove the containers, stop dockerd and everything it started, delete its state; what is left, if any."""
    _remove_containers(daemon)
    _terminate(daemon.proc)
    for pid in netns_pids(daemon):  # by inode: found even where the namespace's name is gone
        _kill(pid)
    _dismantle(daemon.folder, daemon.netns)
    return leftovers(daemon)


def sweep(min_age: float = 60.0) -> list[str]:
    """Remove what test daemons whose test session died left behind (its teardown never ran); what was removed.

    A `kdock-*` folder names its owner (the test process) and its namespace: where the owner is gone, its dockerd,
    the processes in its namespace and cgroups, the namespace, the cgroups and the folder go. A `kdock-*` namespace
    no folder names goes when no process is in it. Anything younger than `min_age` seconds is left (being started).
    """
    removed, claimed, now = [], set(), time.time()
    for folder in sorted(Path(tempfile.gettempdir()).glob("kdock-*")):
        try:
            owner, netns = (folder / OWNER).read_text().split()
        except (OSError, ValueError):
            owner, netns = "", ""
        claimed.add(netns)
        alive = Path(f"/proc/{owner}").exists() if owner else now - _mtime(folder) < min_age
        if alive or not folder.is_dir():
            continue
        removed += [f"{what} (of dead test session {owner or '?'})" for what in _dismantle(folder, netns)]
    for path in sorted(Path("/run/netns").glob("kdock-*")):
        try:
            idle = now - _mtime(path) >= min_age and not pids_in_netns(path.stat().st_ino)
        except OSError:
            continue
        if path.name not in claimed and idle:
            removed += _dismantle(None, path.name)
    return removed


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _dismantle(folder: Path | None, netns: str) -> list[str]:
    """Kill what runs in a daemon's namespace and cgroups, delete them and its folder; what there was."""
    found = []
    ns = Path(f"/run/netns/{netns}") if netns else None
    if ns and ns.exists():
        for pid in pids_in_netns(ns.stat().st_ino):
            _kill(pid)
            found.append(f"process {pid}")
        found.append(f"network namespace {netns}")
    if netns:
        for pid in cgroup_pids(netns):
            _kill(pid)
            found.append(f"process {pid}")
        found += [str(d) for d in cgroup_dirs(netns)]
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        remove_cgroups(netns)
    if folder:
        for mount in host_mounts_under(folder):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        found.append(str(folder))
    return found


def leftovers(daemon: Daemon) -> list[str]:
    """What of the daemon still exists: processes, its namespace, cgroups, mounts, its folder."""
    left = [f"process {pid}" for pid in sorted(set(netns_pids(daemon) + cgroup_pids(daemon.netns)))]
    if daemon.proc.poll() is None:
        left.append(f"dockerd {daemon.proc.pid}")
    if Path(f"/run/netns/{daemon.netns}").exists():
        left.append(f"network namespace {daemon.netns}")
    left += [str(p) for p in cgroup_dirs(daemon.netns)]
    left += [f"mount {m}" for m in host_mounts_under(daemon.folder)]
    if daemon.folder.exists():
        left.append(str(daemon.folder))
    return left


def _remove_containers(daemon: Daemon) -> None:
    if daemon.proc.poll() is not None:
        return
    try:
        client = daemon.client()
        for container in client.containers.list(all=True):
            container.remove(force=True, v=True)
    except docker.errors.DockerException:
        pass  # the processes are killed below


def _terminate(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)


def netns_pids(daemon: Daemon) -> list[int]:
    """The processes in the daemon's network namespace (dockerd, containerd, the shims), as `ip netns pids`."""
    return pids_in_netns(daemon.netns_inode)


def pids_in_netns(inode: int) -> list[int]:
    """The processes whose network namespace is the one with this inode."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "ns" / "net").stat().st_ino == inode:
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def cgroup_dirs(netns: str) -> list[Path]:
    """The daemon's cgroup parent in every hierarchy, deepest first."""
    found = [p for top in CGROUP_ROOT.glob(f"*/{netns}") for p in top.rglob("*") if p.is_dir()]
    found += list(CGROUP_ROOT.glob(f"*/{netns}"))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(netns: str) -> list[int]:
    """The processes in the daemon's cgroups (the containers')."""
    pids = set()
    for folder in cgroup_dirs(netns):
        try:
            pids.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        except OSError:
            pass
    return sorted(pids)


def remove_cgroups(netns: str) -> None:
    """rmdir the daemon's (empty) cgroups, deepest first."""
    for folder in cgroup_dirs(netns):
        try:
            folder.rmdir()
        except OSError:
            pass


def host_mounts_under(folder: Path) -> list[str]:
    """Mount points under `folder` in this (the host's) mount namespace: there should be none."""
    prefix = str(folder.resolve() if folder.exists() else folder)
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True)


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
