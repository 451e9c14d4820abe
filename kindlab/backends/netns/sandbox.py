"""Pod sandboxes: a pause process in its own network, UTS and mount namespaces (hostname = pod
name), made inside the node's mount namespace, with the pod's kubelet-managed /etc/hosts and
/etc/resolv.conf bind-mounted as the kubelet does. CNI_NETNS is /proc/<pause pid>/ns/net; the
namespaces live as long as the pause process (`kindlab-pause kindlab-lab=<lab> pod=<ns>/<name>`).
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .names import marker
from .nodes import NodeView
from .processes import alive, keep, kill, start_time
from .tools import ENV, nsenter, tail, which


class SandboxError(Exception):
    """The sandbox process could not be started."""


@dataclass(frozen=True)
class Sandbox:
    """A running pod sandbox."""

    id: str
    pid: int
    start: int

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    @property
    def uts(self) -> str:
        return f"/proc/{self.pid}/ns/uts"

    def alive(self) -> bool:
        return alive(self.pid, self.start)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Sandbox | None:
        return cls(**record) if record else None


    @property
    def mnt(self) -> str:
        return f"/proc/{self.pid}/ns/mnt"


def create(view: NodeView, hostname: str, pod_label: str, hosts: Path, resolv: Path) -> Sandbox:
    """Start a sandbox on `view`'s node; returns once its namespaces exist.

    `hosts` and `resolv` (files of the node's state folder) are bind-mounted on /etc/hosts and
    /etc/resolv.conf: rewrite them in place.
    """
    sandbox_id = secrets.token_hex(32)
    title = f"kindlab-pause {marker(view.lab_name)} pod={pod_label} sandbox={sandbox_id[:12]}"
    script = (f"set -e; echo {shlex.quote(hostname[:63])} > /proc/sys/kernel/hostname; "
              f"mount --bind {shlex.quote(view.node_path(hosts))} /etc/hosts; "
              f"mount --bind {shlex.quote(view.node_path(resolv))} /etc/resolv.conf; echo ready; "
              f"exec -a {shlex.quote(title)} sleep infinity </dev/null >/dev/null 2>&1")
    argv = [*nsenter(mnt=view.mnt), which("unshare"), "--net", "--uts", "--mount", "--propagation", "private",
            which("bash"), "-c", script]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV, cwd="/", start_new_session=True)
    # in the ledger before its namespaces are made: nsenter, unshare and bash exec in turn, so this pid is
    # the pause process, and a teardown that kills the agent meanwhile still finds it
    pid = keep(proc, view.lab_name)
    line = proc.stdout.readline() if proc.stdout else b""
    if line.strip() != b"ready":
        _, err = proc.communicate(timeout=10)
        raise SandboxError(f"failed to create the sandbox's namespaces: {tail(err)}")
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    return Sandbox(id=sandbox_id, pid=pid, start=start_time(pid) or 0)


def destroy(sandbox: Sandbox | None) -> None:
    """Stop the pause process: the pod's namespaces go with it (and with its last workload)."""
    if sandbox is not None and sandbox.alive():
        kill([sandbox.pid])
