"""Finding and removing what real components leave: processes by namespace, and their cgroups.

containerd-shim and the containers' processes carry no lab marker (containerd starts them, and
the shims re-parent to PID 1), so they are found by the namespaces they live in: a process whose
network namespace is a node's or one of its pods', or whose mount namespace is a node's, is the
lab's. The node's mounts (the kubelet's self-bind of its root dir, containers' overlay and shm
mounts, pod netns files) live in the node's private mount namespace and go with it once the last
process in it is gone and no file holds it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from ....waiting import Deadline
from ..processes import alive, start_time


def ns_id(path: Path | str) -> int | None:
    """The inode that identifies a namespace file (/run/netns/x, /proc/<pid>/ns/net, ...); None for a file
    that is no namespace (a namespace file whose bind mount is gone)."""
    try:
        st = os.stat(path)
        return st.st_ino if st.st_dev == os.stat("/proc/self/ns/net").st_dev else None
    except OSError:
        return None


def pod_netns(init_pid: int) -> list[Path]:
    """The network namespace files containerd made for pods, seen through a node process's root."""
    folder = Path(f"/proc/{init_pid}/root/run/netns")
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def now_ticks() -> int:
    """The time since boot in clock ticks, as process start times are counted."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _born_before(pid: int, ticks: int | None) -> bool:
    if ticks is None:
        return True
    started = start_time(pid)
    return started is not None and started <= ticks


def members(net: set[int], mnt: set[int], born_before: int | None = None) -> list[int]:
    """Every process whose network namespace is in `net` or whose mount namespace is in `mnt`.

    Namespace ids are reused at once when a namespace goes: to ask after a teardown whether any
    of *ours* is left, pass `born_before=now_ticks()` taken before it (a newer process cannot be ours).
    """
    out = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        if ns_id(f"/proc/{pid}/ns/net") in net or ns_id(f"/proc/{pid}/ns/mnt") in mnt:
            if _born_before(pid, born_before):
                out.append(pid)
    return out


def holders(ids: set[int], born_before: int | None = None) -> list[int]:
    """Processes holding an open file descriptor on one of the namespaces `ids` (which keeps it alive)."""
    wanted = {f"{kind}:[{i}]" for i in ids for kind in ("net", "mnt")}
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in wanted and _born_before(int(entry.name), born_before):
                        out.append(int(entry.name))
                        break
    return out


def cgroup_mounts() -> dict[str, Path]:
    """Each cgroup hierarchy's name as /proc/<pid>/cgroup writes it ("cpu", "name=systemd", "") -> its mount."""
    controllers = {line.split()[0] for line in Path("/proc/cgroups").read_text().splitlines()[1:]}
    out: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, options = right.split()[:3]
        point = Path(left.split()[4])
        if fstype == "cgroup2":
            out.setdefault("", point)
        elif fstype == "cgroup":
            names = [o for o in options.split(",") if o in controllers or o.startswith("name=")]
            out.setdefault(",".join(names), point)
    return out


def cgroups_of(pids: list[int]) -> set[Path]:
    """The cgroup folders the processes are in, in every hierarchy (the root left out)."""
    mounts = cgroup_mounts()
    out = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                _, names, path = line.split(":", 2)
                if path != "/" and names in mounts:
                    out.add(mounts[names] / path.lstrip("/"))
    return out


def kill_all(net: set[int], mnt: set[int], timeout: float = 10.0) -> tuple[list[int], set[Path]]:
    """SIGKILL every member until none is left; returns the pids killed and the cgroups they were in."""
    killed: list[int] = []
    groups: set[Path] = set()
    deadline = Deadline(timeout)
    while True:
        pids = [p for p in members(net, mnt) if alive(p)]
        if not pids:
            return killed, groups
        if deadline.passed:
            raise TimeoutError(f"processes still alive after {timeout:g}s: {pids}")
        groups |= cgroups_of(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed += [p for p in pids if p not in killed]
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        deadline.sleep(0.02)


def remove_cgroups(groups: set[Path], keep: set[Path]) -> list[Path]:
    """rmdir the folders (deepest first), then their parents that are empty and not in `keep`; returns those left."""
    left = []
    for group in sorted(groups, key=lambda p: len(p.parts), reverse=True):
        path = group
        while path not in keep and path.name and path.exists():
            try:
                path.rmdir()
            except OSError:
                if path == group:
                    left.append(group)
                break
            path = path.parent
    return left


def cgroup_busy(group: Path) -> bool:
    """True when the cgroup folder has processes or child folders (rmdir would fail)."""
    try:
        return bool((group / "cgroup.procs").read_text().strip()) or any(e.is_dir() for e in os.scandir(group))
    except OSError:
        return False


def cgroup_tree(depth: int = 3) -> set[Path]:
    """Every cgroup folder down to `depth` below each hierarchy's root (a snapshot for `keep`)."""
    out: set[Path] = set()
    for root in cgroup_mounts().values():
        out.add(root)
        frontier = [root]
        for _ in range(depth):
            nxt = []
            for folder in frontier:
                with contextlib.suppress(OSError):
                    nxt += [Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
            out |= set(nxt)
            frontier = nxt
    return out


def sweep(netns_files: list[Path], mnt_files: list[Path]) -> list[int]:
    """Kill every process of a lab's nodes and their pods (found by namespace), then remove the containers'
    cgroups they were in (runc's, under k8s.io); the pids killed."""
    net = {i for p in netns_files if (i := ns_id(p))}
    mnt = {i for p in mnt_files if (i := ns_id(p))}
    for pid in members(set(), mnt):   # the pods' namespaces, seen through the nodes' own /run
        net |= {i for p in pod_netns(pid) if (i := ns_id(p))}
    if not net and not mnt:
        return []
    killed, groups = kill_all(net, mnt)
    remove_cgroups({g for g in groups if "k8s.io" in g.parts}, set(cgroup_mounts().values()))
    return killed
