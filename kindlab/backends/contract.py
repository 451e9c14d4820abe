"""What a way to run a cluster must provide: the Backend contract.

A backend is a package under `kindlab/backends/` whose `__init__` registers one object that meets this
contract (`registry.register(...)`, usually a ModuleBackend naming the package's `backend.py`). The command
line's choices, auto-detection and `describe_choice` read the registry, so a new way to run is one new
package and no edit elsewhere. The clusters it makes are `kindlab.cluster.Cluster`s, each composed of an
API half and a node half (see that module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..progress import Reporter

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..topology import Topology


@runtime_checkable
class Backend(Protocol):
    """One way to run a cluster."""

    #: Its name: `--backend NAME`, `KINDLAB_BACKEND=NAME`, `backend=NAME`.
    name: str
    #: Where auto-detection asks it, lowest first; the first that is `available()` is chosen.
    order: int
    #: Which Kubernetes its clusters can run: "real" (the real kubelet), "model" (kindlab's model); the first
    #: is its default where the backend does not choose by what is built.
    kubernetes: tuple[str, ...]
    #: The primary CNI plugins it can install ("cilium", "kindlab"); it chooses one where none is asked for.
    cnis: tuple[str, ...]
    #: What `kindlab build WHAT` makes with it ("node-image"), if anything.
    builds: tuple[str, ...]

    def available(self) -> bool:
        """Whether auto-detection may choose it on this machine (its tools answer)."""

    def missing(self, kubernetes: str) -> list[str]:
        """What this machine lacks to run its clusters with `kubernetes`, each with what provides it (empty:
        nothing)."""

    def describe(self, kubernetes: str | None = None) -> str:
        """In words, what `up` would run here, e.g. "the kind backend (kind's real Kubernetes, with Cilium)"."""

    def up(self, topology: Topology, backoff: float | None, report: Reporter,
           kubernetes: str | None, cni: str | None) -> Cluster:
        """Get-or-create the cluster `topology.name`; a KindlabError naming the fix when it cannot."""

    def get(self, name: str) -> Cluster:
        """The running cluster `name`; NotFound naming the clusters there are otherwise."""

    def delete(self, name: str) -> bool:
        """Delete the cluster and everything it made; False if there was none."""

    def clusters(self) -> list[str]:
        """Names of its clusters on this machine."""

    def delete_all(self) -> list[str]:
        """Delete every cluster, half-made ones too; their names."""

    def broken(self, name: str) -> str | None:
        """Why cluster `name` cannot be used (half-made by an interrupted create), or None."""

    def build(self, what: str, report: Reporter) -> str:
        """Make `what` (one of `builds`) on this machine; what was made, in words."""


class ModuleBackend:
    """A Backend whose work is done by the functions of one module (`available`, `describe`, `up`, `get`,
    `delete`, `clusters`, `delete_all`, `broken`), imported when first asked: registering a backend costs
    nothing, and a process that needs only part of a package (the model's node agent) loads nothing more."""

    def __init__(self, name: str, order: int, kubernetes: tuple[str, ...], module: str,
                 cnis: tuple[str, ...] = ("kindlab",), builds: tuple[str, ...] = ()):
        self.name = name
        self.builds = builds
        self.order = order
        self.kubernetes = kubernetes
        self.cnis = cnis
        self.module = module

    def __repr__(self) -> str:
        return f"<kindlab backend {self.name!r} ({self.module})>"

    def _impl(self, function: str) -> Any:
        return getattr(importlib.import_module(self.module), function)

    def available(self) -> bool:
        return bool(self._impl("available")())

    def missing(self, kubernetes: str) -> list[str]:
        return list(self._impl("missing")(kubernetes))

    def describe(self, kubernetes: str | None = None) -> str:
        return str(self._impl("describe")(kubernetes))

    def up(self, topology: Topology, backoff: float | None, report: Reporter, kubernetes: str | None,
           cni: str | None = None) -> Cluster:
        return self._impl("up")(topology, backoff=backoff, report=report, kubernetes=kubernetes, cni=cni)

    def get(self, name: str) -> Cluster:
        return self._impl("get")(name)

    def delete(self, name: str) -> bool:
        return bool(self._impl("delete")(name))

    def clusters(self) -> list[str]:
        return list(self._impl("clusters")())

    def delete_all(self) -> list[str]:
        return list(self._impl("delete_all")())

    def broken(self, name: str) -> str | None:
        return self._impl("broken")(name)

    def build(self, what: str, report: Reporter) -> str:
        return str(self._impl("build")(what, report))
