"""Minimal node namespaces for the real components, outside the lab's node model (the smoke test's).

    <prefix>-br        a network namespace holding bridge `br0` (the gateway address) and the registry
    <prefix>-<node>    a node's network namespace, eth0 a veth onto br0, no default route
    node init          `unshare --mount --uts` in that namespace: the node's own /etc, /opt and /var
                       (overlays on the machine's, upper layers in the state), its own folders of
                       components.OWN_DIRS bound from the state, /opt/cni/bin an overlay of the CNI
                       package, and a private tmpfs /run; then `sleep infinity` holds the namespaces.

Nothing is made in the machine's own network namespace, and nothing is mounted in its mount
namespace except the netns files of `ip netns add`. `destroy` removes it all; `sweep_stale` removes
the testbeds of runs that were killed before they could (state in /run/<prefix>, with its owner's pid).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .. import preflight
from ..names import NETNS_DIR, STD_PATH
from ..processes import alive, start_time
from ..tools import ENV, ip_batch, nsenter, run, tail, which
from . import binaries, teardown
from .components import OWN_DIRS, node_dir

PREFIX_LEN = 16


@dataclass
class BedNode:
    """One node: its network namespace, its init process, its folder of own files."""

    name: str
    ip: str
    netns: str
    root: Path
    init: subprocess.Popen | None = None

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    def enter(self) -> list[str]:
        """nsenter into the node's mount, UTS and network namespaces."""
        assert self.init is not None
        pid = self.init.pid
        return nsenter(net=self.netns_path, mnt=f"/proc/{pid}/ns/mnt", uts=f"/proc/{pid}/ns/uts")


@dataclass
class Testbed:
    """A bridge namespace and node namespaces, all named `<prefix>-...`."""

    prefix: str
    state: Path
    gateway: str
    nodes: list[BedNode]
    cni_dir: Path = field(default_factory=lambda: preflight.cni_dir())
    started: list[subprocess.Popen] = field(default_factory=list)
    cgroups_before: set[Path] = field(default_factory=set)

    @property
    def bridge_netns(self) -> str:
        return f"{self.prefix}-br"

    def node(self, name: str) -> BedNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self, node: BedNode, name: str, argv: list[str]) -> subprocess.Popen:
        """Start a long-running process in the node, its output in <state>/logs/<node>.<name>.log."""
        log = self.state / "logs" / f"{node.name}.{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen([*node.enter(), *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env={**ENV, "PATH": binaries.path(), "HOME": "/root"}, cwd="/",
                                    start_new_session=True)
        self.started.append(proc)
        return proc

    def exec(self, node: BedNode, argv: list[str], what: str, timeout: float = 30) -> str:
        """Run a command in the node; its stdout."""
        return run([*node.enter(), *argv], what, timeout=timeout).stdout.decode()


def node_script(node: BedNode, bed: Testbed) -> str:
    """The node init: mounts, hostname, address, then hold the namespaces."""
    upper = bed.state / "overlay" / node.name
    lines = ["set -e", f"echo {shlex.quote(node.name)} > /proc/sys/kernel/hostname",
             # drop the inherited copies of namespace files (ip netns, other labs): each would keep its
             # namespace alive for as long as this node lives
             "awk '$0 ~ / - nsfs / {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l"]
    for d in ("etc", "opt", "var"):
        for part in ("upper", "work"):
            (upper / f"{d}-{part}").mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir=/{d},upperdir={upper}/{d}-upper,workdir={upper}/{d}-work"
        lines.append(f"mount -t overlay {bed.prefix}-{d} -o {shlex.quote(opts)} /{d}")
    for part in ("cni-upper", "cni-work"):
        (upper / part).mkdir(parents=True, exist_ok=True)
    cni = f"lowerdir={bed.cni_dir},upperdir={upper}/cni-upper,workdir={upper}/cni-work"
    lines += ["mkdir -p /opt/cni/bin", f"mount -t overlay {bed.prefix}-cni -o {shlex.quote(cni)} /opt/cni/bin"]
    for d in OWN_DIRS:
        lines += [f"mkdir -p {d}", f"mount --bind {shlex.quote(str(node.root))}{d} {d}"]
    lines += [
        f"mount -t tmpfs -o mode=755 {bed.prefix}-run /run",   # last: the state lives under /run
        "ip link set lo up", f"ip addr add {node.ip}/{PREFIX_LEN} dev eth0", "ip link set eth0 up",
        "echo 1 > /proc/sys/net/ipv4/ip_forward",
        "echo ready",
        f"exec -a {shlex.quote(f'{bed.prefix}-node {node.name}')} sleep infinity </dev/null >/dev/null 2>&1",
    ]
    return "\n".join(lines) + "\n"


def create(prefix: str, state: Path, nodes: list[tuple[str, str]], gateway: str, config_folder: Path) -> Testbed:
    """Make the bridge namespace and one namespace set per (name, ip); files from `config_folder` (components.write)."""
    bed = Testbed(prefix, state, gateway,
                  [BedNode(n, ip, f"{prefix}-{n}", node_dir(config_folder, n)) for n, ip in nodes],
                  cgroups_before=teardown.cgroup_tree())
    state.mkdir(parents=True, exist_ok=True)
    (state / "owner").write_text(f"{os.getpid()} {start_time(os.getpid())}\n")   # for sweep_stale
    ip_batch([f"netns add {bed.bridge_netns}", *(f"netns add {n.netns}" for n in bed.nodes)],
             f"{prefix}: making network namespaces")
    lines = ["link set lo up", "link add br0 type bridge", f"addr add {gateway}/{PREFIX_LEN} dev br0",
             "link set br0 up"]
    for i, n in enumerate(bed.nodes):
        lines += [f"link add veth{i} type veth peer name eth0 netns {n.netns}", f"link set veth{i} master br0 up"]
    ip_batch(lines, f"{prefix}: making the bridge and veths", netns=bed.bridge_netns)
    for n in bed.nodes:
        argv = [*nsenter(net=n.netns_path), which("unshare"), "--mount", "--uts", "--propagation", "private",
                which("bash"), "-c", node_script(n, bed)]
        n.init = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={"PATH": STD_PATH}, cwd="/", start_new_session=True)
    for n in bed.nodes:
        assert n.init is not None and n.init.stdout is not None
        if n.init.stdout.readline().strip() != b"ready":
            _, err = n.init.communicate(timeout=10)
            destroy(bed)
            raise RuntimeError(f"{n.name}: node init failed: {tail(err)}")
    return bed


def namespace_ids(bed: Testbed) -> tuple[set[int], set[int]]:
    """The network namespaces (bridge, nodes, pods) and mount namespaces (nodes) of the testbed."""
    net = {teardown.ns_id(NETNS_DIR / bed.bridge_netns)}
    mnt = set()
    for n in bed.nodes:
        net.add(teardown.ns_id(n.netns_path))
        if n.init is not None and n.init.poll() is None:
            mnt.add(teardown.ns_id(f"/proc/{n.init.pid}/ns/mnt"))
            net |= {teardown.ns_id(p) for p in teardown.pod_netns(n.init.pid)}
    return {i for i in net if i}, {i for i in mnt if i}


def destroy(bed: Testbed) -> dict[str, object]:
    """Kill every process in the testbed's namespaces, remove their cgroups, the namespaces and the state."""
    net, mnt = namespace_ids(bed)
    killed, groups = teardown.kill_all(net, mnt)
    for proc in [*bed.started, *(n.init for n in bed.nodes if n.init)]:
        proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    groups -= bed.cgroups_before   # the caller's own cgroups, which the components inherited
    # and the folders made during the run that are empty now (runc makes /k8s.io, containerd never removes it)
    groups |= {g for g in teardown.cgroup_tree() - bed.cgroups_before if not teardown.cgroup_busy(g)}
    left = teardown.remove_cgroups(groups, bed.cgroups_before)
    names = [bed.bridge_netns, *(n.netns for n in bed.nodes)]
    present = [n for n in names if (NETNS_DIR / n).exists()]
    if present:
        run(["ip", "-force", "-batch", "-"], f"{bed.prefix}: deleting network namespaces", check=False,
            input="".join(f"netns del {n}\n" for n in present))
    shutil.rmtree(bed.state, ignore_errors=True)
    return {"killed": len(killed), "cgroups": sorted(groups), "cgroups_left": left}


RUN = Path("/run")
PREFIX = re.compile(r"^kr-[0-9a-f]{4}$")


def _owner_alive(state: Path) -> bool:
    try:
        pid, start = (int(x) for x in (state / "owner").read_text().split())
    except (OSError, ValueError):
        return False
    return alive(pid, start)


def sweep_stale() -> list[str]:
    """Remove the testbeds of runs that died (a killed pytest): their processes, namespaces, cgroups, state.

    A testbed is stale when the process that made it is gone; the testbeds of live runs are left alone.
    """
    netns = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.exists() else []
    prefixes = {m.group(1) for n in netns if (m := re.match(r"^(kr-[0-9a-f]{4})-", n))}
    prefixes |= {p.name for p in RUN.iterdir() if PREFIX.match(p.name)}
    swept = []
    for prefix in sorted(prefixes):
        state = RUN / prefix
        if state.exists() and _owner_alive(state):
            continue
        names = [n for n in netns if n.startswith(prefix + "-")]
        net = {i for i in (teardown.ns_id(NETNS_DIR / n) for n in names) if i}
        mnt = {i for pid in teardown.members(net, set()) if (i := teardown.ns_id(f"/proc/{pid}/ns/mnt"))}
        for pid in teardown.members(set(), mnt):   # the pods' namespaces, seen through the nodes
            net |= {i for p in teardown.pod_netns(pid) if (i := teardown.ns_id(p))}
        _, groups = teardown.kill_all(net, mnt)
        teardown.remove_cgroups({g for g in groups if "k8s.io" in g.parts}, set(teardown.cgroup_mounts().values()))
        if names:
            run(["ip", "-force", "-batch", "-"], f"{prefix}: deleting network namespaces", check=False,
                input="".join(f"netns del {n}\n" for n in names))
        shutil.rmtree(state, ignore_errors=True)
        swept.append(prefix)
    return swept
