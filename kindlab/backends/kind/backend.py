"""The kind backend (registered in its `__init__`): up, get, delete, clusters, delete_all, broken."""

from __future__ import annotations

import shutil

from ...errors import KindlabError, NotFound
from ...progress import Reporter, quiet
from ...topology import Topology
from . import tools
from .cluster import KindCluster
from .lifecycle import READY_TIMEOUT, create, ensure_cilium, topology_for, wait_ready
from .state import delete as delete
from .translate import translate_errors


def available() -> bool:
    """True where `kind` is on PATH and Docker answers."""
    return bool(shutil.which("kind")) and tools.docker_answers()


def missing(kubernetes: str) -> list[str]:
    """What this machine lacks to run kind (kind runs real Kubernetes only)."""
    if kubernetes != "real":
        return [f"kind runs real Kubernetes, not {kubernetes!r}"]
    out = [] if shutil.which("kind") else ["kind on PATH (go install sigs.k8s.io/kind@VERSION)"]
    return out + ([] if tools.docker_answers() else ["a Docker daemon that answers `docker info`"])


def describe(kubernetes: str | None = None) -> str:
    """In words, what `up` runs on kind."""
    return "the kind backend (kind's real Kubernetes, with Cilium)"


def broken(name: str) -> str | None:
    """None: kind itself says whether a cluster's nodes run."""
    return None


def up(topology: Topology, backoff: float | None = None, report: Reporter = quiet,
       kubernetes: str | None = None, timeout: float = READY_TIMEOUT) -> KindCluster:
    """Get-or-create the kind cluster, make sure Cilium is installed, wait until it is Ready.

    `backoff` is the model's retry delay; the real kubelet keeps its own, so it is ignored here.
    """
    if kubernetes == "model":
        raise KindlabError("kind runs real Kubernetes; kindlab's model runs on the netns backend "
                           "(--backend netns --kubernetes model)")
    tools.require()
    with translate_errors(f"kind cluster {topology.name!r}"):
        if topology.name not in _clusters():
            tools.require_helm()  # before making a cluster that could not get its CNI
            create(topology)
        cluster = KindCluster(topology.name, topology)
        ensure_cilium(cluster)
        wait_ready(cluster, timeout=timeout, report=report)
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


def clusters() -> list[str]:
    """`kind get clusters`."""
    tools.require()
    return _clusters()


def delete_all() -> list[str]:
    """Delete every kind cluster; returns their names."""
    names = clusters()
    for name in names:
        delete(name)
    return names


def _clusters() -> list[str]:
    return tools.kind_cluster_names()


