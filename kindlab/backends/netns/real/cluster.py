"""RealLab: a netns lab whose nodes run real Kubernetes; pods, nodes and events come from its API server.

It composes the node half of every lab (exec, cp and curl on its namespaces) with the one Kubernetes API
half, KubeApi, the client kind uses too, through the admin kubeconfig of the lab (startup.KUBECONFIG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .... import objects, runtime_packages
from ....capabilities import Capabilities, RuntimeTimes
from ....errors import ClusterError
from ....topology import Topology
from ...kube.client import KubeApi
from ..cluster import NetnsLab
from . import runtime_log, startup
from .task_events import TaskStarts

POLL_SECONDS = 0.2
#: Measured on v1.20.2 + containerd 1.6.20 in the lab: Running 14-16 s after a fix that came just after a
#: failure, a retry due 10-15 s later, then the 1 s sync tick, the sandbox, CNI ADD and the pull of an
#: untagged image (Always).
HEAL_SLACK = 4.0
#: A pod leaves the API only once its sandbox is removed (kubelet 1.20, kubernetes#92817), which the kubelet's
#: container GC may do only on its next 1-minute round: measured 3-62 s from the delete in the lab.
DELETE_TIMEOUT = 150.0


class RealLab(NetnsLab):
    """A netns lab running kube-apiserver, containerd, the kubelet and kube-proxy in its nodes."""

    def __init__(self, record: dict[str, Any], topology: Topology):
        super().__init__(record, topology)
        self.kube = KubeApi(lambda: startup.admin_client(self.state_dir), poll=POLL_SECONDS,
                            where=f"cluster {self.name!r}", delete_timeout=DELETE_TIMEOUT)
        self.api_server = self.kube

    @property
    def real(self) -> dict[str, Any]:
        """What the lab's record keeps of its real components (ports, versions, processes)."""
        return self.record["real"]

    def kubeconfig(self) -> str:
        """The admin kubeconfig for https://127.0.0.1:<port>, as `kind get kubeconfig` prints it."""
        return (self.state_dir / startup.KUBECONFIG).read_text()

    @property
    def capabilities(self) -> Capabilities:
        """The real kubelet: its 10 s back-off, a pod watch, the machine's CNI package on every node."""
        portmap = Path(self.record["cni_dir"]) / "portmap"   # the plugins this lab overlays on its nodes
        return Capabilities(
            cni_plugins=runtime_packages.describe_cni_dir(self.record["cni_dir"]),
            backend=self.backend, kubelet="real", kubernetes_version=self.real["kubernetes"],
            runtime_version=self.real["runtime"], watches_pods=True, poll_interval=POLL_SECONDS,
            immediate_retries=1, kubeconfig=True,
            pod_timeout=120.0, heal_slack=HEAL_SLACK, portmap_source=str(portmap) if portmap.exists() else None,
            runtime_timestamps=True, runtime_events=True, node_plugins=("bridge", "host-local", "loopback", "portmap"))

    def runtime_times(self, pod: dict[str, Any]) -> RuntimeTimes | None:
        """containerd's own record of the pod (its node's log): failed sandbox attempts, the container's start."""
        node = ((pod or {}).get("spec") or {}).get("nodeName")
        uid = ((pod or {}).get("metadata") or {}).get("uid")
        if not node or not uid:
            return None
        return runtime_log.times(self.state_dir / "logs" / f"{node}.containerd.log", uid)

    def container_starts(self, node: str) -> TaskStarts:
        """containerd's task-start events on `node` while the block runs (`ctr events` in the node)."""
        return TaskStarts(self.view(node).enter())

    # -- the components in place of the agent -------------------------------------------------------
    def agent_running(self) -> bool:
        """True when every component's process runs."""
        from ..processes import alive

        return all(alive(c["pid"], c["start"]) for c in self.real["components"])

    def ensure_agent(self) -> None:
        """Start again any component that died (as systemd would), keeping the record in step."""
        if self.agent_running():
            return
        with self.store.lock():
            record = self.store.read_lab() or self.record
            if startup.restart_dead(self.name, record["real"], self._views):
                self.store.write_lab(record)
            self.record = record

    # -- Kubernetes objects: the API server's, after the lab's own checks of a pod -------------------
    def apply_object(self, obj: objects.Manifest) -> str:
        if isinstance(obj, objects.PodSpec):
            self.pod_doc(obj)   # the lab's own checks of a pod (its nodeName, its image), as on the model
        return self.kube.apply_object(obj)

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True,
                   timeout: float | None = None) -> str:
        return self.kube.delete_pod(name, namespace, wait=wait, timeout=timeout)

    def cni_check(self, name: str, namespace: str = "default") -> str:
        raise ClusterError("cni_check reads the model's sandboxes; on real Kubernetes the runtime owns them "
                           "(crictl is not part of the lab)")
