"""Backend selection and the module-level lifecycle: up, get, delete, clusters."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable, KindlabError
from ..progress import Reporter, resolve

if TYPE_CHECKING:
    from ..cluster import Cluster

BACKENDS = ("kind", "netns")


def select_backend(backend: str | None = None) -> str:
    """The backend to use: `backend`, else $KINDLAB_BACKEND, else kind where Docker and kind answer, else netns."""
    choice = backend or os.environ.get("KINDLAB_BACKEND") or ""
    if choice:
        if choice not in BACKENDS:
            raise KindlabError(f"unknown backend {choice!r}; choose one of {', '.join(BACKENDS)} "
                               "(backend= or KINDLAB_BACKEND)")
        return choice
    from .kind.tools import docker_answers

    return "kind" if shutil.which("kind") and docker_answers() else "netns"


def describe_choice(backend: str | None = None, kubernetes: str | None = None) -> str:
    """In words, what `up` would run here: the backend and, on netns, real Kubernetes or the model."""
    chosen = select_backend(backend)
    if chosen == "kind":
        return "the kind backend (kind's real Kubernetes, with Cilium)"
    from .netns.backend import select_kubernetes

    real = select_kubernetes(kubernetes) == "real"
    return "the netns backend with " + ("real Kubernetes (the kubelet, containerd and the API server)" if real
                                        else "kindlab's model of the kubelet")


def _module(backend: str):
    name = {"kind": "kind", "netns": "netns"}[backend]
    return importlib.import_module(f"{__name__}.{name}")


def up(config: str | Path = "kind/config", name: str = "kind", backend: str | None = None,
       backoff: float | None = None, progress: Reporter | bool | None = None,
       kubernetes: str | None = None) -> Cluster:
    """Get-or-create cluster `name` from a kind config; returns the running Cluster.

    `kubernetes` (netns): "real" for the real components, "model" for kindlab's model of the kubelet;
    default $KINDLAB_KUBERNETES, else real where set-up built it. kind always runs real Kubernetes.
    `progress` receives what the backend is doing: a reporter (`kindlab.progress`), True for bars and lines
    on stdout, or None/False for nothing.
    """
    from .. import topology

    chosen = select_backend(backend)
    topo = topology.load(config, name=name)
    if chosen == "kind":
        if kubernetes == "model":
            raise KindlabError("kind runs real Kubernetes; kindlab's model runs on the netns backend "
                               "(--backend netns --kubernetes model)")
        return _module(chosen).up(topo, backoff=backoff, report=resolve(progress))
    return _module(chosen).up(topo, backoff=backoff, report=resolve(progress), kubernetes=kubernetes)


def get(name: str = "kind", backend: str | None = None) -> Cluster:
    """The running cluster `name`; NotFound if there is none."""
    from ..topology import check_cluster_name

    return _module(select_backend(backend)).get(check_cluster_name(name))


def delete(name: str = "kind", backend: str | None = None) -> bool:
    """Delete cluster `name`; False if there was none."""
    from ..topology import check_cluster_name

    return _module(select_backend(backend)).delete(check_cluster_name(name))


def clusters(backend: str | None = None) -> list[str]:
    """Names of the clusters that exist on the backend."""
    chosen = select_backend(backend)
    try:
        return _module(chosen).clusters()
    except BackendUnavailable:
        return []


def delete_all(backend: str | None = None) -> list[str]:
    """Delete every cluster of the backend, and (netns) sweep labs whose agent died; returns names."""
    module = _module(select_backend(backend))
    return list(module.delete_all())
