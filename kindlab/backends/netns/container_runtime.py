"""The node agent's container runtime, as containerd is the kubelet's: pod sandboxes with their CNI calls, and
the containers' processes.

The kubelet's part (kubelet_loop, pod_worker) decides what runs and when, records the events and writes the
statuses; this does the work, taking as long as containerd does for it (`step`, model.containerd). CNI calls
run concurrently on a node, as containerd runs them (host-local locks its store, bridge and portmap tolerate
each other); a bound keeps 50 pods from forking 50 chains at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

from ...model import kubelet
from . import processes, sandbox, workloads
from .cni import CniError, PodNetwork, Runtime, pod_ip, port_mappings
from .nodes import NodeView
from .pod_status import PodState
from .sandbox import Sandbox, SandboxError

log = logging.getLogger("kindlab.agent")
CNI_PER_NODE = 3


class SandboxFailed(Exception):
    """RunPodSandbox failed. `kept` is the sandbox containerd keeps when the CNI DEL after a failed ADD fails too."""

    def __init__(self, message: str, kept: Sandbox | None = None):
        super().__init__(message)
        self.kept = kept


class ContainerRuntime:
    """Sandboxes, their networks and containers on one lab's nodes; `backoff()` is the lab's back-off now."""

    def __init__(self, lab_name: str, views: dict[str, NodeView], backoff: Callable[[], float], service_subnet: str):
        self.lab_name = lab_name
        self.service_subnet = service_subnet
        self.views = views
        self.backoff = backoff
        self.cni = {name: Runtime(v) for name, v in views.items()}
        self.node_locks = {name: threading.BoundedSemaphore(CNI_PER_NODE) for name in views}

    def step(self, seconds: float) -> None:
        """Take as long as containerd takes for a step the model's runtime does at once (model.containerd)."""
        time.sleep(kubelet.scaled(seconds, self.backoff()))

    # -- sandboxes -----------------------------------------------------------------------------------
    def run_sandbox(self, view: NodeView, pod: PodState, hosts: Path, resolv: Path) -> tuple[Sandbox, str | None]:
        """RunPodSandbox on `view`'s node: the sandbox, then CNI ADD; returns the sandbox and the pod's IP, else
        SandboxFailed."""
        began = time.monotonic()
        try:
            sb = sandbox.create(view, pod.name, pod.label, hosts, resolv)
        except SandboxError as exc:
            raise SandboxFailed(str(exc)) from exc
        made = time.monotonic()
        net = self.pod_network(pod, sb)
        try:
            with self.node_locks[pod.bound_node]:
                locked = time.monotonic()
                result = self.cni[pod.bound_node].setup(net)
                log.info("pod %s: sandbox %.0f ms, CNI ADD %.0f ms (waited %.0f ms for the node)", pod.label,
                         (made - began) * 1000, (time.monotonic() - locked) * 1000, (locked - made) * 1000)
        except CniError as exc:
            raise SandboxFailed(str(exc), self._undo_network(pod, sb, net)) from exc
        return sb, pod_ip(result)

    def _undo_network(self, pod: PodState, sb: Sandbox, net: PodNetwork) -> Sandbox | None:
        """After a failed ADD, containerd tears the half-made network down and removes the sandbox; when that
        fails too, it keeps the sandbox (returned)."""
        try:
            with self.node_locks[pod.bound_node]:
                self.cni[pod.bound_node].teardown(net)
        except CniError as cleanup:
            log.info("pod %s: %s; the sandbox is kept", pod.label, cleanup)
            return sb
        sandbox.destroy(sb)
        return None

    def cni_del(self, pod: PodState, sb: Sandbox) -> None:
        """CNI DEL for the pod's sandbox (StopPodSandbox's network part); CniError when it fails."""
        with self.node_locks[pod.bound_node]:
            self.cni[pod.bound_node].teardown(self.pod_network(pod, sb))

    def remove_sandbox(self, sb: Sandbox | None) -> None:
        """Stop the sandbox's pause process: its namespaces go with it."""
        sandbox.destroy(sb)

    def pod_network(self, pod: PodState, sb: Sandbox) -> PodNetwork:
        return pod_network(pod, sb, self.service_subnet)

    # -- containers ----------------------------------------------------------------------------------
    def start_container(self, pod: PodState, env: dict[str, str], log_file: Path) -> tuple[int, int]:
        """Start the pod's workload in its sandbox; its (pid, start time)."""
        if pod.sandbox is None:
            raise RuntimeError(f"pod {pod.label}: no sandbox to start its container in")
        return workloads.start(self.views[pod.bound_node], pod.sandbox, env, log_file, pod.label)

    def stop_container(self, workload: tuple[int, int] | None) -> bool | None:
        """Stop a container: True when it exited on SIGTERM, False on SIGKILL, None when there was none."""
        return processes.terminate(*workload) if workload else None

    def running(self, workload: tuple[int, int]) -> bool:
        """True while the container's process runs."""
        return processes.alive(*workload)

    def reap(self) -> None:
        """Collect the exit status of the runtime's children that ended."""
        processes.reap()

    # -- orphans -------------------------------------------------------------------------------------
    def sweep_orphans(self, pods: Collection[PodState]) -> None:
        """Stop sandboxes and workloads no pod owns (a dead agent's work in flight), and DEL their networks."""
        processes.kill(self._orphan_processes(pods))
        known = {pod.sandbox.id for pod in pods if pod.sandbox}
        for node, runtime in self.cni.items():
            for net in runtime.orphans(known):
                try:
                    runtime.teardown(net)
                    log.info("node %s: removed the network of orphaned sandbox %s (pod %s/%s)", node,
                             net.sandbox_id[:12], net.pod_namespace, net.pod_name)
                except CniError as exc:
                    log.info("node %s: %s", node, exc)

    def _orphan_processes(self, pods: Collection[PodState]) -> list[int]:
        """The lab's pause and workload processes that no pod owns."""
        sandboxes = {pod.sandbox.pid for pod in pods if pod.sandbox}
        running = {pod.workload[0] for pod in pods if pod.workload}
        orphans = []
        for pid in processes.recorded(self.lab_name):
            words = processes.cmdline(pid)
            if not words or words[0].startswith("kindlab-node"):
                continue
            if words[0].startswith("kindlab-pause") and pid not in sandboxes:
                orphans.append(pid)
            elif not words[0].startswith("kindlab-pause") and any(w.startswith("pod=") for w in words) \
                    and pid not in running:
                orphans.append(pid)
        return orphans


def pod_network(pod: PodState, sb: Sandbox, service_subnet: str) -> PodNetwork:
    """What containerd hands CNI for the pod's sandbox (cniNamespaceOpts): its names, hostPorts, DNS, annotations."""
    namespace = pod.meta.get("namespace", "default")
    return PodNetwork(sandbox_id=sb.id, netns=sb.netns, pod_name=pod.name, pod_namespace=namespace, pod_uid=pod.uid,
                      port_mappings=port_mappings(pod.spec), dns=workloads.pod_dns(namespace, service_subnet),
                      annotations=pod.sandbox_annotations())
