"""What doctor tells to do about a failed check: what to copy where, and how to recreate a pod."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .. import scenario
from ..cluster import Cluster
from ..errors import KindlabError
from ..model.cni import CNI_BIN, NET_D
from ..model.pods import HostPort
from .nodes import NodeState


def host_bin_folder(lab: Cluster, node: str) -> Path | None:
    """The host folder mounted over the node's /opt/cni/bin, if the topology mounts one."""
    try:
        return scenario.cni_bin_folder(lab, node).absolute()
    except KindlabError:
        return None


def portmap_copy(lab: Cluster, states: list[NodeState], node: str) -> tuple[str, str]:
    """(the portmap to copy, the command that copies it to `node`): the host's CNI package or a healthy node's."""
    folder = host_bin_folder(lab, node)
    src = lab.capabilities.portmap_source
    if src:
        return src, (f"cp {src} {folder}/" if folder else f"kindlab cp {src} {node}:{CNI_BIN}/portmap")
    donor = next((s.name for s in states if s.name != node and s.portmap_executable), None)
    src = f"{donor}:{CNI_BIN}/portmap" if donor else "a portmap binary of the CNI package"
    if folder:
        return src, f"kindlab cp {src} {folder}/portmap"
    return src, f"kindlab cp {src} ./portmap && kindlab cp ./portmap {node}:{CNI_BIN}/portmap"


def portmap_fix(lab: Cluster, states: list[NodeState], node: str) -> str:
    """Copy a healthy portmap into the node; the pods then heal by themselves."""
    src, command = portmap_copy(lab, states, node)
    folder = host_bin_folder(lab, node)
    where = (f"on the host into {folder}/, the host folder mounted over the node's {CNI_BIN}" if folder
             else f"into {node}:{CNI_BIN}/")
    return (f"Copy {src} {where}: {command}. No need to recreate pods: the kubelet retries the sandbox "
            f"{lab.capabilities.retry_window} after each failure and the pod heals by itself.")


def shown(path: Path) -> str:
    """A path as a user would type it: relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def reapply(lab: Cluster | None, pod: str) -> str:
    """How to recreate a pod: its manifest under manifests/static/ when there is one, else generic words."""
    path = scenario.static_manifest(lab, pod)
    manifest = shown(path) if path else "its manifest"
    return f"kindlab delete pod {pod} && kindlab apply -f {manifest}"


def config_source(lab: Cluster, states: list[NodeState], node: str) -> str | None:
    """Where to copy a chained config from: a host file mounted into a healthy node, else that node's file."""
    for other in states:
        chosen = other.chosen
        if other.name == node or not chosen or not chosen.chains_portmap:
            continue
        want = PurePosixPath(NET_D) / chosen.file
        for m in lab.topology.node(other.name).mounts:
            if PurePosixPath(m.container_path) == want and Path(m.host_path).is_file():
                return str(Path(m.host_path).resolve())
        return f"{other.name}:{want}"
    return None


def _config_copy(source: str | None, node: str) -> str:
    """The command that puts the chained conflist `source` into the node's /etc/cni/net.d."""
    name = PurePosixPath(source).name if source else "000-<provider>-portmap.conflist"
    if source and ":" in source:
        return f"kindlab cp {source} ./{name} && kindlab cp ./{name} {node}:{NET_D}/{name}"
    if source:
        return f"kindlab cp {source} {node}:{NET_D}/{name}"
    return f"write a .conflist that chains the primary plugin then portmap into {node}:{NET_D}/"


def config_fix(lab: Cluster, states: list[NodeState], node: str, pods: list[HostPort]) -> str:
    """Copy a chained conflist so that it sorts first; then recreate the running pods with hostPorts."""
    copy = _config_copy(config_source(lab, states, node), node)
    fix = f"Copy the chained conflist into {NET_D} so that it sorts first: {copy}."
    running = sorted({hp.pod for hp in pods if hp.running})
    if running:
        fix += (f" Then delete and re-apply {', '.join(running)}: a running pod's network is not redone "
                "when the config changes.")
    return fix


def capitalized(text: str) -> str:
    """`text` with its first letter upper-case (the rest untouched)."""
    return f"{text[0].upper()}{text[1:]}"
