"""The module-level lifecycle over every registered backend: up, get, delete, clusters, delete_all.

Which ways to run exist, and in which order auto-detection asks them, is the registry's (registry.py);
what each must provide is the contract's (contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable
from ..progress import Reporter, resolve
from .registry import all_backends, names, select

if TYPE_CHECKING:
    from ..cluster import Cluster


@dataclass(frozen=True)
class Way:
    """One way to run the cluster: a backend with one Kubernetes, and what this machine lacks for it."""

    backend: str
    kubernetes: str
    missing: tuple[str, ...]
    #: The backend offers more than one Kubernetes (the label then names which).
    several: bool = False

    @property
    def runs_here(self) -> bool:
        """True when nothing is missing."""
        return not self.missing

    @property
    def label(self) -> str:
        """e.g. "kind", "netns, real Kubernetes", "netns, model"."""
        if not self.several:
            return self.backend
        return f"{self.backend}, " + ("real Kubernetes" if self.kubernetes == "real" else self.kubernetes)


def ways() -> list[Way]:
    """Every way to run the cluster that the backends offer, in auto-detection order, with what each lacks here."""
    return [Way(b.name, k, tuple(b.missing(k)), several=len(b.kubernetes) > 1)
            for b in all_backends() for k in b.kubernetes]


def select_backend(backend: str | None = None) -> str:
    """The backend to use: `backend`, else $KINDLAB_BACKEND, else the first that answers here."""
    return select(backend).name


def describe_choice(backend: str | None = None, kubernetes: str | None = None) -> str:
    """In words, what `up` would run here: the backend and which Kubernetes."""
    return select(backend).describe(kubernetes)


def up(config: str | Path = "kind/config", name: str = "kind", backend: str | None = None,
       backoff: float | None = None, progress: Reporter | bool | None = None,
       kubernetes: str | None = None, cni: str | None = None) -> Cluster:
    """Get-or-create cluster `name` from a kind config; returns the running Cluster.

    `kubernetes`: "real" for the real components, "model" for kindlab's model of the kubelet (where the
    backend offers it); default $KINDLAB_KUBERNETES, else the backend's choice. `cni`: the primary CNI plugin
    ("cilium", "kindlab") where the backend offers a choice; default $KINDLAB_CNI, else the backend's.
    `progress` receives what the backend is doing: a reporter (`kindlab.progress`), True for bars and lines
    on stdout, or None/False for nothing.
    """
    from .. import topology

    chosen = select(backend)
    topo = topology.load(config, name=name)
    return chosen.up(topo, backoff=backoff, report=resolve(progress), kubernetes=kubernetes, cni=cni)


def get(name: str = "kind", backend: str | None = None) -> Cluster:
    """The running cluster `name`; NotFound if there is none."""
    from ..topology import check_cluster_name

    return select(backend).get(check_cluster_name(name))


def delete(name: str = "kind", backend: str | None = None) -> bool:
    """Delete cluster `name`; False if there was none."""
    from ..topology import check_cluster_name

    return select(backend).delete(check_cluster_name(name))


def clusters(backend: str | None = None) -> list[str]:
    """Names of the clusters that exist on the backend."""
    try:
        return select(backend).clusters()
    except BackendUnavailable:
        return []


def delete_all(backend: str | None = None) -> list[str]:
    """Delete every cluster of the backend, half-made ones too; returns names."""
    return list(select(backend).delete_all())


def broken(name: str, backend: str | None = None) -> str | None:
    """Why cluster `name` cannot be used, or None."""
    return select(backend).broken(name)


__all__ = ["Way", "broken", "clusters", "delete", "delete_all", "describe_choice", "get", "names", "select_backend",
           "up", "ways"]
