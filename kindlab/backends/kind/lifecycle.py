"""Making a kind cluster: kind for the nodes (on kindlab's node image where it runs kindlab-cni), the CNI
(Cilium by helm, or kindlab-cni by its DaemonSet: cni.py), a state file for the host folders kindlab made (as
Docker makes a missing bind-mount source); waiting until it is Ready; its topology read back."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ... import topology as topology_mod
from ...errors import ConfigError, KindlabError, WaitTimeout
from ...model.cni import stand_in
from ...progress import Reporter, quiet
from ...topology import Mount, Networking, Node, Topology
from ...waiting import Deadline
from ..kube import kubelet_settings
from ..kube.errors import kube_errors
from ..kube.shapes import is_ready
from . import api_port, docker_host, tools
from . import cni as cni_mod
from .cluster import KindCluster
from .state import forget, load_state, remove_created, save_state

CREATE_TIMEOUT = 900.0
READY_TIMEOUT = 600.0
POLL_SECONDS = 0.5
EARLY_POLL_SECONDS = 1.0
EARLY_JOIN_SECONDS = 60.0
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"
KIND_OWN_MOUNTS = ("/lib/modules", "/dev/mapper")  # kind binds /dev/mapper on btrfs and zfs hosts


# -- create ------------------------------------------------------------------------------------
def create(topology: Topology, cni: str = cni_mod.CILIUM, image: str | None = None) -> None:
    """Make missing mount folders, write the config with absolute hostPaths, run `kind create cluster` (on
    `image`, else $KINDLAB_KIND_IMAGE, else kind's default); a failed create leaves no cluster behind."""
    created = make_missing_mount_dirs(topology)
    wanted, substitutions = kind_config(topology, cni)
    save_state(topology.name, topology.source, created, cni=cni, substitutions=substitutions)
    try:
        with tempfile.TemporaryDirectory(prefix="kindlab-") as tmp:
            config = Path(tmp) / "kind-config.yaml"
            config.write_text(yaml.safe_dump(wanted, sort_keys=False))
            image = image or os.environ.get("KINDLAB_KIND_IMAGE")
            with cni_while_joining(topology, cni):
                tools.run(tools.kind_create(topology.name, config, image=image), timeout=CREATE_TIMEOUT)
    except KindlabError:
        if topology.name in tools.kind_cluster_names():   # kind removes its nodes itself; a killed run may not
            tools.run(tools.kind_delete(topology.name), timeout=300)
        api_port.stop(topology.name)
        remove_created(created)
        forget(topology.name)
        raise


def kind_config(topology: Topology, cni: str) -> tuple[dict[str, Any], list[str]]:
    """The config kind gets (absolute hostPaths, kindlab's kubelet settings) and the lines saying what kindlab
    changed: those settings and, with kindlab-cni, which of Cilium's files its own replaced (the seed's chained
    conflist names cilium-cni; model.cni.stand_in)."""
    config = topology.to_kind_config()
    config.setdefault("kubeadmConfigPatches", []).append(kubelet_settings.kubeadm_patch())
    lines = [f"kind: kubelets send node status every {kubelet_settings.NODE_STATUS_UPDATE_FREQUENCY} "
             "(kubeadmConfigPatches), as the netns lab's do"]
    if cni != cni_mod.KINDLAB:
        return config, lines
    base = topology.source.parent if topology.source else None
    for node in config["nodes"]:
        for mount in node.get("extraMounts", []):
            if replaced := stand_in(Path(mount["hostPath"]), mount["containerPath"]):
                shown = [os.path.relpath(p, base) if base else str(p) for p in (mount["hostPath"], replaced[0])]
                line = f"kind: kindlab-cni stands in for cilium-cni: {shown[0]} -> {shown[1]}"
                lines += [] if line in lines else [line]
                mount["hostPath"], mount["containerPath"] = str(replaced[0]), replaced[1]
    return config, lines


def make_missing_mount_dirs(topology: Topology) -> list[dict[str, str]]:
    """Create missing hostPath folders, as Docker would; returns what was made (host, node, path)."""
    created = []
    for node in topology.nodes:
        for mount in node.mounts:
            if not mount.host_path.exists():
                mount.host_path.mkdir(parents=True)
                created.append({"host": str(mount.host_path.resolve()), "node": node.name,
                                "path": mount.container_path})
    return created


@contextlib.contextmanager
def cni_while_joining(topology: Topology, cni: str) -> Iterator[None]:
    """Install kindlab-cni as soon as the control plane answers, while kind still joins the workers: each node's
    installer then starts when its node registers, not after the last one has joined (`kind create` returns only
    then). Best effort: after kind, `ensure_cni` runs again and reports what fails. Cilium is installed by helm
    after kind, as the seed does it."""
    if cni != cni_mod.KINDLAB:
        yield
        return
    stop = threading.Event()

    def install() -> None:
        while not stop.wait(EARLY_POLL_SECONDS):
            try:
                if control_plane_answers(topology.name):
                    api_port.ensure(topology.name)
                    ensure_cni(KindCluster(topology.name, topology), cni)
                    return
            except Exception:   # not up yet, or going away: the install after kind says why
                continue

    worker = threading.Thread(target=install, name=f"kindlab-cni early {topology.name}", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=EARLY_JOIN_SECONDS)


def control_plane_answers(name: str) -> bool:
    """True once kubeadm init has made the API server ready: `kubectl get --raw /readyz` inside the control-plane
    node, with kubeadm's admin kubeconfig (nothing is tried from the host before then)."""
    node = docker_host.client().containers.get(f"{name}-control-plane")
    done = node.exec_run(["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "get", "--raw=/readyz"])
    return done.exit_code == 0


def ensure_cni(cluster: KindCluster, cni: str) -> bool:
    """Install the CNI unless its DaemonSet is there (Cilium with helm, kindlab-cni by its manifest); True when
    it installed."""
    if daemonset_exists(cluster, cni_mod.DAEMONSETS[cni]):
        return False
    if cni == cni_mod.CILIUM:
        tools.require_helm()
        tools.run(tools.helm_repo_add(), timeout=120)
        tools.run(tools.helm_install_cilium(cluster.name), timeout=600)
    else:
        with kube_errors(f"kind cluster {cluster.name!r}"):
            cluster.apps.create_namespaced_daemon_set(cni_mod.NAMESPACE,
                                                      cni_mod.daemonset(cluster.topology.networking.pod_subnet))
    return True


def daemonset_exists(cluster: KindCluster, name: str) -> bool:
    """True when DaemonSet `name` exists in kube-system."""
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.apps.read_namespaced_daemon_set(name, cni_mod.NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# -- waiting -----------------------------------------------------------------------------------
def wait_ready(cluster: KindCluster, cni: str = cni_mod.CILIUM, timeout: float = READY_TIMEOUT,
               report: Reporter = quiet) -> None:
    """Wait for the CNI's pod ready on every node, then for every node Ready, reporting the counts."""
    total = len(cluster.topology.nodes)
    name = cni_mod.DAEMONSETS[cni]
    hint = f"see `kubectl --context kind-{cluster.name} -n kube-system get pods -l k8s-app={name}`"
    wait_count(f"{cluster.name}: {cni_mod.AGENTS[cni]} ready", total, lambda: agents_ready(cluster, name),
               timeout, report, hint)
    wait_count(f"{cluster.name}: nodes Ready", total,
               lambda: sum(is_ready(n) for n in cluster.node_list()), timeout, report, hint)


def agents_ready(cluster: KindCluster, daemonset: str) -> int:
    """How many of the DaemonSet's pods are ready (its status.numberReady)."""
    status = cluster.apps.read_namespaced_daemon_set(daemonset, cni_mod.NAMESPACE).status
    return int(getattr(status, "number_ready", 0) or 0)


def wait_count(desc: str, total: int, count: Callable[[], int], timeout: float, report: Reporter = quiet,
               hint: str = "") -> None:
    """Poll `count()` until it reaches `total`, reporting each change; WaitTimeout after `timeout` seconds."""
    deadline = Deadline(timeout)
    shown = -1
    while True:
        done = min(count(), total)
        if done != shown:
            report(desc, done, total)
            shown = done
        if done >= total:
            return
        if deadline.passed:
            raise WaitTimeout(f"{desc}: {done}/{total} after {timeout:g}s" + (f"; {hint}" if hint else ""))
        time.sleep(POLL_SECONDS)


# -- a topology for a cluster kindlab did not just create ---------------------------------------
def topology_for(name: str) -> Topology:
    """The config the cluster came from when kindlab made it, else what its node containers say."""
    config = load_state(name).get("config")
    if config and Path(config).exists():
        try:
            return topology_mod.load(config, name=name)
        except ConfigError:
            pass
    found = docker_host.client().containers.list(all=True, filters={"label": f"{KIND_CLUSTER_LABEL}={name}"})
    return topology_from_containers(name, found)


def topology_from_containers(name: str, containers: list[Any]) -> Topology:
    """A Topology from kind's node containers: names, roles (labels) and bind mounts (networking unknown)."""
    nodes = [c for c in containers if c.labels.get(KIND_ROLE_LABEL) in topology_mod.ROLES]
    nodes.sort(key=lambda c: _node_order(name, c.name, c.labels[KIND_ROLE_LABEL]))
    return Topology(
        name=name,
        nodes=tuple(Node(name=c.name, role=c.labels[KIND_ROLE_LABEL], index=i, mounts=_mounts(c))
                    for i, c in enumerate(nodes)),
        networking=Networking(),
        notes=(f"topology of {name!r} read from its node containers; networking not known",),
    )


def _node_order(cluster: str, node: str, role: str) -> tuple[int, int, str]:
    suffix = node[len(f"{cluster}-{role}"):]
    return (topology_mod.ROLES.index(role), int(suffix) if re.fullmatch(r"\d+", suffix) else 1, node)


def _mounts(container: Any) -> tuple[Mount, ...]:
    """The bind mounts but kind's own, in the order kind gave them: Docker lists `Mounts` from a map, in an
    order that changes from one inspect to the next; `HostConfig.Binds` keeps kind's `--volume` order."""
    binds = [_bind_target(b) for b in (container.attrs.get("HostConfig") or {}).get("Binds") or []]
    mounts = [m for m in container.attrs.get("Mounts", [])
              if m.get("Type") == "bind" and m.get("Destination") not in KIND_OWN_MOUNTS]
    mounts.sort(key=lambda m: binds.index(m["Destination"]) if m["Destination"] in binds else len(binds))
    return tuple(Mount(container_path=m["Destination"], host_path=Path(m["Source"]), read_only=not m.get("RW", True))
                 for m in mounts)


def _bind_target(bind: str) -> str:
    """The container path of a `SOURCE:TARGET[:OPTIONS]` bind."""
    parts = bind.split(":")
    return parts[1] if len(parts) > 1 else parts[0]
