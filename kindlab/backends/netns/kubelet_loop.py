"""The node agent's kubelet: its sync loop, admission, back-off clocks, PLEG's relist and the pod statuses.

`Agent` is one lab's reconcile loop (agent.py runs it). Its loop polls the store's generation counter every
20 ms and re-reads everything at least once a second (level-triggered); pod work runs on a pool thread
(pod_worker, one piece of work per pod at a time), the sandboxes, CNI calls and processes are the container
runtime's (container_runtime), and each pod's status is written the moment a transition happens (pod_status).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...model import kubelet
from ...model.kubelet import KUBELET_BACKOFF
from ...model.pods import rfc3339_nano
from . import controllers
from .container_runtime import ContainerRuntime
from .events import EventRecorder
from .names import state_dir
from .nodes import NodeView
from .pod_status import LIVE_STAGES, PodState, Stage, agent_annotations, ports_conflict, v1_status
from .pod_worker import PodWorker
from .state.store import Store, timestamp

log = logging.getLogger("kindlab.agent")
POLL = 0.02
RESYNC = 1.0
LIVENESS = 0.25
NODE_PORTS_REASON = "NodePorts"
#: The kubelet's (v1.20) admission failure for a hostPort taken on the node: the event's and the status's words.
NODE_PORTS_MESSAGE = "Predicate NodePorts failed"


class Agent(PodWorker):
    """The reconcile loop of one lab."""

    def __init__(self, lab_name: str):
        self.lab_name = lab_name
        self.store = Store(state_dir(lab_name))
        record = self.store.read_lab()
        if record is None:
            raise SystemExit(f"no lab {lab_name!r}")
        self.record = record
        self.views = {n["name"]: NodeView.from_record(n) for n in record["nodes"]}
        self.runtime = ContainerRuntime(lab_name, self.views, lambda: self.backoff, record["service_subnet"])
        self.pods: dict[str, PodState] = {}
        self.lock = threading.RLock()
        self.events = EventRecorder(self.store, lambda: self.backoff)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pod")
        self.dirty = threading.Event()
        self.stopping = False
        # the kubelet's two clocks: the sync loop's ticker (due retries start on it) and PLEG's relist, which
        # runs a period after the previous relist finished, so it drifts against the ticker
        self.sync_origin = time.time()
        self.last_relist = self.sync_origin
        self.relist_at = self.sync_origin + random.random() * self.relist_period
        self.gc_origin = self.sync_origin   # the container GC's first round, at the kubelet's start

    # -- the clocks and the back-off -----------------------------------------------------------------
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
        self.loop()
        # work already running finishes (and records what it started) before the agent exits; teardown
        # waits for that before it kills what the ledger names
        self.pool.shutdown(wait=True, cancel_futures=True)
        return 0

    def loop(self) -> None:
        """Reconcile on every change of the store (and once a second), tick every turn, check liveness."""
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
                self.runtime.reap()
            self.dirty.wait(POLL)

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
            self.start_deletions(desired)
            self.add_new(desired)
            for pod in self.pods.values():
                if pod.stage == Stage.UNSCHEDULABLE and not pod.busy:
                    self.admit(pod, again=True)

    def start_deletions(self, desired: dict[str, dict[str, Any]]) -> None:
        """Kill the pods deleted (or gone) from the API, unless busy or waiting for a retry of their kill."""
        for key, pod in list(self.pods.items()):
            doc = desired.get(key)
            deleted = (doc is None or doc["metadata"]["uid"] != pod.uid
                       or bool(doc["metadata"].get("deletionTimestamp")))
            due = time.time() >= pod.delete_retry
            if deleted and not pod.deleting and not pod.busy and due:
                pod.deleting, pod.stage = True, Stage.DELETING
                self.submit(pod, self.kill_pod)

    def add_new(self, desired: dict[str, dict[str, Any]]) -> None:
        """Admit the desired pods the agent does not know yet, oldest first."""
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
                           node=doc["spec"].get("nodeName"), seen=rfc3339_nano(time.time_ns()))
            self.pods[key] = pod
            self.admit(pod)

    def admit(self, pod: PodState, again: bool = False) -> None:
        """Schedule (if needed) and admit a new pod, as the scheduler and the kubelet would."""
        if pod.node is None and not self.schedule(pod, again):
            return
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

    def schedule(self, pod: PodState, again: bool) -> bool:
        """Bind a pod without a node to one, as the scheduler would; False when none fits (or the bind failed)."""
        node, why = controllers.pick_node(pod, self.views, self.pods.values(), ports_conflict)
        if node is None:
            if not again or pod.message != why:
                pod.stage, pod.message = Stage.UNSCHEDULABLE, why
                self.events.record(pod.meta, None, "Warning", "FailedScheduling", why, "default-scheduler")
                self.write(pod)
            return False
        if not controllers.bind(self.store, pod.key, pod.uid, node):
            return False
        pod.node = node
        pod.spec = {**pod.spec, "nodeName": node}
        self.events.record(pod.meta, None, "Normal", "Scheduled",
                           f"Successfully assigned {pod.label} to {node}", "default-scheduler")
        return True

    def tick(self) -> None:
        """Retries that are due; started workloads the relist sees, or that ended."""
        now = time.time()
        with self.lock:
            for pod in list(self.pods.values()):
                if pod.stage == Stage.TERMINATED:
                    self.tick_terminated(pod, now)
                    continue
                if pod.busy or pod.deleting:
                    continue
                if pod.stage in (Stage.SANDBOX, Stage.IMAGE, Stage.CRASH) and pod.next_try and now >= pod.next_try:
                    pod.next_try = 0.0
                    self.submit(pod, self.create_pod if pod.stage == Stage.SANDBOX else self.start_container)
                elif pod.stage == Stage.STARTING and pod.workload:
                    if not self.runtime.running(pod.workload):
                        self.container_exited(pod)
                    elif now >= self.next_relist(pod.running_at or now):
                        self.became_ready(pod)   # the kubelet sees the start at PLEG's next relist

    def tick_terminated(self, pod: PodState, now: float) -> None:
        """A stopped pod: its exit shows once a relist saw it; it leaves the API at its time."""
        if now >= pod.remove_at:
            self.forget(pod)
        elif not pod.exit_seen and now >= pod.exit_seen_at:
            pod.exit_seen = True    # the relist saw the container stop: its status says so now
            self.write(pod)

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
                elif pod.stage == Stage.RUNNING and pod.workload and not self.runtime.running(pod.workload):
                    self.container_exited(pod)

    # -- transitions the loop makes --------------------------------------------------------------------
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
                self.drop_stale(key, data.get("uid", ""), internal)
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
        self.runtime.sweep_orphans(list(self.pods.values()))

    def drop_stale(self, key: str, uid: str, internal: dict[str, Any]) -> None:
        """A status whose pod is gone from the API: stop its workload and sandbox, remove the status."""
        pod = PodState(key=key, uid=uid, meta={"name": key}, spec={}, node=None)
        pod.restore(internal)
        self.runtime.stop_container(pod.workload)
        self.runtime.remove_sandbox(pod.sandbox)
        self.store.remove_status(key)

    # -- the pod's status ------------------------------------------------------------------------------
    def forget(self, pod: PodState) -> None:
        """The pod leaves the API: its status and desired document go."""
        with self.lock:
            self.pods.pop(pod.key, None)
            self.store.remove_status(pod.key)
            self.store.remove_desired(pod.key, pod.uid)

    def write(self, pod: PodState) -> None:
        """Write the pod's status now."""
        with self.lock:
            if pod.key not in self.pods or self.pods[pod.key] is not pod:
                return
            view = self.views.get(pod.node) if pod.node else None
            doc = {"uid": pod.uid, "nodeName": pod.node, "status": v1_status(pod, view.ip if view else None),
                   "annotations": agent_annotations(pod), "agent": pod.internal()}
            self.store.put_status(pod.key, doc)
