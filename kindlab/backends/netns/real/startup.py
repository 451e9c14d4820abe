"""The real components in a lab's own nodes: their files, their processes, the wait until every node is Ready.

    own_dirs      the node folders the real components keep of their own (mounts.plan's `own`)
    start         write the PKI and configs into each node, start the registry (lab host namespace), the
                  loopback forwarder to the API server (host), the control plane and every node's
                  containerd, kubelet and kube-proxy; import the images; wait for Ready; label the
                  control plane as kubeadm does. Every process goes into the lab's ledger.
    admin_client  the kubernetes ApiClient of the lab's admin kubeconfig (verifying the API server)

Where a lab of the model runs kindlab's node agent, a real lab runs these; the rest of the lab
(namespaces, node filesystems, extraMounts, the CNI provider install) is the same.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ....errors import ClusterError
from ....model.cni import NET_D
from ....progress import Reporter, quiet
from ....waiting import until
from ...kube.kubelet_settings import NODE_STATUS_UPDATE_FREQUENCY
from ...oci import images
from .. import processes
from ..mounts import NodeDirs
from ..names import GATEWAY, STD_PATH, host_netns, marker, netns_path
from ..nodes import NodeView
from ..tools import ENV, nsenter, run
from . import binaries, components, kubeconfig

REGISTRY_PORT = 5000
API_PORT = 6443
KUBECONFIG = "kubeconfig"          # in the lab's state: the admin's, for https://127.0.0.1:<port>
READY_TIMEOUT = 120.0
PROJECT_ROOT = Path(__file__).resolve().parents[4]
T = TypeVar("T")


def own_dirs() -> tuple[str, ...]:
    """The node folders the real components keep of their own; /etc/cni/net.d stays the lab's (extraMounts)."""
    return tuple(d for d in components.OWN_DIRS if d != NET_D)


def spec(record: dict[str, Any], bin_dir: Path) -> components.ClusterSpec:
    """The components' view of the lab: its nodes, subnets, registry."""
    nodes = [components.NodeSpec(n["name"], n["ip"], n["role"]) for n in record["nodes"]]
    return components.ClusterSpec(name=record["name"], nodes=nodes, bin_dir=bin_dir, pod_subnet=record["pod_subnet"],
                              service_subnet=record["service_subnet"], api_port=API_PORT,
                              registry=f"{GATEWAY}:{REGISTRY_PORT}", extra_sans=["localhost"],
                              node_status_update_frequency=NODE_STATUS_UPDATE_FREQUENCY,
                              allocate_node_cidrs=False)           # each node's is the lab's own (set_pod_cidrs)


def _python(lab_name: str, module: str, args: list[str], netns: str | None, log: Path,
            stdout: int | None = None) -> subprocess.Popen:
    """A Python helper of the lab (registry, forwarder), detached and in the lab's ledger."""
    argv = [*(nsenter(net=netns_path(netns)) if netns else []), sys.executable, "-m", module, *args,
            "--marker", marker(lab_name)]
    env = {"PATH": STD_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT_ROOT)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or out, stderr=out, cwd="/", env=env,
                                start_new_session=True)
    processes.keep(proc, lab_name)
    return proc


def _component(lab_name: str, view: NodeView, comp: components.Component, logs: Path) -> dict[str, Any]:
    """Start one component inside its node; its record (node, name, argv, pid, start, log)."""
    log = logs / f"{view.name}.{comp.name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([*view.enter(), *comp.argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env={**ENV, "PATH": binaries.path(), "HOME": "/root"}, cwd="/",
                                start_new_session=True)
    pid = processes.keep(proc, lab_name)
    return {"node": view.name, "name": comp.name, "argv": comp.argv, "pid": pid,
            "start": processes.start_time(pid) or 0, "log": str(log)}


def poll(what: str, check: Callable[[], T], timeout: float, every: float = 0.1,
         fail: Callable[[str], Exception] = ClusterError) -> T:
    """Poll `check` until it returns something true (its errors count as not yet: components start in any
    order); its value, else `fail(message)` after `timeout` seconds."""
    # `fail` may be any exception type (bringup.wait fails with AssertionError)
    return until(check, timeout, every, what, fail=fail, tolerate=(Exception,))  # type: ignore[arg-type]


def _wait(what: str, check: Callable[[], T], timeout: float, logs: Path, every: float = 0.1) -> T:
    """`poll`, failing with a ClusterError that names the components' logs."""
    return poll(f"real Kubernetes: {what}", check, timeout, every,
                fail=lambda message: ClusterError(f"{message}; the components' logs are in {logs}"))


def service_account_ready(core: Any) -> bool:
    """True once namespace default's service account has its token secret: before, v1.20's admission refuses
    every pod ("No API token found for service account", 500). (Errors propagate: `poll` counts them as not yet.)"""
    return bool(core.read_namespaced_service_account("default", "default").secrets)


def admin_client(state: Path) -> Any:
    """An ApiClient for the lab's admin kubeconfig (https://127.0.0.1:<port>, verifying the server)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(state / KUBECONFIG), persist_config=False)


def start(record: dict[str, Any], views: list[NodeView], state: Path, report: Reporter = quiet) -> dict[str, Any]:
    """Bring real Kubernetes up on the lab's running nodes; what the lab's record keeps of it."""
    lack = binaries.missing()
    if lack:
        raise ClusterError("real Kubernetes cannot run here: missing " + "; ".join(lack)
                           + "; run `make setup` (or use --kubernetes model)")
    bin_dir = binaries.bin_dir()
    assert bin_dir is not None
    lab_name = record["name"]
    c = spec(record, bin_dir)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def say(what: str) -> None:
        report(f"netns: real Kubernetes: {what} ({time.monotonic() - began:.1f}s)")

    certs = components.write(state / "real", c, {v.name: NodeDirs(Path(v.state)).own("/") for v in views})
    made = [images.pause_image(bin_dir / "pause", state / "images"), images.echo_image(state / "images"),
            *([images.busybox_image(state / "images")] if images.BUSYBOX.is_file() else [])]
    say("certificates, configs and images made")
    by_name = {v.name: v for v in views}
    cp = by_name[c.control_plane.name]

    _python(lab_name, "kindlab.backends.oci.registry",
            ["--listen", f"{GATEWAY}:{REGISTRY_PORT}", *(str(i.layout) for i in made)], host_netns(lab_name),
            logs / "registry.log")
    port = _forwarder(lab_name, cp, logs)
    kubeconfig.write(state / KUBECONFIG, f"https://127.0.0.1:{port}", certs["ca"], certs["admin"],
                     f"kind-{lab_name}", f"kind-{lab_name}")

    started = [_component(lab_name, cp, comp, logs) for comp in components.control_plane(c)]
    for node in c.nodes:
        started += [_component(lab_name, by_name[node.name], comp, logs) for comp in components.node_agents(c, node)]
    say(f"{len(started)} processes started on {len(views)} nodes")
    _import_images(views, made, logs)
    say("images imported into every containerd")
    versions = _wait_ready(record, views, cp, state, say)
    report(f"netns: real Kubernetes {versions['kubernetes']} with {versions['runtime']}: "
           f"ready for pods in {time.monotonic() - began:.1f}s (its default service account made)")
    return {"api_port": port, "server": c.server, "bin_dir": str(bin_dir), "components": started, **versions}


def _forwarder(lab_name: str, cp: NodeView, logs: Path) -> int:
    """Start the loopback forwarder to the control plane's API server; the machine's port it listens on."""
    fwd = _python(lab_name, "kindlab.backends.kube.forward", ["--netns", str(cp.netns_path), "--to",
                  f"{cp.ip}:{API_PORT}"], None, logs / "forward.log", stdout=subprocess.PIPE)
    assert fwd.stdout is not None
    line = fwd.stdout.readline().strip()
    fwd.stdout.close()
    if not line.isdigit():
        raise ClusterError(f"real Kubernetes: the loopback forwarder did not start; see {logs / 'forward.log'}")
    return int(line)


def _import_images(views: list[NodeView], made: list[images.Image], logs: Path) -> None:
    """Every node's containerd, once it answers, gets the lab's images (nothing is pulled from outside)."""
    def load(view: NodeView) -> None:
        _wait(f"{view.name}: containerd", lambda: run([*view.enter(), "ctr", "version"], "ctr version", timeout=5),
              30, logs)
        for image in made:
            run([*view.enter(), "ctr", "-n", "k8s.io", "images", "import", "-"],
                f"{view.name}: importing image {image.name}", input=image.archive.read_bytes(), timeout=60)
    with ThreadPoolExecutor(len(views)) as pool:
        list(pool.map(load, views))


def _wait_ready(record: dict[str, Any], views: list[NodeView], cp: NodeView, state: Path,
                say: Callable[[str], None]) -> dict[str, str]:
    """Wait for the API server, every node Ready (each given its pod subnet) and the default service account's
    token; label the control plane as kubeadm does. The versions its kubelet reports."""
    from kubernetes.client import CoreV1Api

    logs = state / "logs"
    api = admin_client(state)
    try:
        core = CoreV1Api(api)
        _wait("the API server", core.list_namespace, 60, logs)
        say("the API server answers")
        cidrs = {n["name"]: n["pod_cidr"] for n in record["nodes"]}

        def ready() -> bool:
            nodes = core.list_node().items
            for n in nodes:   # the node's own pod subnet, as kindlab-cni hands out addresses from it
                if n.metadata is None or n.metadata.name is None or n.spec is None:
                    raise ClusterError("the API server listed a node without a name or a spec")
                name = n.metadata.name
                if not n.spec.pod_cidr and name in cidrs:
                    cidr = cidrs[name]
                    core.patch_node(name, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
            return len(nodes) == len(views) and all(   # a node without a status yet is not Ready
                any(x.type == "Ready" and x.status == "True" for x in (n.status and n.status.conditions) or [])
                for n in nodes)
        _wait(f"all {len(views)} nodes Ready", ready, READY_TIMEOUT, logs, every=0.1)
        say(f"all {len(views)} nodes Ready")
        labels = {key: "" for key in components.CONTROL_PLANE_LABELS}   # kubeadm's mark-control-plane
        core.patch_node(cp.name, {"metadata": {"labels": labels}})
        _wait("the default service account and its token", lambda: service_account_ready(core), 60, logs)
        status = core.read_node(cp.name).status
        info = status.node_info if status is not None else None
        if info is None:
            raise ClusterError(f"real Kubernetes: node {cp.name} is Ready but reports no nodeInfo (the kubelet's "
                               f"and the runtime's versions); the components' logs are in {logs}")
        return {"kubernetes": info.kubelet_version, "runtime": info.container_runtime_version}
    finally:
        api.close()


_restart_lock = threading.Lock()


def restart_dead(lab_name: str, real: dict[str, Any], views: dict[str, NodeView]) -> list[str]:
    """Start again each component whose process died, as systemd restarts a kubelet; the names restarted."""
    out = []
    with _restart_lock:
        for comp in real["components"]:
            if processes.alive(comp["pid"], comp["start"]):
                continue
            view = views[comp["node"]]
            if view.problems():
                continue
            new = _component(lab_name, view, components.Component(comp["name"], comp["argv"]), Path(comp["log"]).parent)
            comp.update(pid=new["pid"], start=new["start"])
            out.append(f"{comp['node']}/{comp['name']}")
    return out
