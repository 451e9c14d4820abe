"""A Docker Engine of kindlab's own, for a machine where none runs: Debian's dockerd in namespaces of its own.

`start()` runs dockerd with its own exec root, pid file and unix socket in `folder`, inside a network namespace
made for it (`ip netns add NAME`: its bridges, its iptables rules and the ports it publishes live there, never
in the host's) and a private mount namespace (a tmpfs over /run and a private /etc/docker, so that its plugin
folder and trust key stay in `folder` too); containers go under the cgroup parent NAME. Its default runtime is
runc_caps.py, which leaves out of each container's spec the capabilities this machine's bounding set lacks
(CAP_SYS_RESOURCE here), so that `--privileged` containers, kind's nodes, start. `stop()` removes every container
and volume, stops the daemon, kills whatever is left in its namespace or cgroups, and deletes the namespace,
the cgroups and `folder`; it returns what it could not remove. `sweep()` does the same for an engine whose
owner died. `folder` must not be under /run, which the daemon's mount namespace covers with a tmpfs of its own.

The engine reached through `DOCKER_HOST` (kind, the Docker SDK and the docker CLI all read it) is `url()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import BackendUnavailable
from ...waiting import Deadline

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
RUNTIME = "kindlab-runc"
RUNTIME_PATH = Path(__file__).with_name("runc_caps.py")
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
# The namespace has no route out: a node's packet to any other address is answered "network unreachable" at
# once. The kernel's default rate limit for that answer (1000 ms a peer) turns a kubelet's start into 4 s of
# timeouts (1.20's AWS credential provider tries 169.254.169.254 over and over); measured 4.3 s -> 1.3 s.
ICMP_RATELIMIT = "net.ipv4.icmp_ratelimit"
#: In the engine's folder: the process that started it and the engine's network namespace, for `sweep`.
OWNER = "owner"
TOOLS = ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "ip", "nsenter", "unshare")
# The daemon's mount namespace: a fresh /run (its plugin folder, xtables lock) and a private /etc/docker (key.json).
WRAPPER = 'mount -t tmpfs -o mode=0755 kdock /run && mount --bind "$0" /etc/docker && exec dockerd "$@"'


@dataclass(frozen=True)
class Engine:
    """A dockerd of kindlab's: its folder (socket, pid, logs), its data root and its network namespace."""

    folder: Path
    netns: str
    data_root: Path

    @property
    def socket(self) -> Path:
        """The daemon's unix socket."""
        return self.folder / "docker.sock"

    @property
    def url(self) -> str:
        """The daemon's address, as DOCKER_HOST and docker.DockerClient's base_url take it."""
        return f"unix://{self.socket}"

    @property
    def netns_path(self) -> Path:
        """The engine's network namespace file."""
        return NETNS_DIR / self.netns

    @property
    def log(self) -> Path:
        """dockerd's log."""
        return self.folder / "dockerd.log"

    def pid(self) -> int | None:
        """dockerd's process id while it runs."""
        try:
            pid = int((self.folder / "docker.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def answers(self) -> bool:
        """True when the daemon answers on its socket."""
        return self.socket.exists() and answers(self.url)

    def log_tail(self, lines: int = 15) -> str:
        """The end of dockerd's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def answers(url: str) -> bool:
    """True when a Docker Engine answers at `url`."""
    import docker

    try:
        return bool(docker.DockerClient(base_url=url, timeout=5).ping())
    except docker.errors.DockerException:
        return False


def missing() -> list[str]:
    """What this machine lacks to run an engine of kindlab's own (empty: nothing)."""
    out = [] if os.geteuid() == 0 else ["root (network and mount namespaces, cgroups)"]
    absent = [t for t in TOOLS if not shutil.which(t)]
    if absent:
        out.append(f"{', '.join(absent)} (apt-get install docker.io)")
    if not Path("/etc/docker").is_dir():
        out.append("/etc/docker (the docker.io package makes it)")
    return out


def daemon_config(engine: Engine) -> dict[str, object]:
    """dockerd's daemon.json: kindlab's runtime as the default, nothing else changed."""
    return {"runtimes": {RUNTIME: {"path": str(RUNTIME_PATH)}}, "default-runtime": RUNTIME}


def start(engine: Engine) -> Engine:
    """Start the engine unless it answers already; BackendUnavailable naming the cause when it cannot."""
    if engine.answers():
        return engine
    if engine.folder.resolve().is_relative_to("/run"):
        raise BackendUnavailable(f"{engine.folder}: a Docker Engine's folder cannot be under /run, which its own "
                                 "mount namespace covers with a tmpfs; choose another (KINDLAB_DOCKER_DIR)")
    if lack := missing():
        raise BackendUnavailable("kindlab cannot start a Docker Engine of its own here: missing " + "; ".join(lack))
    if engine.folder.exists():   # a dead engine's leftovers
        dismantle(engine)
    for sub in ("etc", "run"):
        (engine.folder / sub).mkdir(parents=True)
    engine.data_root.mkdir(parents=True, exist_ok=True)
    (engine.folder / OWNER).write_text(f"{os.getpid()} {engine.netns}\n")
    (engine.folder / "daemon.json").write_text(json.dumps(daemon_config(engine)))
    for argv in (["ip", "netns", "add", engine.netns], ["ip", "-n", engine.netns, "link", "set", "lo", "up"],
                 ["nsenter", f"--net={engine.netns_path}", "sysctl", "-qw", f"{ICMP_RATELIMIT}=0"]):
        done = subprocess.run(argv, capture_output=True, text=True)   # lo: where ports are published
        if done.returncode != 0:
            dismantle(engine)
            raise BackendUnavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    _spawn(engine)
    try:
        _wait_until_up(engine)
    except BackendUnavailable:
        stop(engine)
        raise
    return engine


def _spawn(engine: Engine) -> subprocess.Popen:
    folder = engine.folder
    args = ["--config-file", folder / "daemon.json", "--data-root", engine.data_root, "--exec-root", folder / "run",
            "--pidfile", folder / "docker.pid", "--host", engine.url, "--cgroup-parent", f"/{engine.netns}",
            "--userland-proxy=false"]
    argv = ["nsenter", f"--net={engine.netns_path}", "unshare", "--mount", "--propagation", "slave",
            "sh", "-c", WRAPPER, str(folder / "etc"), *map(str, args)]
    with open(engine.log, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd="/")


def _wait_until_up(engine: Engine) -> None:
    deadline = Deadline(START_TIMEOUT)
    while not deadline.passed:
        if engine.answers():
            return
        deadline.sleep(0.2)
    raise BackendUnavailable(f"kindlab's Docker Engine did not answer in {START_TIMEOUT:g}s; its log "
                             f"({engine.log}) ends:\n{engine.log_tail()}")


# -- teardown ----------------------------------------------------------------------------------------
def stop(engine: Engine) -> list[str]:
    """Remove the containers and volumes, stop dockerd and everything it started, delete its namespace, cgroups
    and folder (the data root, a cache of images, stays); what is left, if anything."""
    _remove_containers(engine)
    pid = engine.pid()
    if pid:
        _terminate(pid)
    dismantle(engine)
    return leftovers(engine)


def _remove_containers(engine: Engine) -> None:
    if not engine.answers():
        return
    import docker

    try:
        client = docker.DockerClient(base_url=engine.url, timeout=60)
        for container in client.containers.list(all=True):
            container.remove(force=True, v=True)
        client.volumes.prune()
        client.networks.prune()
    except docker.errors.DockerException:
        pass  # the processes are killed below


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = Deadline(STOP_TIMEOUT)
    while _running(pid) and not deadline.passed:
        deadline.sleep(0.1)
    _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = Deadline(5.0)
    while _running(pid) and not deadline.passed:
        deadline.sleep(0.05)


def _running(pid: int) -> bool:
    """True while `pid` exists; a child of this process (it started the engine) is reaped once it has exited,
    else its zombie would outlast every wait (dockerd exits at once on SIGTERM: waiting on the zombie cost each
    `down` in one process 15 s). Another process's zombie is its parent's (init's, when that died) to reap."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return Path(f"/proc/{pid}").exists()


def dismantle(engine: Engine) -> list[str]:
    """Kill what runs in the engine's namespace and cgroups, delete them and its folder; what there was."""
    found = []
    if engine.netns_path.exists():
        for pid in pids_in_netns(engine.netns_path.stat().st_ino):
            _kill(pid)
            found.append(f"process {pid}")
        found.append(f"network namespace {engine.netns}")
    for pid in cgroup_pids(engine.netns):
        _kill(pid)
        found.append(f"process {pid}")
    found += [str(d) for d in cgroup_dirs(engine.netns)]
    subprocess.run(["ip", "netns", "del", engine.netns], capture_output=True)
    remove_cgroups(engine.netns)
    for mount in host_mounts_under(engine.folder):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    for mount in host_mounts_under(engine.data_root):   # the data root's overlay mounts, should any be left
        subprocess.run(["umount", "-l", mount], capture_output=True)
    if engine.folder.exists():
        shutil.rmtree(engine.folder, ignore_errors=True)
        found.append(str(engine.folder))
    return found


def sweep(engine: Engine, min_age: float = 60.0) -> list[str]:
    """Remove what an engine whose owner died without stopping it left behind, unless it still answers or is
    younger than `min_age` seconds (being started); what was removed."""
    try:
        owner = int((engine.folder / OWNER).read_text().split()[0])
        age = time.time() - (engine.folder / OWNER).stat().st_mtime
    except (OSError, ValueError, IndexError):
        owner, age = 0, min_age
    if not (engine.folder.exists() or engine.netns_path.exists()) or engine.answers():
        return []
    if Path(f"/proc/{owner}").exists() and age < min_age:
        return []
    return dismantle(engine)


def leftovers(engine: Engine) -> list[str]:
    """What of the engine still exists: processes, its namespace, cgroups, mounts, its folder."""
    left = [f"process {pid}" for pid in sorted(set(cgroup_pids(engine.netns)))]
    if engine.netns_path.exists():
        left += [f"process {pid}" for pid in pids_in_netns(engine.netns_path.stat().st_ino)]
        left.append(f"network namespace {engine.netns}")
    left += [str(p) for p in cgroup_dirs(engine.netns)]
    left += [f"mount {m}" for m in host_mounts_under(engine.folder)]
    if engine.folder.exists():
        left.append(str(engine.folder))
    return left


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


def cgroup_dirs(name: str) -> list[Path]:
    """The engine's cgroup parent in every hierarchy, deepest first."""
    tops = list(CGROUP_ROOT.glob(f"*/{name}")) + list(CGROUP_ROOT.glob(name))
    found = [p for top in tops if top.is_dir() for p in top.rglob("*") if p.is_dir()] + tops
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(name: str) -> list[int]:
    """The processes in the engine's cgroups (its containers')."""
    pids: set[int] = set()
    for folder in cgroup_dirs(name):
        try:
            pids.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            pass
    return sorted(pids)


def remove_cgroups(name: str) -> None:
    """rmdir the engine's (empty) cgroups, deepest first."""
    for folder in cgroup_dirs(name):
        try:
            folder.rmdir()
        except OSError:
            pass


def host_mounts_under(folder: Path) -> list[str]:
    """Mount points under `folder` in this (the host's) mount namespace."""
    prefix = str(folder.resolve() if folder.exists() else folder)
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True)
