"""The walkthrough's scenario, in one place: its three workers, its pods, and breaking and fixing them.

- ``worker``: healthy; the chained conflist is mounted in and the CNI package is there;
- ``worker2``: an empty host folder is mounted over ``/opt/cni``, so ``portmap`` is missing;
- ``worker3``: the CNI package is there, the chained conflist is not.

Everything goes through :class:`kindlab.Cluster` (``exec``, ``cp``, the pods API) and the topology's
mounts, so it works the same on every backend: files are written inside the node, as root, as
``docker cp`` does. Where a healthy ``portmap`` comes from is the backend's to say
(``capabilities.portmap_source``); otherwise it is copied from a healthy node into a temporary
folder that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from . import objects
from .cluster import Cluster
from .errors import KindlabError, NotFound
from .model import pods as pod_rules
from .model.cni import CNI_BIN, NET_D

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ("worker", "worker2", "worker3")
PORTMAP = f"{CNI_BIN}/portmap"


# -- names -------------------------------------------------------------------------------------
def node(lab: Cluster, role: str) -> str:
    """The node name for a role suffix as kind names it: ``node(lab, "worker2") == "kind-worker2"``."""
    return lab.check_node(f"{lab.name}-{role}")


def pod_name(lab: Cluster, role: str) -> str:
    """The walkthrough's echo pod pinned to a worker: ``echo-kind-worker2``."""
    return f"echo-{node(lab, role)}"


def timeout_for(lab: Cluster, timeout: float | None = None) -> float:
    """``timeout``, or how long a pod may take on this backend to get where it is going."""
    return timeout if timeout is not None else lab.capabilities.pod_timeout


# -- the manifests -------------------------------------------------------------------------------
def repo_root(lab: Cluster | None = None) -> Path:
    """The repository the lab's config comes from (``kind/config`` → its grandparent), else this package's."""
    source = lab.topology.source if lab is not None else None
    if source is not None and (Path(source).resolve().parents[1] / "manifests").is_dir():
        return Path(source).resolve().parents[1]
    return ROOT


def static_manifests(lab: Cluster | None = None) -> Path:
    """The folder of the walkthrough's static pods: ``manifests/static``."""
    return repo_root(lab) / "manifests" / "static"


def static_manifest(lab: Cluster | None, pod: str) -> Path | None:
    """The manifest file of one static pod (for the cluster ``kind``), or None."""
    cluster = lab.name if lab is not None else "kind"
    name = "echo-kind" + pod[len(f"echo-{cluster}"):] if pod.startswith(f"echo-{cluster}-") else pod
    path = static_manifests(lab) / f"{name}.yaml"
    return path if path.is_file() else None


def static_pods(lab: Cluster, manifests: str | Path | None = None) -> dict[str, objects.PodSpec]:
    """The static pods of ``manifests/static``, renamed for the lab's cluster name, by pod name."""
    out = {}
    for spec in objects.load(Path(manifests) if manifests else static_manifests(lab)):
        if not isinstance(spec, objects.PodSpec):
            continue
        if lab.name != "kind" and spec.node_name and spec.node_name.startswith("kind-"):
            node_name = lab.name + spec.node_name[len("kind"):]
            spec = dataclasses.replace(spec, name=spec.name.replace(spec.node_name, node_name), node_name=node_name)
        out[spec.name] = spec
    return out


# -- pods -------------------------------------------------------------------------------------
def find_pod(lab: Cluster, pod: str) -> dict | None:
    """The pod as a v1 Pod dict, or None when there is none."""
    try:
        return lab.pod(pod)
    except NotFound:
        return None


def pod_phase(lab: Cluster, pod: str) -> str | None:
    """The pod's phase, or None when there is no such pod."""
    return pod_rules.phase(find_pod(lab, pod))


def sandbox_failure_count(lab: Cluster, pod: str) -> int:
    """How many sandbox attempts of the current pod failed (model.pods.sandbox_failure_count)."""
    current = find_pod(lab, pod)
    if current is None:
        return 0
    created = pod_rules.epoch((current.get("metadata") or {}).get("creationTimestamp"))
    return pod_rules.sandbox_failure_count(lab.event_list(), pod, pod_rules.uid(current), created,
                                           running=pod_rules.is_running(current))


def wait_for_failure(lab: Cluster, pod: str, after: int = 0, timeout: float | None = None) -> int:
    """Wait until the pod's sandbox has failed more than ``after`` times; returns the count."""
    return lab.wait_for(lambda: (n := sandbox_failure_count(lab, pod)) > after and n,
                        timeout=timeout_for(lab, timeout), interval=lab.capabilities.poll_interval,
                        what=f"a {pod_rules.SANDBOX_FAILED} event for {pod}")


def apply_pod(lab: Cluster, pod: str, manifests: str | Path | None = None) -> str:
    """Create one of the walkthrough's static pods; returns kubectl's line."""
    return lab.apply_object(static_pods(lab, manifests)[pod])


def delete_pod(lab: Cluster, pod: str) -> str:
    """``kubectl delete pod`` until it is gone, on a node with or without ``portmap``.

    A real runtime keeps a pod Terminating for as long as its CNI DEL fails, and DEL of the chained config
    fails where ``portmap`` is missing (measured: containerd 1.6.20 under the real kubelet): the plugin is
    put back for the deletion and taken away again after, leaving the node as it was.
    """
    where = pod_rules.node_name(find_pod(lab, pod))
    if not where or has_portmap(lab, where):
        return lab.delete_pod(pod, wait=True)
    fix_portmap(lab, where)
    try:
        return lab.delete_pod(pod, wait=True)
    finally:
        break_portmap(lab, where)


def recreate_pod(lab: Cluster, pod: str, manifests: str | Path | None = None) -> list[str]:
    """``kubectl delete`` then ``kubectl apply`` one static pod, as the walkthrough does for worker3."""
    lines = []
    if pod_phase(lab, pod) is not None:
        lines.append(delete_pod(lab, pod))
    lines.append(apply_pod(lab, pod, manifests))
    return lines


# -- worker2: portmap is missing ----------------------------------------------------------------
def cni_bin_folder(lab: Cluster, node_name: str) -> Path:
    """The host folder that is the node's /opt/cni/bin: from the extraMount over /opt/cni (or a parent)."""
    bin_dir = PurePosixPath(CNI_BIN)
    mounts = [m for m in lab.topology.node(node_name).mounts
              if PurePosixPath(m.container_path) == bin_dir or PurePosixPath(m.container_path) in bin_dir.parents]
    if not mounts:
        raise KindlabError(f"node {node_name!r} has no host folder mounted over {CNI_BIN} (extraMounts in "
                           f"{lab.topology.source or 'the kind config'}); only such a node can be broken this way")
    mount = max(mounts, key=lambda m: len(PurePosixPath(m.container_path).parts))
    return Path(mount.host_path) / bin_dir.relative_to(mount.container_path)


def has_portmap(lab: Cluster, node_name: str) -> bool:
    """True when the node's ``/opt/cni/bin`` holds an executable ``portmap``."""
    return lab.exec(node_name, f"[ -x {PORTMAP} ] && echo yes || echo no").strip() == "yes"


def break_portmap(lab: Cluster, node_name: str) -> None:
    """Remove ``portmap`` from the node's /opt/cni/bin, inside the node (as root)."""
    lab.exec(node_name, ["rm", "-f", PORTMAP])


def _donors(lab: Cluster, node_name: str) -> list[str]:
    """Nodes whose /opt/cni/bin is the node image's (no host folder mounted over it)."""
    out = []
    for n in lab.topology.nodes:
        try:
            cni_bin_folder(lab, n.name)
        except KindlabError:
            if n.name != node_name:
                out.append(n.name)
    return out


@contextmanager
def healthy_portmap(lab: Cluster, node_name: str) -> Iterator[str]:
    """A file on this machine that is a healthy portmap, for the time of the ``with`` block.

    The backend's own (``capabilities.portmap_source``), else a copy from a healthy node, in a temporary
    folder removed at the end of the block.
    """
    source = lab.capabilities.portmap_source
    if source and Path(source).is_file():
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="kindlab-portmap-") as folder:
        dest = Path(folder) / "portmap"
        for donor in _donors(lab, node_name):
            try:
                lab.cp(f"{donor}:{PORTMAP}", str(dest))
            except KindlabError:
                continue
            yield str(dest)
            return
        raise KindlabError(f"no portmap to copy into {node_name}: the backend names none and no node of "
                           f"{lab.name!r} other than {node_name} has {PORTMAP}")


def install_portmap(lab: Cluster, node_name: str, source: str) -> str:
    """Copy ``source`` into the node as /opt/cni/bin/portmap, renamed into place so that the runtime
    never runs half a binary; returns the node path written."""
    staged = f"{CNI_BIN}/.portmap.kindlab-tmp"
    lab.cp(source, f"{node_name}:{staged}")
    lab.exec(node_name, ["sh", "-c", f"chmod 0755 {staged} && mv -f {staged} {PORTMAP}"])
    return PORTMAP


def fix_portmap(lab: Cluster, node_name: str) -> str:
    """The walkthrough's fix for worker2: put a healthy portmap into the node's /opt/cni/bin."""
    with healthy_portmap(lab, node_name) as source:
        return install_portmap(lab, node_name, source)


def host_cni_bin(lab: Cluster) -> Path:
    """The host folder that appears as ``/opt/cni/bin`` in worker2 (``kind/empty/bin``), from its extraMounts."""
    return cni_bin_folder(lab, node(lab, "worker2"))


def fix_worker2(lab: Cluster) -> str:
    """The walkthrough's fix: copy ``portmap`` into worker2's /opt/cni/bin (the host folder mounted there)."""
    return fix_portmap(lab, node(lab, "worker2"))


def break_worker2(lab: Cluster, timeout: float | None = None, fresh: bool = False) -> None:
    """Put worker2 back as the config made it: no ``portmap``, and its pod failing to start.

    A pod that is Running (it started while the plugin was there) is deleted first, so that its sandbox's
    CNI DEL still finds ``portmap``, and applied again once the plugin is gone; then the pod is waited for
    until its sandbox has failed once. With ``fresh``, a pod failing already is made anew the same way (the
    plugin put back for its deletion): its events start again, where the kubelet's spam filter had stopped them.
    """
    worker2, pod = node(lab, "worker2"), pod_name(lab, "worker2")
    phase = pod_phase(lab, pod)
    if fresh and phase not in (None, "Running"):
        fix_worker2(lab)                     # the failing pod's deletion runs its CNI DEL with portmap there
    if phase == "Running" or (fresh and phase is not None):
        lab.delete_pod(pod, wait=True)
        break_portmap(lab, worker2)
        apply_pod(lab, pod)
    else:
        break_portmap(lab, worker2)
    if phase is not None:
        wait_for_failure(lab, pod, timeout=timeout)
    if has_portmap(lab, worker2):
        raise KindlabError(f"{worker2} still has portmap after removing it")


# -- worker3: the chained conflist is missing ----------------------------------------------------
def chained_conflists(lab: Cluster, node_name: str) -> list[str]:
    """The ``*-portmap.conflist`` files in a node's ``/etc/cni/net.d``."""
    listing = lab.exec(node_name, f"ls -1 {NET_D} 2>/dev/null || true", check=False)
    return sorted(n.strip() for n in listing.splitlines() if n.strip().endswith("-portmap.conflist"))


def chained_conflist_source(lab: Cluster) -> Path:
    """The host file mounted into the healthy worker as its chained conflist (``kind/cni/000-…-portmap.conflist``).

    The netns lab mounts ``000-kindlab-portmap.conflist`` where the config names
    ``000-cilium-portmap.conflist``; the node's own listing says which of the siblings is really used.
    """
    worker = node(lab, "worker")
    in_node = chained_conflists(lab, worker)
    for m in lab.topology.node(worker).mounts:
        if m.container_path.startswith(NET_D + "/") and m.container_path.endswith("-portmap.conflist"):
            for name in in_node:
                if (Path(m.host_path).with_name(name)).is_file():
                    return Path(m.host_path).with_name(name)
            return Path(m.host_path)
    raise KindlabError(f"{worker} has no chained conflist mounted into {NET_D}; check its extraMounts")


def has_dnat_to(lab: Cluster, pod: str) -> bool:
    """True when the pod's node DNATs something to the pod's IP (portmap set its hostPort up)."""
    from . import iptables

    current = find_pod(lab, pod)
    ip, where = pod_rules.pod_ip(current), pod_rules.node_name(current)
    if not ip or not where:
        return False
    rules = iptables.node_rules(lab, where).rules
    dnat = rules[rules["target"] == "DNAT"]
    return bool(dnat["to_destination"].astype(str).str.startswith(f"{ip}:").any())


def fix_worker3(lab: Cluster, recreate: bool = False, timeout: float | None = None) -> str:
    """The walkthrough's fix: ``docker cp`` the chained conflist into worker3's ``/etc/cni/net.d``.

    With ``recreate``, also delete and apply worker3's pod and wait until it is Running. Returns the file
    name written.
    """
    src = chained_conflist_source(lab)
    lab.cp(str(src), f"{node(lab, 'worker3')}:{NET_D}/{src.name}")
    if recreate:
        pod = pod_name(lab, "worker3")
        recreate_pod(lab, pod)
        lab.wait_for_pod(pod, "Running", timeout=timeout_for(lab, timeout))
    return src.name


def break_worker3(lab: Cluster, timeout: float | None = None) -> None:
    """Put worker3 back as the config made it: no chained conflist, and its pod running without portmap.

    A pod whose node DNATs to it (it was created with the conflist in place) is deleted while the conflist
    is still there, so that its sandbox's CNI DEL runs portmap and removes its rules, then applied again.
    """
    worker3, pod = node(lab, "worker3"), pod_name(lab, "worker3")
    recreate = pod_phase(lab, pod) is not None and has_dnat_to(lab, pod)
    if recreate:
        lab.delete_pod(pod, wait=True)
    for name in chained_conflists(lab, worker3):
        lab.exec(worker3, ["rm", "-f", f"{NET_D}/{name}"])
    if recreate:
        apply_pod(lab, pod)
        lab.wait_for_pod(pod, "Running", timeout=timeout_for(lab, timeout))


def shown_path(lab: Cluster | None, path: str | Path, root: Path | None = None) -> str:
    """``path`` as a reader types it in the repository's folder (``root``, default the lab's): relative to it
    when below it, else as given."""
    try:
        return str(Path(path).resolve().relative_to((root or repo_root(lab)).resolve()))
    except ValueError:
        return str(path)
