"""What a backend can do, as a record on every Cluster (kind's providers have ProviderInfo).

Analysis (heal, doctor, the walkthrough, the plots, the command line) reads this record instead of
asking which backend it runs on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .model.kubelet import KUBELET_BACKOFF, KUBELET_JITTER, describe_window


@dataclass(frozen=True)
class RuntimeTimes:
    """What the container runtime itself recorded about a pod, to the microsecond (epoch seconds)."""

    running_at: float | None
    attempts: list[float]


@dataclass(frozen=True)
class Capabilities:
    """What a cluster's backend can do and what it runs."""

    #: The backend's name, as `kindlab get nodes -o wide` prints it.
    backend: str
    #: Which kubelet runs the pods: "real" (the kubelet itself) or "model" (kindlab's model of it).
    kubelet: str = "real"
    kubernetes_version: str = "unknown"
    runtime_version: str = "unknown"
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
    #: The cluster has a Kubernetes API server and gives its kubeconfig (`Cluster.kubeconfig()`), so that any
    #: Kubernetes tool, and doctor's API path, works against it.
    kubeconfig: bool = False
    #: The plugins a healthy node's /opt/cni/bin holds besides the primary plugin.
    node_plugins: tuple[str, ...] = ("host-local", "loopback", "portmap")

    @property
    def retry_window(self) -> str:
        """The sandbox retry window in words, e.g. '10-15 s'."""
        return describe_window(self.sandbox_backoff, self.backoff_jitter)

    def describe(self) -> str:
        """One line: the backend, which kubelet (with its versions) and the back-off."""
        kubelet = ("kindlab's model of the kubelet" if self.kubelet == "model" else
                   f"the real kubelet {self.kubernetes_version} with {self.runtime_version}")
        return f"{self.backend} backend, {kubelet}, sandbox retry back-off {self.sandbox_backoff:g} s"

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict (JSON output)."""
        return asdict(self)
