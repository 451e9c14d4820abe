"""The kind backend (registered in its `__init__`): up, get, delete, clusters, delete_all, broken.

`up` uses the machine's Docker where one answers, else starts kindlab's own (docker_host.py); runs
`kind create cluster` on kind's default node image with Cilium (helm), or, with kindlab-cni, on kindlab's node
image made on the machine (node_image/); forwards the API server's port to the host where kindlab's engine
runs the nodes (api_port.py); installs the CNI and waits until every node is Ready.
"""

from __future__ import annotations

from ... import kubernetes_build
from ...errors import EnvironmentProblem, KindlabError, NotFound
from ...progress import Reporter, quiet
from ...topology import Topology
from . import api_port, docker_host, node_image, tools
from . import cni as cni_mod
from .cluster import KindCluster
from .lifecycle import READY_TIMEOUT, create, ensure_cni, topology_for, wait_ready
from .state import load_state
from .teardown import clusters as _clusters
from .teardown import delete as delete
from .translate import translate_errors


def available() -> bool:
    """True where kind is installed and a Docker Engine answers (the machine's, or kindlab's own running)."""
    return bool(tools.kind_binary()) and tools.docker_answers()


def missing(kubernetes: str) -> list[str]:
    """What this machine lacks to run kind (kind runs real Kubernetes only)."""
    if kubernetes != "real":
        return [f"kind runs real Kubernetes, not {kubernetes!r}"]
    return [tools.INSTALL_HINTS[m] for m in tools.missing_tools()]


def describe(kubernetes: str | None = None) -> str:
    """In words, what `up` runs on kind."""
    cni = cni_mod.choose()
    return ("the kind backend (kind's real Kubernetes, with " + ("Cilium)" if cni == cni_mod.CILIUM else
            "kindlab-cni on kindlab's node image)"))


def broken(name: str) -> str | None:
    """None: kind itself says whether a cluster's nodes run."""
    return None


def up(topology: Topology, backoff: float | None = None, report: Reporter = quiet,
       kubernetes: str | None = None, cni: str | None = None, timeout: float = READY_TIMEOUT) -> KindCluster:
    """Get-or-create the kind cluster, make sure its CNI is installed, wait until it is Ready.

    `backoff` is the model's retry delay; the real kubelet keeps its own, so it is ignored here.
    """
    if kubernetes == "model":
        raise KindlabError("kind runs real Kubernetes; kindlab's model runs on the netns backend "
                           "(--backend netns --kubernetes model)")
    tools.require()
    tools.require_versions()
    try:
        return _up(topology, report, cni, timeout)
    except BaseException:
        if docker_host.own() and not _clusters():   # a failed create leaves no engine kindlab started either
            docker_host.stop_own()
        raise


def _up(topology: Topology, report: Reporter, cni: str | None, timeout: float) -> KindCluster:
    name = topology.name
    with translate_errors(f"kind cluster {name!r}"):
        if docker_host.own() and not docker_host.answers():
            report("kind: starting kindlab's own Docker Engine (dockerd in network namespace "
                   f"{docker_host.OWN.netns}, data in {docker_host.OWN.data_root})")
        docker_host.ensure()
        if name not in _clusters():
            chosen = cni_mod.choose(cni)
            if chosen == cni_mod.CILIUM:
                tools.require_helm()  # before making a cluster that could not get its CNI
            image = node_image_for(chosen, report)
            report(f"kind: kind create cluster --name {name}" + (f" --image {image}" if image else ""))
            create(topology, chosen, image)
            for line in load_state(name).get("substitutions") or []:
                report(line)
        else:
            chosen = load_state(name).get("cni") or cni_mod.choose(cni)
        api_port.ensure(name)
        cluster = KindCluster(name, topology)
        ensure_cni(cluster, chosen)
        wait_ready(cluster, chosen, timeout=timeout, report=report)
    return cluster


def node_image_for(cni: str, report: Reporter = quiet) -> str | None:
    """The node image: $KINDLAB_KIND_IMAGE, else kindlab's own for kindlab-cni (made here if missing), else
    kind's default (None)."""
    if image := tools.kind_image_override():
        return image
    if cni == cni_mod.CILIUM:
        return None
    return build_node_image(report)


def build_node_image(report: Reporter = quiet) -> str:
    """Make kindlab's node image in the engine kindlab uses (starting its own where needed); its tag."""
    bin_dir = kubernetes_build.bin_dir(node_image.NODE_BINARIES)
    if bin_dir is None:
        raise EnvironmentProblem("kindlab's kind node image needs set-up's Kubernetes build (kubelet, kubeadm, "
                                 "kubectl): run `make setup` (scripts/build-kubernetes.sh)")
    docker_host.ensure()
    return node_image.build(docker_host.client(timeout=600), bin_dir, kubernetes_build.cache_root() / "node-image",
                            report)


def build(what: str, report: Reporter = quiet) -> str:
    """`kindlab build node-image`: kindlab's node image, in the engine kindlab uses."""
    if what != "node-image":
        raise KindlabError(f"the kind backend builds only node-image, not {what!r}")
    started = docker_host.own() and not docker_host.answers()
    try:
        return build_node_image(report)
    finally:
        if started:   # an engine started only to build stops again; its data root keeps the image
            docker_host.stop_own()


def get(name: str) -> KindCluster:
    """The running kind cluster `name`; NotFound naming the clusters there are otherwise."""
    tools.require()
    names = _clusters()
    if name not in names:
        raise NotFound(f"no kind cluster {name!r} (kind clusters: {', '.join(names) or 'none'}); "
                       f"create it with kindlab.up('kind/config', name={name!r})")
    with translate_errors(f"kind cluster {name!r}"):
        api_port.ensure(name)   # as a dead kubelet is started again: the forwarder, where it died
        return KindCluster(name, topology_for(name))


def clusters() -> list[str]:
    """`kind get clusters` (none where kindlab's own engine does not run)."""
    tools.require()
    return _clusters()


def delete_all() -> list[str]:
    """Delete every kind cluster; returns their names."""
    names = clusters()
    for name in names:
        delete(name)
    if docker_host.own():
        docker_host.stop_own()
    return names


