"""The kubelet's pod work, run on the node agent's pool threads: make a pod (RunPodSandbox, then its container),
retry a kept failed sandbox, remake a pod whose sandbox died, kill a pod; with the events the kubelet records.

`PodWorker` is a part of `kubelet_loop.Agent` (which inherits it): it uses the agent's state, clocks and status
writes, and leaves the sandboxes, the CNI calls and the processes to the container runtime (container_runtime).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from ...model import containerd, kubelet
from ...model.pods import SANDBOX_CHANGED, SANDBOX_FAILED, pull_policy
from . import runtime_events, workloads
from .cni import CniError
from .container_runtime import ContainerRuntime, SandboxFailed
from .events import EventRecorder
from .nodes import NodeView
from .pod_status import PodState, Stage, container_id
from .state.store import Store, timestamp

log = logging.getLogger("kindlab.agent")
RPC = "rpc error: code = Unknown desc = "
SANDBOX_CHANGED_MESSAGE = "Pod sandbox changed, it will be killed and re-created."


class PodWorker(ABC):
    """The pod work of `kubelet_loop.Agent`: it uses the agent's state (the attributes below), its clocks
    (`next_retry`, `next_relist`, `retry_delay`, `backoff`) and its `write` and `forget` (the abstract methods
    below, which the agent defines)."""

    store: Store
    record: dict[str, Any]
    views: dict[str, NodeView]
    runtime: ContainerRuntime
    events: EventRecorder
    lock: threading.RLock
    sync_origin: float
    gc_origin: float

    # -- the agent's part, which the pod work uses ----------------------------------------------------
    @property
    @abstractmethod
    def backoff(self) -> float:
        """The lab's back-off period (s)."""

    @abstractmethod
    def next_retry(self) -> float:
        """When a failed pod is tried again."""

    @abstractmethod
    def next_relist(self, after: float) -> float:
        """PLEG's first relist at or after `after`."""

    @abstractmethod
    def retry_delay(self) -> float:
        """The pod worker's back-off (s)."""

    @abstractmethod
    def write(self, pod: PodState) -> None:
        """Write the pod's status now."""

    @abstractmethod
    def forget(self, pod: PodState) -> None:
        """The pod leaves the API."""

    # -- making a pod ---------------------------------------------------------------------------------
    def create_pod(self, pod: PodState) -> None:
        """RunPodSandbox (sandbox + CNI ADD), then start the container; first, kill a failed sandbox kept."""
        if pod.sandbox is not None and not self.kill_failed_sandbox(pod):
            return
        view = self.views[pod.bound_node]
        hosts, resolv = self.pod_files(pod)
        try:
            sb, ip = self.runtime.run_sandbox(view, pod, hosts, resolv)
        except SandboxFailed as exc:
            with self.lock:
                pod.sandbox = exc.kept
            self.sandbox_failed(pod, str(exc), kept=exc.kept is not None)
            return
        with self.lock:
            pod.sandbox, pod.pod_ip = sb, ip
            self.write(pod)
        self.pod_files(pod)
        self.runtime.step(containerd.PAUSE_START)
        self.start_container(pod)

    def kill_failed_sandbox(self, pod: PodState) -> bool:
        """The kubelet's retry of a pod whose failed sandbox was kept: SandboxChanged, then StopPodSandbox. containerd
        1.7 kept it in state SANDBOX_UNKNOWN and stops it without a CNI DEL (model.containerd), so this succeeds and
        a new sandbox is made at once."""
        if pod.sandbox is None:
            raise RuntimeError(f"pod {pod.label}: no failed sandbox kept to kill")
        self.events.record(pod.meta, pod.node, "Normal", SANDBOX_CHANGED, SANDBOX_CHANGED_MESSAGE)
        self.runtime.remove_sandbox(pod.sandbox)
        with self.lock:
            pod.sandbox = None
        return True

    def start_container(self, pod: PodState) -> None:
        """Pull (check) the image and start the workload in the sandbox."""
        image = pod.container["image"]
        resolving = time.perf_counter()
        if not workloads.supported(image):
            with self.lock:
                pod.stage, pod.waiting_reason = Stage.IMAGE, "ErrImagePull"
                pod.waiting_message = workloads.unsupported_message(image)
                pod.next_try = self.next_retry()
                self.events.record(pod.meta, pod.node, "Warning", "Failed", pod.waiting_message)
                self.write(pod)
            return
        self.pull_image(pod, image, resolving)
        env = workloads.environment(pod.name, pod.container, self.record["service_subnet"])
        self.runtime.step(containerd.CREATE)
        self.events.record(pod.meta, pod.node, "Normal", "Created", f"Created container {pod.container['name']}")
        log_file = self.pod_dir(pod) / "container.log"
        self.runtime.step(containerd.START)
        workload = self.runtime.start_container(pod, env, log_file)
        with self.lock:
            pod.workload, pod.stage, pod.started_at = workload, Stage.STARTING, timestamp()
            self.container_started(pod)
            self.write(pod)
        self.events.record(pod.meta, pod.node, "Normal", "Started", f"Started container {pod.container['name']}")

    def pull_image(self, pod: PodState, image: str, resolving: float) -> None:
        """Pull the image when the pull policy says Always (taking containerd's time; the pull's time counts from
        `resolving`, a perf_counter reading); the events either way."""
        if pull_policy(pod.container) == "Always":
            self.events.record(pod.meta, pod.node, "Normal", "Pulling", f'Pulling image "{image}"')
            self.runtime.step(containerd.PULL)
            self.events.record(pod.meta, pod.node, "Normal", "Pulled",
                               f'Successfully pulled image "{image}" in '
                               f'{workloads.go_duration(time.perf_counter() - resolving)}')
        else:
            self.events.record(pod.meta, pod.node, "Normal", "Pulled",
                               f'Container image "{image}" already present on machine')

    def recreate_sandbox(self, pod: PodState) -> None:
        """The sandbox died: stop what is left, CNI DEL, and make the pod again."""
        self.runtime.stop_container(pod.workload)
        self.network_down(pod)
        with self.lock:
            pod.sandbox, pod.pod_ip, pod.workload = None, None, None
            pod.stage, pod.phase, pod.waiting_reason, pod.ready_since, pod.running_at = (
                Stage.SANDBOX, "Pending", "ContainerCreating", None, None)
            pod.restarts += 1
            self.write(pod)
        self.create_pod(pod)

    # -- killing a pod --------------------------------------------------------------------------------
    def kill_pod(self, pod: PodState) -> None:
        """Delete: stop the workload, CNI DEL, remove the sandbox; the pod leaves the API once the kubelet finds
        that done (`terminated`), or at once when it has left it already."""
        if pod.workload:
            self.events.record(pod.meta, pod.node, "Normal", "Killing", f"Stopping container {pod.container['name']}")
        failed_sandbox = failed_set_up(pod)
        graceful = self.runtime.stop_container(pod.workload)
        exited = time.time()
        with self.lock:
            first_relist = self.next_relist(exited)   # the relist that will see the container exited
        if not self.network_down(pod):
            with self.lock:   # retried by a reconcile after the back-off
                pod.deleting, pod.stage, pod.delete_retry = False, Stage.DELETING, time.time() + self.retry_delay()
            return
        self.runtime.remove_sandbox(pod.sandbox)
        stopped = time.time()
        shutil.rmtree(self.pod_dir(pod), ignore_errors=True)
        doc = self.store.desired_pod(pod.key)
        if doc is None or doc["metadata"]["uid"] != pod.uid:
            self.forget(pod)
        else:
            self.terminated(pod, graceful, exited, first_relist, stopped, failed_sandbox)

    def terminated(self, pod: PodState, graceful: bool | None, exited: float, first_relist: float,
                   stopped: float, failed_sandbox: bool = False) -> None:
        """Stopped and reclaimed: Terminating until the status manager's tick after the relists that find it so;
        its status changes at the first relist after the kill (until then, as it was): the container terminated
        or, when the relist that first saw it exited came before the sandbox's stop (the sandbox then waits for
        the container GC), waiting, as the kubelet shows a container it has removed. A pod killed with its
        failed sandbox kept (`failed_sandbox`) waits for the container GC too (model.kubelet)."""
        with self.lock:
            to_gc = failed_sandbox or (graceful is not None
                                       and kubelet.left_to_gc(first_relist, exited, stopped, self.backoff))
            pod.sandbox, pod.stage = None, Stage.TERMINATED
            if to_gc:
                pod.waiting_reason, pod.waiting_message = "ContainerCreating", None
            elif graceful is not None:
                pod.finished_at, pod.exit_code = timestamp(exited), 0 if graceful else 137
            pod.exit_seen_at = self.next_relist(stopped)
            pod.remove_at = kubelet.removed_at(pod.exit_seen_at, self.sync_origin, self.backoff,
                                               self.gc_origin if to_gc else None)
            log.info("pod %s stopped: sandbox %.3f s after the container, a relist %.3f s after it%s", pod.label,
                     stopped - exited, first_relist - exited, ": sandbox left to the GC" if to_gc else "")

    def network_down(self, pod: PodState) -> bool:
        """CNI DEL for the pod's sandbox; False (and an event) when it fails. A sandbox kept after a failed set-up
        is stopped without one (containerd 1.7: model.containerd)."""
        if pod.sandbox is None or failed_set_up(pod):
            return True
        try:
            self.runtime.cni_del(pod, pod.sandbox)
        except CniError as exc:
            name = f"{pod.name}_{pod.meta.get('namespace', 'default')}({pod.uid})"
            self.events.record(pod.meta, pod.node, "Warning", "FailedKillPod",
                               f'error killing pod: failed to "KillPodSandbox" for "{name}" with KillPodSandboxError: '
                               f'"{RPC}{exc}"')
            return False
        return True

    # -- transitions the pod work makes ----------------------------------------------------------------
    def sandbox_failed(self, pod: PodState, error: str, kept: bool = False) -> None:
        """A failed RunPodSandbox. When its sandbox was `kept`, the first relist after the failed sync wakes the
        pod worker (its status cache must be newer than that sync, even if an earlier relist saw the sandbox);
        otherwise the back-off."""
        with self.lock:
            now = time.time()
            pod.attempts.append(now)
            pod.stage, pod.phase, pod.waiting_reason = Stage.SANDBOX, "Pending", "ContainerCreating"
            pod.next_try = self.next_relist(now) if kept else self.next_retry()
            self.events.record(pod.meta, pod.node, "Warning", SANDBOX_FAILED,
                               f"Failed to create pod sandbox: {RPC}{error}")
            self.write(pod)

    def container_started(self, pod: PodState) -> None:
        """The runtime's moment: the container's process runs (it listens a little later, as on containerd);
        pushed at once, as containerd's task start."""
        cid = container_id(pod)
        if cid is None:
            raise RuntimeError(f"pod {pod.label}: a container started without a workload")
        pod.running_at = time.time()
        runtime_events.append(self.store.root, cid, pod.running_at)

    # -- the pod's files ------------------------------------------------------------------------------
    def pod_dir(self, pod: PodState) -> Path:
        """The pod's files, in its node's own folder (which the node sees as /run/kindlab/node)."""
        view = self.views.get(pod.node) if pod.node else None
        base = Path(view.state) if view else self.store.root
        return base / "pods" / f"{pod.key}-{pod.uid[:8]}"

    def pod_files(self, pod: PodState) -> tuple[Path, Path]:
        """(Re)write the pod's hosts and resolv.conf, with its IP once it has one."""
        return workloads.write_pod_files(self.pod_dir(pod), pod.name, pod.meta.get("namespace", "default"), pod.pod_ip,
                                         self.record["service_subnet"])


def failed_set_up(pod: PodState) -> bool:
    """True when the pod's sandbox is one containerd kept after its network set-up failed: it never got an IP.
    (Read from the sandbox and IP, not the stage: a kill has already marked the pod as deleting.)"""
    return pod.sandbox is not None and pod.pod_ip is None
