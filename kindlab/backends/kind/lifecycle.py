"""Making a kind cluster: kind for the nodes, helm for Cilium, a state file for the host folders kindlab
made (as Docker makes a missing bind-mount source); waiting until it is Ready; its topology read back."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ... import topology as topology_mod
from ...errors import ConfigError, KindlabError, WaitTimeout
from ...progress import Reporter, quiet
from ...topology import Mount, Networking, Node, Topology
from ...waiting import Deadline
from ..kube.shapes import is_ready
from . import tools
from .cluster import KindCluster
from .state import forget, load_state, remove_created, save_state

CREATE_TIMEOUT = 900.0
READY_TIMEOUT = 600.0
POLL_SECONDS = 2.0
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
KIND_ROLE_LABEL = "io.x-k8s.kind.role"
KIND_OWN_MOUNTS = ("/lib/modules", "/dev/mapper")  # kind binds /dev/mapper on btrfs and zfs hosts


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
def wait_ready(cluster: KindCluster, timeout: float = READY_TIMEOUT, report: Reporter = quiet) -> None:
    """Wait for a ready Cilium agent on every node, then for every node Ready, reporting the counts."""
    total = len(cluster.topology.nodes)
    hint = f"see `kubectl --context kind-{cluster.name} -n kube-system get pods -l k8s-app=cilium`"
    wait_count(f"{cluster.name}: Cilium agents ready", total, lambda: cilium_agents_ready(cluster),
               timeout, report, hint)
    wait_count(f"{cluster.name}: nodes Ready", total,
               lambda: sum(is_ready(n) for n in cluster.node_list()), timeout, report, hint)


def cilium_agents_ready(cluster: KindCluster) -> int:
    """How many Cilium agent pods are ready (the DaemonSet's status.numberReady)."""
    status = cluster.apps.read_namespaced_daemon_set("cilium", "kube-system").status
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
