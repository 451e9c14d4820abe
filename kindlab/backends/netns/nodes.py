"""Nodes: each a network namespace (from host.py), plus persistent mount and UTS namespaces made by
`unshare --mount=FILE --uts=FILE`, and one long-lived "node init" process living in all three.

The init process (`kindlab-node kindlab-lab=<lab> node=<node>`, a `sleep infinity`) plays the node
container's PID 1: it makes the node's own root (rootfs.py) and pivots into it, applies the node's
mounts (mounts.py), and then `/proc/<pid>/root` is the node's view of the filesystem, used to look up
CNI configs and plugins and to copy files in and out. All nodes are made in parallel.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...errors import ClusterError
from . import mounts as mounts_mod
from . import rootfs
from .mounts import NodeDirs, NodeMount
from .names import NODE_LINK, PREFIX_LEN, marker, netns_path
from .processes import alive, keep, start_time
from .tools import ENV, nsenter, tail, which


@dataclass(frozen=True)
class NodeView:
    """How to reach one node: its namespaces, its init process, its folders."""

    lab_name: str
    name: str
    role: str
    index: int
    ip: str
    pod_cidr: str
    netns: str
    mnt: str
    uts: str
    init_pid: int
    init_start: int
    state: str

    @property
    def netns_path(self) -> Path:
        return netns_path(self.netns)

    @property
    def root(self) -> Path:
        """The node's filesystem as the node sees it."""
        return Path(f"/proc/{self.init_pid}/root")

    @property
    def dirs(self) -> NodeDirs:
        return NodeDirs(Path(self.state))

    def node_path(self, host: Path) -> str:
        """A file of the node's state folder as the node sees it (below /run/kindlab/node)."""
        rel = Path(host).relative_to(self.state)
        return str(NODE_LINK / rel)

    def enter(self, uts: bool = True) -> list[str]:
        """`nsenter` into the node's mount, UTS and network namespaces."""
        return nsenter(net=self.netns_path, mnt=self.mnt, uts=self.uts if uts else None)

    def problems(self) -> list[str]:
        """What is wrong with this node, if anything."""
        out = []
        if not self.netns_path.exists():
            out.append(f"{self.name}: network namespace {self.netns} is gone")
        if not alive(self.init_pid, self.init_start):
            out.append(f"{self.name}: node init process {self.init_pid} is gone")
        return out

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NodeView:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__})


@dataclass
class NodePlan:
    """What to build for one node."""

    lab_name: str
    name: str
    role: str
    index: int
    ip: str
    pod_cidr: str
    netns: str
    routes: list[tuple[str, str]]
    mounts: list[NodeMount]
    dirs: NodeDirs
    ns_dir: Path
    root: list[rootfs.Entry]

    def script(self) -> str:
        """The shell script run inside the node's new mount and UTS namespaces."""
        # No default route: nothing lies beyond the lab, and a pod's DNS query must fail at once
        # (ICMP unreachable from the node) rather than time out.
        net = ["link set lo up", f"addr add {self.ip}/{PREFIX_LEN} dev eth0", "link set eth0 up"]
        net += [f"route add {cidr} via {via}" for cidr, via in self.routes]
        title = f"kindlab-node {marker(self.lab_name)} node={self.name}"
        lines = [
            "set -e",
            "read -r go",     # nothing is done before `start` has put this shell in the lab's ledger (EOF: exit)
            f"echo {shlex.quote(self.name)} > /proc/sys/kernel/hostname",
            *rootfs.build(self.dirs.rootfs, self.root),
            *mounts_mod.script(self.mounts, self.dirs),
            # the machine's root goes, with the copies of other namespaces' nsfs mounts it brought
            *rootfs.detach(),
            "ip -batch - <<'EOF'", *net, "EOF",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
            "echo ready",
            f"exec -a {shlex.quote(title)} sleep infinity </dev/null >/dev/null 2>&1",
        ]
        return "\n".join(lines) + "\n"

    def files(self) -> tuple[Path, Path]:
        return self.ns_dir / f"{self.name}.mnt", self.ns_dir / f"{self.name}.uts"


def spawn_gated(argv: list[str], lab_name: str) -> subprocess.Popen[bytes]:
    """Start a set-up shell that waits for "go", put it in the lab's ledger, then let it begin.

    Its stdin is a pipe of our own, written unbuffered and closed here: a shell that has already
    failed (say, `unshare` refused) costs a suppressed EPIPE, and `communicate` later reads why.
    """
    gate, go = os.pipe()
    try:
        proc = subprocess.Popen(argv, stdin=gate, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=ENV, cwd="/", start_new_session=True)
    finally:
        os.close(gate)
    try:
        keep(proc, lab_name)    # in the ledger before it may begin: a killed `create` leaves no set-up shell
    except BaseException:
        os.close(go)            # EOF: the shell's `read` fails and it exits having done nothing
        raise
    send_go(go)
    return proc


def send_go(fd: int) -> None:
    """Write "go" to a waiting shell's stdin and close it; a reader already gone is not an error."""
    try:
        with contextlib.suppress(BrokenPipeError):
            os.write(fd, b"go\n")
    finally:
        os.close(fd)


def start(plans: list[NodePlan], timeout: float = 20) -> list[NodeView]:
    """Make every node's mount and UTS namespaces and start its init process, all at once."""
    procs = []
    for p in plans:
        mnt, uts = p.files()
        mnt.touch()
        uts.touch()
        argv = [*nsenter(net=netns_path(p.netns)), which("unshare"), f"--mount={mnt}", f"--uts={uts}",
                "--propagation", "private", which("bash"), "-c", p.script()]
        procs.append(spawn_gated(argv, p.lab_name))
    views, errors = [], []
    for p, proc in zip(plans, procs, strict=True):
        line = proc.stdout.readline() if proc.stdout else b""
        if line.strip() != b"ready":
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            errors.append(f"{p.name}: {tail(err)}")
            continue
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        mnt, uts = p.files()
        views.append(NodeView(lab_name=p.lab_name, name=p.name, role=p.role, index=p.index, ip=p.ip,
                              pod_cidr=p.pod_cidr, netns=p.netns, mnt=str(mnt), uts=str(uts),
                              init_pid=proc.pid,
                              init_start=start_time(proc.pid) or 0, state=str(p.dirs.root)))
    if errors:
        raise ClusterError("could not make the node namespaces: " + "; ".join(errors))
    return views
