"""Create, find and delete kind clusters: kind for the nodes, helm for Cilium, a state file for
the host folders kindlab made (as Docker makes a missing bind-mount source)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ... import topology as topology_mod
from ...errors import ConfigError, KindlabError, NotFound, WaitTimeout
from ...topology import Mount, Networking, Node, Topology
from . import kube, tools
from .cluster import KindCluster
from .translate import translate_errors

CREATE_TIMEOUT = 900.0
READY_TIMEOUT = 600.0
POLL_SECONDS = 2.0
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"
KIND_OWN_MOUNTS = ("/lib/modules",)


# -- public: what kindlab.backends calls -------------------------------------------------------
def up(topology: Topology, backoff: float | None = None, progress: bool = True,
       timeout: float = READY_TIMEOUT) -> KindCluster:
    """Get-or-create the kind cluster, make sure Cilium is installed, wait until it is Ready.

    `backoff` is the netns agent's retry delay; the real kubelet keeps its own, so it is ignored here.
    """
    tools.require()
    with translate_errors(f"kind cluster {topology.name!r}"):
        if topology.name not in _clusters():
            tools.require_helm()  # before making a cluster that could not get its CNI
            create(topology)
        cluster = KindCluster(topology.name, topology)
        ensure_cilium(cluster)
        wait_ready(cluster, timeout=timeout, progress=progress)
    return cluster


def get(name: str) -> KindCluster:
    """The running kind cluster `name`; NotFound naming the clusters there are otherwise."""
    tools.require()
    names = _clusters()
    if name not in names:
        raise NotFound(f"no kind cluster {name!r} (kind clusters: {', '.join(names) or 'none'}); "
                       f"create it with kindlab.up('kind/config', name={name!r})")
    with translate_errors(f"kind cluster {name!r}"):
        return KindCluster(name, topology_for(name))


def delete(name: str) -> bool:
    """`kind delete cluster --name NAME`, and remove the host folders kindlab made; False if there was none."""
    tools.require()
    created = load_state(name).get("created", [])
    exists = name in _clusters()
    if exists:
        for entry in created:
            _empty_from_node(entry["node"], entry["path"])
        tools.run(tools.kind_delete(name), timeout=300)
    remove_created(created)
    forget(name)
    return exists


def clusters() -> list[str]:
    """`kind get clusters`."""
    tools.require()
    return _clusters()


def _clusters() -> list[str]:
    return [line.strip() for line in tools.run(tools.kind_get_clusters(), timeout=60).splitlines() if line.strip()]


# -- create ------------------------------------------------------------------------------------
def create(topology: Topology) -> None:
    """Make missing mount folders, write the config with absolute hostPaths, run `kind create cluster`."""
    created = make_missing_mount_dirs(topology)
    save_state(topology.name, topology.source, created)
    try:
        with tempfile.TemporaryDirectory(prefix="kindlab-") as tmp:
            config = Path(tmp) / "kind-config.yaml"
            config.write_text(yaml.safe_dump(topology.to_kind_config(), sort_keys=False))
            image = os.environ.get("KINDLAB_KIND_IMAGE")
            tools.run(tools.kind_create(topology.name, config, image=image), timeout=CREATE_TIMEOUT)
    except KindlabError:
        remove_created(created)
        forget(topology.name)
        raise


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


def ensure_cilium(cluster: KindCluster) -> bool:
    """Install Cilium with helm unless its DaemonSet is there; True when it installed."""
    if cilium_installed(cluster):
        return False
    tools.require_helm()
    tools.run(tools.helm_repo_add(), timeout=120)
    tools.run(tools.helm_install_cilium(cluster.name), timeout=600)
    return True


def cilium_installed(cluster: KindCluster) -> bool:
    """True when the cilium DaemonSet exists in kube-system."""
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.apps.read_namespaced_daemon_set("cilium", "kube-system")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# -- waiting -----------------------------------------------------------------------------------
def wait_ready(cluster: KindCluster, timeout: float = READY_TIMEOUT, progress: bool = True) -> None:
    """Wait, with progress bars, for a ready Cilium agent on every node, then for every node Ready."""
    total = len(cluster.topology.nodes)
    hint = f"see `kubectl --context kind-{cluster.name} -n kube-system get pods -l k8s-app=cilium`"
    wait_count(f"{cluster.name}: Cilium agents ready", total, lambda: cilium_agents_ready(cluster),
               timeout, progress, hint)
    wait_count(f"{cluster.name}: nodes Ready", total,
               lambda: sum(kube.is_ready(n) for n in cluster.node_list()), timeout, progress, hint)


def cilium_agents_ready(cluster: KindCluster) -> int:
    """How many Cilium agent pods are ready (the DaemonSet's status.numberReady)."""
    status = cluster.apps.read_namespaced_daemon_set("cilium", "kube-system").status
    return int(getattr(status, "number_ready", 0) or 0)


def wait_count(desc: str, total: int, count: Callable[[], int], timeout: float, progress: bool,
               hint: str = "") -> None:
    """Poll `count()` until it reaches `total`, showing a tqdm bar; WaitTimeout after `timeout` seconds."""
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    with tqdm(total=total, desc=desc, unit="node", disable=not progress) as bar:
        while True:
            done = min(count(), total)
            bar.update(done - bar.n)
            if done >= total:
                return
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{desc}: {done}/{total} after {timeout:g}s" + (f"; {hint}" if hint else ""))
            time.sleep(POLL_SECONDS)


# -- the state kept per cluster ------------------------------------------------------------------
def state_dir() -> Path:
    """Where kindlab keeps per-cluster state: $KINDLAB_STATE_DIR, else ~/.local/state/kindlab; then kind/."""
    base = os.environ.get("KINDLAB_STATE_DIR") or Path.home() / ".local" / "state" / "kindlab"
    return Path(base) / "kind"


def save_state(name: str, config: Path | None, created: list[dict[str, str]]) -> None:
    """Remember the config a cluster came from and the host folders kindlab made for it."""
    path = state_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": str(config) if config else None, "created": created}, indent=2))


def load_state(name: str) -> dict[str, Any]:
    """The saved state of cluster `name` ({} when there is none or it is unreadable)."""
    try:
        return json.loads((state_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def forget(name: str) -> None:
    """Drop the saved state of cluster `name`."""
    (state_dir() / f"{name}.json").unlink(missing_ok=True)


def _empty_from_node(node: str, path: str) -> None:
    """Empty a mounted folder from inside its node: what Cilium wrote there is root's, not ours."""
    try:
        with translate_errors(f"node {node}"):
            import docker

            docker.from_env().containers.get(node).exec_run(["find", path, "-mindepth", "1", "-delete"])
    except KindlabError:
        pass  # the host-side removal below reports what is left


def remove_created(created: list[dict[str, str]]) -> None:
    """Remove the host folders kindlab made; warn (not fail) about one it cannot remove."""
    for entry in created:
        try:
            shutil.rmtree(entry["host"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            warnings.warn(f"kindlab made {entry['host']} for {entry['node']}:{entry['path']} and cannot "
                          f"remove it ({exc}); remove it by hand", stacklevel=2)


# -- a topology for a cluster kindlab did not just create ---------------------------------------
def topology_for(name: str) -> Topology:
    """The config the cluster came from when kindlab made it, else what its node containers say."""
    config = load_state(name).get("config")
    if config and Path(config).exists():
        try:
            return topology_mod.load(config, name=name)
        except ConfigError:
            pass
    import docker

    found = docker.from_env().containers.list(all=True, filters={"label": f"{KIND_CLUSTER_LABEL}={name}"})
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
    return tuple(Mount(container_path=m["Destination"], host_path=Path(m["Source"]), read_only=not m.get("RW", True))
                 for m in container.attrs.get("Mounts", [])
                 if m.get("Type") == "bind" and m.get("Destination") not in KIND_OWN_MOUNTS)
