"""Bringing a real cluster up on a testbed, step by step (the smoke test's and the recorder's shared code).

    conflist        a node's CNI config: bridge + host-local for its pod CIDR, portmap chained or not
    wait            poll a check until it answers
    start_*         the control plane's processes, then each worker's containerd, kubelet and kube-proxy
    admin_api       the kubernetes client, through a loopback port forwarded to the API server
    import_images   the images made on the machine, loaded into each worker's containerd
    ready_nodes     the names of the nodes whose Ready condition is True
    leftovers       mounts, namespaces, state of a run still there
    claim           mark a run's state as live before writing into it (sweep_stale skips it)
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ...kube import forward
from ...oci.images import Image
from ..tools import run
from . import components, kubeconfig
from .startup import poll
from .testbed import BedNode, Testbed

T = TypeVar("T")


def conflist(subnet: str, portmap: bool = True, name: str = "kr-bridge") -> str:
    """The node's CNI config: bridge + host-local for `subnet`, then (if `portmap`) portmap chained."""
    plugins: list[dict[str, Any]] = [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}}]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return json.dumps({"cniVersion": "0.4.0", "name": name, "plugins": plugins}, indent=1)


def wait(what: str, check: Callable[[], T], timeout: float, every: float = 0.1) -> T:
    """Poll `check` until it returns something true; its value (AssertionError after `timeout`)."""
    return poll(what, check, timeout, every, fail=AssertionError)


Procs = dict[tuple[str, str], subprocess.Popen]


def start_control_plane(bed: Testbed, cluster: components.ClusterSpec) -> Procs:
    """etcd, kube-apiserver, controller-manager and scheduler on the control-plane node."""
    cp = bed.node(cluster.control_plane.name)
    return {(cp.name, comp.name): bed.start(cp, comp.name, comp.argv) for comp in components.control_plane(cluster)}


def start_workers(bed: Testbed, cluster: components.ClusterSpec) -> Procs:
    """containerd, kubelet and kube-proxy on every node with a kubelet."""
    procs: Procs = {}
    for node in (n for n in cluster.nodes if n.kubelet):
        bnode = bed.node(node.name)
        for comp in components.node_agents(cluster, node):
            procs[(node.name, comp.name)] = bed.start(bnode, comp.name, comp.argv)
    return procs


def workers(bed: Testbed, cluster: components.ClusterSpec) -> list[BedNode]:
    """The testbed's nodes that run a kubelet."""
    return [bed.node(n.name) for n in cluster.nodes if n.kubelet]


def admin_api(bed: Testbed, cluster: components.ClusterSpec, certs: dict, path: Path) -> tuple[Any, forward.Forwarder]:
    """An ApiClient (admin, verifying the server's certificate) through a loopback port; and its forwarder."""
    from kubernetes import config

    cp = bed.node(cluster.control_plane.name)
    fwd = forward.Forwarder(cp.netns_path, (cp.ip, cluster.api_port)).start()
    local = kubeconfig.write(path, f"https://127.0.0.1:{fwd.port}", certs["ca"], certs["admin"],
                             "kubernetes-admin", cluster.name)
    return config.new_client_from_config(config_file=str(local)), fwd


def import_images(bed: Testbed, node: BedNode, made: list[Image]) -> list[str]:
    """Wait for the node's containerd, import `made` into its k8s.io namespace; the names it lists."""
    wait(f"{node.name}: containerd", lambda: bed.exec(node, ["ctr", "version"], "ctr version"), 20)
    for image in made:
        run([*node.enter(), "ctr", "-n", "k8s.io", "images", "import", "-"], f"{node.name}: importing {image.name}",
            input=image.archive.read_bytes(), timeout=60)
    return bed.exec(node, ["ctr", "-n", "k8s.io", "images", "ls", "-q"], "ctr images ls").split()


def ready_nodes(core: Any) -> set[str]:
    """The nodes whose Ready condition is True."""
    return {n.metadata.name for n in core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}


def leftovers(prefix: str, state: Path) -> list[str]:
    """Any mount, namespace or state file of the run still there (processes are checked by namespace)."""
    mounts = run(["findmnt", "-rn", "-o", "TARGET,SOURCE"], "listing mounts", check=False).stdout.decode()
    out = [f"mount: {line}" for line in mounts.splitlines() if prefix in line]
    netns = Path("/run/netns")
    out += [f"netns: {n.name}" for n in netns.iterdir() if n.name.startswith(prefix)] if netns.exists() else []
    if state.exists():
        out.append(f"state: {state}")
    return out


def claim(state: Path) -> None:
    """Mark `state` as this live run's before writing into it, so a concurrent run's `sweep_stale` leaves it alone."""
    import os

    from ..processes import start_time

    state.mkdir(parents=True, exist_ok=True)
    (state / "owner").write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
