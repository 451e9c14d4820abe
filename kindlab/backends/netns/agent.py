"""The node agent: the kubelet's part, one supervisor process per lab (for all its nodes).

Started detached by the lab (`python -m kindlab.backends.netns.agent kindlab-lab=<lab>`), it holds
the store's agent.lock for its life and outlives the process that started it. Its loop polls the
store's generation counter every 20 ms and re-reads everything at least once a second
(level-triggered). For each desired pod it:
  admits it (hostPort conflicts on the node -> Failed/NodePorts, as the kubelet rejects),
  makes a sandbox, runs CNI ADD, starts the workload and pushes its start at once (runtime_events), taking as
  long as containerd does for the pause container, the pull and the container's start (model.containerd), and
  reports Running at PLEG's next relist after that (the server may listen a moment later, as on containerd);
  on a sandbox failure records FailedCreatePodSandBox and keeps the sandbox when its CNI DEL fails too
  (as containerd does), retries once at PLEG's next relist, then after the kubelet's back-off (constant
  `backoff` plus up to 50 % jitter, on the sync loop's tick: model.kubelet), each retry a SandboxChanged
  that must first tear the kept sandbox down; it keeps each failed attempt's time;
  on deletion stops the workload, runs CNI DEL and removes the sandbox, then keeps the pod Terminating (its
  container terminated) until the status manager's tick after the relists that find it reclaimed, or after the
  container GC's round when a relist came between the workload's exit and the sandbox's stop (model.kubelet).
Statuses are written the moment a transition happens. A new agent adopts the pods of a dead one:
their pause and workload processes are found again by pid and start time.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import random
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ...model import containerd, kubelet
from ...model.kubelet import KUBELET_BACKOFF
from ...model.pods import SANDBOX_CHANGED, SANDBOX_FAILED, pull_policy
from . import controllers, processes, records, runtime_events, sandbox, workloads
from .cni import CniError, PodNetwork, Runtime, pod_ip, port_mappings
from .events import EventRecorder
from .names import state_dir
from .nodes import NodeView
from .sandbox import Sandbox, SandboxError
from .state.store import Store, timestamp

log = logging.getLogger("kindlab.agent")
POLL = 0.02
RESYNC = 1.0
LIVENESS = 0.25
NODE_PORTS_REASON = "NodePorts"
#: The kubelet's (v1.20) admission failure for a hostPort taken on the node: the event's and the status's words.
NODE_PORTS_MESSAGE = "Predicate NodePorts failed"
RPC = "rpc error: code = Unknown desc = "
CNI_PER_NODE = 3
SANDBOX_CHANGED_MESSAGE = "Pod sandbox changed, it will be killed and re-created."


class Stage(StrEnum):
    """Where the agent is with a pod (persisted by value)."""

    NEW = "new"                      # seen, not yet admitted
    UNSCHEDULABLE = "unschedulable"  # no node fits (controllers.pick_node)
    REJECTED = "rejected"            # admission refused it: NodePorts
    SANDBOX = "sandbox"              # making its sandbox (and retrying after failures)
    IMAGE = "image"                  # the image cannot be had
    STARTING = "starting"            # the container runs; the kubelet sees it at PLEG's next relist
    RUNNING = "running"              # Running and Ready
    CRASH = "crash"                  # the container exited: CrashLoopBackOff
    DELETING = "deleting"            # stopping it
    TERMINATED = "terminated"        # stopped, sandbox removed: leaves the API at the kubelet's status sync


#: Stages whose container may be running: the agent watches them for liveness and readiness.
LIVE_STAGES = (Stage.RUNNING, Stage.STARTING, Stage.IMAGE, Stage.CRASH)


@dataclass
class PodState:
    """What the agent knows about one pod (persisted in its status file's `agent` part)."""

    key: str
    uid: str
    meta: dict[str, Any]
    spec: dict[str, Any]
    node: str | None
    stage: Stage = Stage.NEW
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    sandbox: Sandbox | None = None
    pod_ip: str | None = None
    workload: tuple[int, int] | None = None
    restarts: int = 0
    attempts: list[float] = field(default_factory=list)
    start_time: str | None = None
    started_at: str | None = None
    ready_since: str | None = None
    running_at: float | None = None
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    next_try: float = 0.0
    delete_retry: float = 0.0
    finished_at: str | None = None
    exit_code: int | None = None
    exit_seen_at: float = 0.0
    exit_seen: bool = False
    remove_at: float = 0.0
    busy: bool = False
    deleting: bool = False

    PERSISTED = ("stage", "phase", "reason", "message", "pod_ip", "restarts", "attempts", "start_time", "started_at",
                 "ready_since", "running_at", "waiting_reason", "waiting_message", "next_try", "node",
                 "finished_at", "exit_code", "exit_seen_at", "exit_seen", "remove_at")

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def label(self) -> str:
        return f"{self.meta.get('namespace', 'default')}/{self.name}"

    @property
    def container(self) -> dict[str, Any]:
        return self.spec["containers"][0]

    @property
    def active(self) -> bool:
        """Counted by the kubelet's admission: admitted, and not deleted with its stop already seen by a relist."""
        return self.stage not in (Stage.REJECTED, Stage.UNSCHEDULABLE) and not (
            self.stage == Stage.TERMINATED and self.exit_seen)

    def host_ports(self) -> list[tuple[str, int, str]]:
        return [(m["protocol"], m["hostPort"], m.get("hostIP", "")) for m in port_mappings(self.spec)]

    def internal(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.PERSISTED}
        out["sandbox"] = self.sandbox.to_record() if self.sandbox else None
        out["workload"] = list(self.workload) if self.workload else None
        return out

    def restore(self, data: dict[str, Any]) -> None:
        for k in self.PERSISTED:
            if k in data:
                setattr(self, k, data[k])
        self.stage = Stage(self.stage)
        self.sandbox = Sandbox.from_record(data.get("sandbox"))
        self.workload = tuple(data["workload"]) if data.get("workload") else None  # type: ignore[assignment]


def ports_conflict(a: list[tuple[str, int, str]], b: list[tuple[str, int, str]]) -> bool:
    """True when two pods ask for the same protocol and hostPort on overlapping host IPs."""
    wild = ("", "0.0.0.0", "::")
    return any(pa == pb and na == nb and (ia in wild or ib in wild or ia == ib)
               for pa, na, ia in a for pb, nb, ib in b)


class Agent:
    """The reconcile loop of one lab."""

    def __init__(self, lab_name: str):
        self.lab_name = lab_name
        self.store = Store(state_dir(lab_name))
        record = self.store.read_lab()
        if record is None:
            raise SystemExit(f"no lab {lab_name!r}")
        self.record = record
        self.views = {n["name"]: NodeView.from_record(n) for n in record["nodes"]}
        self.runtimes = {name: Runtime(v) for name, v in self.views.items()}
        # CNI calls run concurrently on a node, as containerd runs them (host-local locks its store,
        # bridge and portmap tolerate each other); a bound keeps 50 pods from forking 50 chains at once.
        self.node_locks = {name: threading.BoundedSemaphore(CNI_PER_NODE) for name in self.views}
        self.pods: dict[str, PodState] = {}
        self.lock = threading.RLock()
        self.events = EventRecorder(self.store)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pod")
        self.dirty = threading.Event()
        self.stopping = False
        # the kubelet's two clocks: the sync loop's ticker (due retries start on it) and PLEG's relist, which
        # runs a period after the previous relist finished, so it drifts against the ticker
        self.sync_origin = time.time()
        self.last_relist = self.sync_origin
        self.relist_at = self.sync_origin + random.random() * self.relist_period
        self.gc_origin = self.sync_origin   # the container GC's first round, at the kubelet's start

    @property
    def sync_period(self) -> float:
        return kubelet.scaled(kubelet.SYNC_PERIOD, self.backoff)

    @property
    def relist_period(self) -> float:
        return kubelet.scaled(kubelet.RELIST_PERIOD, self.backoff)

    def next_retry(self) -> float:
        """When a failed pod is tried again: after the back-off, on the sync loop's next tick."""
        return kubelet.next_tick(time.time() + self.retry_delay(), self.sync_origin, self.sync_period)

    def next_relist(self, after: float) -> float:
        """PLEG's first relist at or after `after` (a time not in the future): the last one, or the next.
        PLEG's clock is brought up to date first, so a relist that was due by now counts as run."""
        self.relist(time.time())
        return self.last_relist if after <= self.last_relist else self.relist_at

    def relist(self, now: float) -> None:
        """Advance PLEG's clock: each relist a period after the previous one, plus the relist's own time."""
        while now >= self.relist_at:
            self.last_relist = self.relist_at
            self.relist_at += self.relist_period * (1 + kubelet.RELIST_TIME * random.random())

    @property
    def backoff(self) -> float:
        return float(self.record.get("backoff", KUBELET_BACKOFF))

    def retry_delay(self) -> float:
        """The kubelet's pod worker back-off (model.kubelet), with the lab's period."""
        return kubelet.retry_delay(self.backoff)

    def runtime_step(self, seconds: float) -> None:
        """Take as long as containerd takes for a step the model's runtime does at once (model.containerd)."""
        time.sleep(kubelet.scaled(seconds, self.backoff))

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        held = self.store.hold_agent_lock()
        if held is None:
            log.info("another agent runs for lab %s", self.lab_name)
            return 0
        (self.store.root / "agent.pid").write_text(str(os.getpid()))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        log.info("agent for lab %s started (backoff %.3gs)", self.lab_name, self.backoff)
        self.adopt()
        generation, last_sync, last_live = None, 0.0, 0.0
        while not self.stopping:
            now = time.monotonic()
            current = self.store.generation()
            if current != generation or self.dirty.is_set() or now - last_sync >= RESYNC:
                self.dirty.clear()
                if current != generation:
                    self.record = self.store.read_lab() or self.record
                generation, last_sync = current, now
                self.reconcile()
            self.tick()
            if now - last_live >= LIVENESS:
                last_live = now
                self.liveness()
                processes.reap()
            self.dirty.wait(POLL)
        # work already running finishes (and records what it started) before the agent exits; teardown
        # waits for that before it kills what the ledger names
        self.pool.shutdown(wait=True, cancel_futures=True)
        return 0

    def submit(self, pod: PodState, work) -> None:
        """Run `work(pod)` on a pool thread; one piece of work per pod at a time."""
        pod.busy = True

        def wrapped() -> None:
            try:
                work(pod)
            except Exception as exc:   # a bug must not stop the agent: report it on the pod, retry later
                log.exception("pod %s: %s failed", pod.label, getattr(work, "__name__", work))
                if pod.deleting:
                    pod.deleting, pod.delete_retry = False, time.time() + self.retry_delay()
                else:
                    self.sandbox_failed(pod, f"{type(exc).__name__}: {exc}")
            finally:
                pod.busy = False
                self.dirty.set()
        self.pool.submit(wrapped)

    def reconcile(self) -> None:
        """Compare desired pods with what runs; start whatever work is due."""
        controllers.reconcile_deployments(self.store)
        desired = self.store.desired_pods()
        with self.lock:
            for key, pod in list(self.pods.items()):
                doc = desired.get(key)
                gone = doc is None or doc["metadata"]["uid"] != pod.uid
                due = time.time() >= pod.delete_retry
                if (gone or doc["metadata"].get("deletionTimestamp")) and not pod.deleting and not pod.busy and due:
                    pod.deleting, pod.stage = True, Stage.DELETING
                    self.submit(pod, self.kill_pod)
            order = sorted(desired.items(), key=lambda kv: kv[1]["metadata"].get("annotations", {})
                           .get("kindlab.io/created-at", kv[1]["metadata"].get("creationTimestamp", "")))
            for key, doc in order:
                if key in self.pods:
                    continue
                if doc["metadata"].get("deletionTimestamp"):   # never started: nothing to stop
                    self.store.remove_status(key)
                    self.store.remove_desired(key, doc["metadata"]["uid"])
                    continue
                pod = PodState(key=key, uid=doc["metadata"]["uid"], meta=doc["metadata"], spec=doc["spec"],
                              node=doc["spec"].get("nodeName"))
                self.pods[key] = pod
                self.admit(pod)
            for pod in self.pods.values():
                if pod.stage == Stage.UNSCHEDULABLE and not pod.busy:
                    self.admit(pod, again=True)

    def admit(self, pod: PodState, again: bool = False) -> None:
        """Schedule (if needed) and admit a new pod, as the scheduler and the kubelet would."""
        if pod.node is None:
            node, why = controllers.pick_node(pod, self.views, self.pods.values(), ports_conflict)
            if node is None:
                if not again or pod.message != why:
                    pod.stage, pod.message = Stage.UNSCHEDULABLE, why
                    self.events.record(pod.meta, None, "Warning", "FailedScheduling", why, "default-scheduler")
                    self.write(pod)
                return
            if not controllers.bind(self.store, pod.key, pod.uid, node):
                return
            pod.node = node
            pod.spec = {**pod.spec, "nodeName": node}
            self.events.record(pod.meta, None, "Normal", "Scheduled",
                               f"Successfully assigned {pod.label} to {node}", "default-scheduler")
        pod.start_time = timestamp()
        mine = pod.host_ports()
        if mine and any(o is not pod and o.node == pod.node and o.active
                        and ports_conflict(mine, o.host_ports()) for o in self.pods.values()):
            pod.stage, pod.phase, pod.reason = Stage.REJECTED, "Failed", NODE_PORTS_REASON
            pod.message = f"Pod {NODE_PORTS_MESSAGE}"
            self.events.record(pod.meta, pod.node, "Warning", NODE_PORTS_REASON, NODE_PORTS_MESSAGE)
            self.write(pod)
            return
        # the first sandbox attempt once the pod's volumes are mounted (tick starts it when due)
        pod.stage, pod.next_try = Stage.SANDBOX, time.time() + kubelet.volumes_ready_after(self.backoff)
        self.write(pod)

    def tick(self) -> None:
        """Retries that are due; started workloads the relist sees, or that ended."""
        now = time.time()
        with self.lock:
            for pod in list(self.pods.values()):
                if pod.stage == Stage.TERMINATED:
                    if now >= pod.remove_at:
                        self.forget(pod)
                    elif not pod.exit_seen and now >= pod.exit_seen_at:
                        pod.exit_seen = True    # the relist saw the container stop: its status says so now
                        self.write(pod)
                    continue
                if pod.busy or pod.deleting:
                    continue
                if pod.stage in (Stage.SANDBOX, Stage.IMAGE, Stage.CRASH) and pod.next_try and now >= pod.next_try:
                    pod.next_try = 0.0
                    self.submit(pod, self.create_pod if pod.stage == Stage.SANDBOX else self.start_container)
                elif pod.stage == Stage.STARTING and pod.workload:
                    if not processes.alive(*pod.workload):
                        self.container_exited(pod)
                    elif now >= self.next_relist(pod.running_at or now):
                        self.became_ready(pod)   # the kubelet sees the start at PLEG's next relist

    def liveness(self) -> None:
        """Sandboxes and workloads of running pods that died."""
        with self.lock:
            for pod in list(self.pods.values()):
                if pod.busy or pod.deleting or pod.stage not in LIVE_STAGES:
                    continue
                if pod.sandbox is not None and not pod.sandbox.alive():
                    self.events.record(pod.meta, pod.node, "Normal", "SandboxChanged",
                                       "Pod sandbox changed, it will be killed and re-created.")
                    self.submit(pod, self.recreate_sandbox)
                elif pod.stage == Stage.RUNNING and pod.workload and not processes.alive(*pod.workload):
                    self.container_exited(pod)

    # -- pod work (on pool threads) ---------------------------------------------------------------
    def create_pod(self, pod: PodState) -> None:
        """RunPodSandbox (sandbox + CNI ADD), then start the container; first, kill a failed sandbox kept."""
        if pod.sandbox is not None and not self.kill_failed_sandbox(pod):
            return
        view = self.views[pod.node]
        hosts, resolv = self.pod_files(pod)
        began = time.monotonic()
        try:
            sb = sandbox.create(view, pod.name, pod.label, hosts, resolv)
        except SandboxError as exc:
            self.sandbox_failed(pod, str(exc))
            return
        made = time.monotonic()
        net = self.pod_network(pod, sb)
        try:
            with self.node_locks[pod.node]:
                locked = time.monotonic()
                result = self.runtimes[pod.node].setup(net)
                log.info("pod %s: sandbox %.0f ms, CNI ADD %.0f ms (waited %.0f ms for the node)", pod.label,
                         (made - began) * 1000, (time.monotonic() - locked) * 1000, (locked - made) * 1000)
        except CniError as exc:
            try:   # containerd tears the half-made network down; when that fails too, it keeps the sandbox
                with self.node_locks[pod.node]:
                    self.runtimes[pod.node].teardown(net)
                kept = None
            except CniError as cleanup:
                log.info("pod %s: %s; the sandbox is kept", pod.label, cleanup)
                kept = sb
            if kept is None:
                sandbox.destroy(sb)
            with self.lock:
                pod.sandbox = kept
            self.sandbox_failed(pod, str(exc), kept=kept is not None)
            return
        with self.lock:
            pod.sandbox, pod.pod_ip = sb, pod_ip(result)
            self.write(pod)
        self.pod_files(pod)
        self.runtime_step(containerd.PAUSE_START)
        self.start_container(pod)

    def kill_failed_sandbox(self, pod: PodState) -> bool:
        """The kubelet's retry of a pod whose failed sandbox was kept: SandboxChanged, then StopPodSandbox (its
        CNI DEL). False when that fails (an attempt failed: the kubelet logs it, writes no event, backs off)."""
        self.events.record(pod.meta, pod.node, "Normal", SANDBOX_CHANGED, SANDBOX_CHANGED_MESSAGE)
        try:
            with self.node_locks[pod.node]:
                self.runtimes[pod.node].teardown(self.pod_network(pod, pod.sandbox))
        except CniError as exc:
            log.info("pod %s: StopPodSandbox failed: %s", pod.label, exc)
            with self.lock:
                pod.attempts.append(time.time())
                pod.next_try = self.next_retry()
                self.write(pod)
            return False
        sandbox.destroy(pod.sandbox)
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
        if pull_policy(pod.container) == "Always":
            self.events.record(pod.meta, pod.node, "Normal", "Pulling", f'Pulling image "{image}"')
            self.runtime_step(containerd.PULL)
            self.events.record(pod.meta, pod.node, "Normal", "Pulled",
                               f'Successfully pulled image "{image}" in '
                               f'{workloads.go_duration(time.perf_counter() - resolving)}')
        else:
            self.events.record(pod.meta, pod.node, "Normal", "Pulled",
                               f'Container image "{image}" already present on machine')
        env = workloads.environment(pod.name, pod.container, self.record["service_subnet"])
        self.runtime_step(containerd.CREATE)
        self.events.record(pod.meta, pod.node, "Normal", "Created", f"Created container {pod.container['name']}")
        log_file = self.pod_dir(pod) / "container.log"
        self.runtime_step(containerd.START)
        workload = workloads.start(self.views[pod.node], pod.sandbox, env, log_file, pod.label)
        with self.lock:
            pod.workload, pod.stage, pod.started_at = workload, Stage.STARTING, timestamp()
            self.container_started(pod)
            self.write(pod)
        self.events.record(pod.meta, pod.node, "Normal", "Started", f"Started container {pod.container['name']}")

    def recreate_sandbox(self, pod: PodState) -> None:
        """The sandbox died: stop what is left, CNI DEL, and make the pod again."""
        self.stop_workload(pod)
        self.network_down(pod)
        with self.lock:
            pod.sandbox, pod.pod_ip, pod.workload = None, None, None
            pod.stage, pod.phase, pod.waiting_reason, pod.ready_since, pod.running_at = (
                Stage.SANDBOX, "Pending", "ContainerCreating", None, None)
            pod.restarts += 1
            self.write(pod)
        self.create_pod(pod)

    def kill_pod(self, pod: PodState) -> None:
        """Delete: stop the workload, CNI DEL, remove the sandbox; the pod leaves the API once the kubelet finds
        that done (`terminated`), or at once when it has left it already."""
        if pod.workload:
            self.events.record(pod.meta, pod.node, "Normal", "Killing", f"Stopping container {pod.container['name']}")
        graceful = self.stop_workload(pod)
        exited = time.time()
        with self.lock:
            first_relist = self.next_relist(exited)   # the relist that will see the container exited
        if not self.network_down(pod):
            with self.lock:   # retried by a reconcile after the back-off
                pod.deleting, pod.stage, pod.delete_retry = False, Stage.DELETING, time.time() + self.retry_delay()
            return
        sandbox.destroy(pod.sandbox)
        stopped = time.time()
        shutil.rmtree(self.pod_dir(pod), ignore_errors=True)
        doc = self.store.desired_pod(pod.key)
        if doc is None or doc["metadata"]["uid"] != pod.uid:
            self.forget(pod)
        else:
            self.terminated(pod, graceful, exited, first_relist, stopped)

    def terminated(self, pod: PodState, graceful: bool | None, exited: float, first_relist: float,
                   stopped: float) -> None:
        """Stopped and reclaimed: Terminating until the status manager's tick after the relists that find it so;
        its status changes at the first relist after the kill (until then, as it was): the container terminated
        or, when the relist that first saw it exited came before the sandbox's stop (the sandbox then waits for
        the container GC), waiting, as the kubelet shows a container it has removed."""
        with self.lock:
            to_gc = graceful is not None and kubelet.left_to_gc(first_relist, exited, stopped, self.backoff)
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

    def forget(self, pod: PodState) -> None:
        """The pod leaves the API: its status and desired document go."""
        with self.lock:
            self.pods.pop(pod.key, None)
            self.store.remove_status(pod.key)
            self.store.remove_desired(pod.key, pod.uid)

    def stop_workload(self, pod: PodState) -> bool | None:
        """Stop the pod's container: True when it exited on SIGTERM, False on SIGKILL, None when it had none."""
        return processes.terminate(*pod.workload) if pod.workload else None

    def network_down(self, pod: PodState) -> bool:
        """CNI DEL for the pod's sandbox; False (and an event) when it fails."""
        if pod.sandbox is None:
            return True
        try:
            with self.node_locks[pod.node]:
                self.runtimes[pod.node].teardown(self.pod_network(pod, pod.sandbox))
        except CniError as exc:
            name = f"{pod.name}_{pod.meta.get('namespace', 'default')}({pod.uid})"
            self.events.record(pod.meta, pod.node, "Warning", "FailedKillPod",
                               f'error killing pod: failed to "KillPodSandbox" for "{name}" with KillPodSandboxError: '
                               f'"{RPC}{exc}"')
            return False
        return True

    # -- transitions --------------------------------------------------------------------------------
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
        pod.running_at = time.time()
        runtime_events.append(self.store.root, container_id(pod), pod.running_at)

    def became_ready(self, pod: PodState) -> None:
        """PLEG's relist saw the start: Running, and Ready (the pod has no readiness probe)."""
        pod.stage, pod.phase = Stage.RUNNING, "Running"
        pod.waiting_reason = pod.waiting_message = None
        pod.ready_since = timestamp()
        self.write(pod)

    def container_exited(self, pod: PodState) -> None:
        pod.restarts += 1
        pod.stage, pod.waiting_reason, pod.ready_since, pod.running_at = Stage.CRASH, "CrashLoopBackOff", None, None
        pod.waiting_message = f"back-off restarting failed container {pod.container['name']} in pod {pod.label}"
        pod.workload = None
        pod.next_try = self.next_retry()
        self.events.record(pod.meta, pod.node, "Warning", "BackOff",
                           f"Back-off restarting failed container {pod.container['name']} in pod {pod.label}")
        self.write(pod)

    # -- adoption -----------------------------------------------------------------------------------
    def adopt(self) -> None:
        """Take over the pods of a previous agent: keep what still runs, clean up what is stale."""
        desired = self.store.desired_pods()
        for key, data in self.store.statuses().items():
            doc = desired.get(key)
            internal = data.get("agent") or {}
            if doc is None or doc["metadata"]["uid"] != data.get("uid"):
                pod = PodState(key=key, uid=data.get("uid", ""), meta={"name": key}, spec={}, node=None)
                pod.restore(internal)
                if pod.workload:
                    processes.terminate(*pod.workload)
                sandbox.destroy(pod.sandbox)
                self.store.remove_status(key)
                continue
            pod = PodState(key=key, uid=doc["metadata"]["uid"], meta=doc["metadata"], spec=doc["spec"],
                          node=doc["spec"].get("nodeName"))
            pod.restore(internal)
            if pod.node not in self.views:
                continue
            self.pods[key] = pod
            if pod.stage in (Stage.NEW, Stage.UNSCHEDULABLE):
                del self.pods[key]       # admitted again by reconcile
            elif pod.stage == Stage.TERMINATED:
                pod.deleting = True      # stopped already: it only waits for its removal
            elif pod.stage == Stage.SANDBOX:
                pod.next_try = min(pod.next_try or time.time(), time.time() + self.backoff)
            log.info("adopted pod %s (%s)", pod.label, pod.stage)
        self.sweep_orphans()

    def sweep_orphans(self) -> None:
        """Stop sandboxes and workloads no pod owns (a dead agent's work in flight), and DEL their networks."""
        sandboxes = {pod.sandbox.pid for pod in self.pods.values() if pod.sandbox}
        running = {pod.workload[0] for pod in self.pods.values() if pod.workload}
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
        processes.kill(orphans)
        known = {pod.sandbox.id for pod in self.pods.values() if pod.sandbox}
        for node, runtime in self.runtimes.items():
            for net in runtime.orphans(known):
                try:
                    runtime.teardown(net)
                    log.info("node %s: removed the network of orphaned sandbox %s (pod %s/%s)", node,
                             net.sandbox_id[:12], net.pod_namespace, net.pod_name)
                except CniError as exc:
                    log.info("node %s: %s", node, exc)

    # -- helpers ---------------------------------------------------------------------------------------
    def pod_network(self, pod: PodState, sb: Sandbox) -> PodNetwork:
        return PodNetwork(sandbox_id=sb.id, netns=sb.netns, pod_name=pod.name,
                          pod_namespace=pod.meta.get("namespace", "default"), pod_uid=pod.uid,
                          port_mappings=port_mappings(pod.spec))

    def pod_dir(self, pod: PodState) -> Path:
        """The pod's files, in its node's own folder (which the node sees as /run/kindlab/node)."""
        view = self.views.get(pod.node) if pod.node else None
        base = Path(view.state) if view else self.store.root
        return base / "pods" / f"{pod.key}-{pod.uid[:8]}"

    def pod_files(self, pod: PodState) -> tuple[Path, Path]:
        """(Re)write the pod's hosts and resolv.conf, with its IP once it has one."""
        return workloads.write_pod_files(self.pod_dir(pod), pod.name, pod.meta.get("namespace", "default"), pod.pod_ip,
                                         self.record["service_subnet"])

    def write(self, pod: PodState) -> None:
        """Write the pod's status now."""
        with self.lock:
            if pod.key not in self.pods or self.pods[pod.key] is not pod:
                return
            view = self.views.get(pod.node) if pod.node else None
            doc = {"uid": pod.uid, "nodeName": pod.node, "status": v1_status(pod, view.ip if view else None),
                   "annotations": annotations(pod), "agent": pod.internal()}
            self.store.put_status(pod.key, doc)


def container_id(pod: PodState) -> str | None:
    """The id of the pod's container (its workload's pid), as its status names it."""
    return f"kindlab://{pod.workload[0]}" if pod.workload else None


def annotations(pod: PodState) -> dict[str, str]:
    """The agent's record of the pod, as annotations on its status (records.py)."""
    return records.annotations(pod.attempts, pod.running_at, pod.sandbox.id if pod.sandbox else None,
                               container_id(pod) if pod.running_at is not None else None)


def v1_status(pod: PodState, host_ip: str | None) -> dict[str, Any]:
    """The pod's v1 status."""
    created = pod.meta.get("creationTimestamp")
    if pod.stage == Stage.UNSCHEDULABLE:
        return {"phase": "Pending", "qosClass": "BestEffort",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": pod.message, "lastTransitionTime": created}]}
    if pod.stage == Stage.REJECTED:
        return {"phase": "Failed", "reason": pod.reason, "message": pod.message, "qosClass": "BestEffort",
                "startTime": pod.start_time}
    ready = pod.stage == Stage.RUNNING
    c = pod.container
    # until PLEG's relist sees a new container the kubelet's status is the one before it started
    if pod.stage == Stage.RUNNING:
        state: dict[str, Any] = {"running": {"startedAt": pod.started_at}}
    elif pod.stage == Stage.TERMINATED and pod.exit_seen and pod.finished_at:
        state = {"terminated": {"containerID": container_id(pod), "exitCode": pod.exit_code,
                                "reason": "Completed" if pod.exit_code == 0 else "Error",
                                "startedAt": pod.started_at, "finishedAt": pod.finished_at}}
    else:
        state = {"waiting": {"reason": pod.waiting_reason or "ContainerCreating",
                             **({"message": pod.waiting_message} if pod.waiting_message else {})}}
    not_ready = {} if ready else {"reason": "ContainersNotReady",
                                  "message": f"containers with unready status: [{c['name']}]"}
    since = pod.ready_since or pod.start_time
    status: dict[str, Any] = {
        "phase": pod.phase,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": pod.start_time},
            {"type": "Ready", "status": str(ready), "lastTransitionTime": since, **not_ready},
            {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": since, **not_ready},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
        ],
        "hostIP": host_ip, "startTime": pod.start_time, "qosClass": "BestEffort",
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                               "restartCount": pod.restarts, "started": pod.stage == Stage.RUNNING,
                               "state": state,
                               **({"containerID": container_id(pod)} if pod.stage == Stage.RUNNING else {})}],
    }
    if host_ip:
        status["hostIPs"] = [{"ip": host_ip}]
    if pod.pod_ip:
        status["podIP"], status["podIPs"] = pod.pod_ip, [{"ip": pod.pod_ip}]
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].startswith("kindlab-lab="):
        print("usage: python -m kindlab.backends.netns.agent kindlab-lab=<lab>", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faulthandler.register(signal.SIGUSR1)   # kill -USR1 <agent> prints every thread's stack to agent.log
    return Agent(args[0].split("=", 1)[1]).run()


if __name__ == "__main__":
    sys.exit(main())
