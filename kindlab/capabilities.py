"""What a backend can do, as a record on every Cluster (kind's providers have ProviderInfo).

Analysis (heal, doctor, the walkthrough, the plots, the command line) reads this record instead of
asking which backend it runs on.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from .model.kubelet import KUBELET_BACKOFF, KUBELET_JITTER, describe_retry_window, retry_window
from .waiting import Deadline


@dataclass(frozen=True)
class RuntimeTimes:
    """What the container runtime itself recorded about a pod, to the microsecond (epoch seconds)."""

    running_at: float | None
    attempts: list[float]
    #: The runtime's id of the container whose start is `running_at`, where it names one.
    container_id: str | None = None


@dataclass(frozen=True)
class ContainerStart:
    """A container's start as the runtime pushed it: when the event reached kindlab, and the runtime's stamp."""

    arrived_at: float
    runtime_at: float


class ContainerStarts:
    """Containers' starts as a runtime pushes them, by container id; a backend's follower of its runtime's events
    records them (`seen`). This base, for a backend without such events, never sees one."""

    #: Whether anything records starts into this object (else `start_of` does not wait).
    pushed = False

    def __init__(self) -> None:
        self.starts: dict[str, ContainerStart] = {}
        self.changed = threading.Condition()

    def seen(self, container_id: str, start: ContainerStart) -> None:
        """Record a container's start (its first one counts)."""
        with self.changed:
            self.starts.setdefault(container_id, start)
            self.changed.notify_all()

    def start_of(self, container_id: str, timeout: float = 1.0) -> ContainerStart | None:
        """The container's start once its event has arrived (waiting up to `timeout` s), else None."""
        deadline = Deadline(timeout if self.pushed else 0.0)
        with self.changed:
            while container_id not in self.starts and not deadline.passed:
                self.changed.wait(deadline.left())
            return self.starts.get(container_id)


@dataclass(frozen=True)
class Capabilities:
    """What a cluster's backend can do and what it runs."""

    #: The backend's name, as `kindlab get nodes -o wide` prints it.
    backend: str
    #: Which kubelet runs the pods: "real" (the kubelet itself) or "model" (kindlab's model of it).
    kubelet: str = "real"
    kubernetes_version: str = "unknown"
    runtime_version: str = "unknown"
    #: The CNI reference plugins the nodes run: package and version, as the node's package manager or set-up says.
    cni_plugins: str = "unknown"
    #: Changes to pods are pushed (a Kubernetes watch) rather than polled.
    watches_pods: bool = False
    #: How often to read pods when polling (s): a read's cost, not a wish.
    poll_interval: float = 0.1
    #: The sandbox retry back-off and its jitter (the kubelet's: 10 s, 50 %).
    sandbox_backoff: float = KUBELET_BACKOFF
    backoff_jitter: float = KUBELET_JITTER
    #: Retries that come at once after a pod's first failed sandbox, before the back-off (the real kubelet's: 1).
    immediate_retries: int = 0
    #: How long a pod may take to reach the state it is going to (s).
    pod_timeout: float = 60.0
    #: How long after a retry falls due the pod may still not be Running (s): the kubelet's 1 s sync tick,
    #: the attempt itself (sandbox, CNI ADD, image resolution, container start), the provider's endpoint.
    heal_slack: float = 2.0
    #: A file on this machine that is a healthy portmap; None: copy one from a healthy node.
    portmap_source: str | None = None
    #: The runtime records its own times of sandbox attempts and Running (`Cluster.runtime_times`).
    runtime_timestamps: bool = False
    #: The runtime pushes its containers' starts as they happen (`Cluster.container_starts`).
    runtime_events: bool = False
    #: The cluster has a Kubernetes API server and gives its kubeconfig (`Cluster.kubeconfig()`), so that any
    #: Kubernetes tool, and doctor's API path, works against it.
    kubeconfig: bool = False
    #: The plugins a healthy node's /opt/cni/bin holds besides the primary plugin.
    node_plugins: tuple[str, ...] = ("host-local", "loopback", "portmap")
    #: The primary CNI plugin and how it got onto the nodes, in words.
    cni: str = "kindlab-cni"

    @property
    def retry_bounds(self) -> tuple[float, float]:
        """The earliest and latest next sandbox attempt after a failed CNI ADD (s): the next relist
        (model.kubelet.retry_window; containerd 1.7 never lets the back-off be reached)."""
        return retry_window(self.sandbox_backoff)

    @property
    def retry_window(self) -> str:
        """The sandbox retry window in words, e.g. '1-1.05 s'."""
        return describe_retry_window(self.sandbox_backoff)

    def describe(self) -> str:
        """One line: the backend, which kubelet (with its versions) and the back-off."""
        kubelet = ("kindlab's model of the kubelet" if self.kubelet == "model" else
                   f"the real kubelet {self.kubernetes_version} with {self.runtime_version}")
        return f"{self.backend} backend, {kubelet}, {self.cni}, sandbox retry back-off {self.sandbox_backoff:g} s"

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict (JSON output)."""
        return asdict(self)
