"""The node agent: the kubelet's part, one supervisor process per lab (for all its nodes).

Started detached by the lab (`python -m kindlab.backends.netns.agent kindlab-lab=<lab>`), it holds
the store's agent.lock for its life and outlives the process that started it. Its loop polls the
store's generation counter every 20 ms and re-reads everything at least once a second
(level-triggered). For each desired pod it:
  admits it (hostPort conflicts on the node -> Failed/NodePorts, as the kubelet rejects),
  makes a sandbox, runs CNI ADD, starts the workload, and reports Running once it listens;
  on a sandbox failure records FailedCreatePodSandBox and retries after the kubelet's back-off
  (constant `backoff` plus up to 50 % jitter), keeping each failed attempt's time;
  on deletion stops the workload, runs CNI DEL and removes the sandbox.
Statuses are written the moment a transition happens. A new agent adopts the pods of a dead one:
their pause and workload processes are found again by pid and start time.
"""

from __future__ import annotations

import faulthandler
import logging
import os
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

from ...model import kubelet
from ...model.kubelet import KUBELET_BACKOFF
from ...model.pods import SANDBOX_FAILED
from . import controllers, processes, records, sandbox, workloads
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
NODE_PORTS_MESSAGE = "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
RPC = "rpc error: code = Unknown desc = "
CNI_PER_NODE = 3


class Stage(StrEnum):
    """Where the agent is with a pod (persisted by value)."""

    NEW = "new"                      # seen, not yet admitted
    UNSCHEDULABLE = "unschedulable"  # no node fits (controllers.pick_node)
    REJECTED = "rejected"            # admission refused it: NodePorts
    SANDBOX = "sandbox"              # making its sandbox (and retrying after failures)
    IMAGE = "image"                  # the image cannot be had
    STARTING = "starting"            # the container runs, not yet listening
    RUNNING = "running"              # Running and Ready
    CRASH = "crash"                  # the container exited: CrashLoopBackOff
    DELETING = "deleting"            # stopping it


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
    busy: bool = False
    deleting: bool = False

    PERSISTED = ("stage", "phase", "reason", "message", "pod_ip", "restarts", "attempts", "start_time", "started_at",
                 "ready_since", "running_at", "waiting_reason", "waiting_message", "next_try", "node")

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
    def port(self) -> int:
        env = {e["name"]: e.get("value") for e in self.container.get("env", []) or []}
        try:
            return int(env.get("PORT") or workloads.ECHO_ENV["PORT"])
        except ValueError:
            return int(workloads.ECHO_ENV["PORT"])

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

    def __init__(self, lab: str):
        self.lab = lab
        self.store = Store(state_dir(lab))
        record = self.store.read_lab()
        if record is None:
            raise SystemExit(f"no lab {lab!r}")
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
            log.info("another agent runs for lab %s", self.lab)
            return 0
        (self.store.root / "agent.pid").write_text(str(os.getpid()))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        log.info("agent for lab %s started (backoff %.3gs)", self.lab, self.backoff)
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
        self.pool.shutdown(wait=False, cancel_futures=True)
        return 0

    def submit(self, st: PodState, work) -> None:
        """Run `work(st)` on a pool thread; one piece of work per pod at a time."""
        st.busy = True

        def wrapped() -> None:
            try:
                work(st)
            except Exception as exc:   # a bug must not stop the agent: report it on the pod, retry later
                log.exception("pod %s: %s failed", st.label, getattr(work, "__name__", work))
                if st.deleting:
                    st.deleting, st.delete_retry = False, time.time() + self.retry_delay()
                else:
                    self.sandbox_failed(st, f"{type(exc).__name__}: {exc}")
            finally:
                st.busy = False
                self.dirty.set()
        self.pool.submit(wrapped)

    def reconcile(self) -> None:
        """Compare desired pods with what runs; start whatever work is due."""
        controllers.reconcile_deployments(self.store)
        desired = self.store.desired_pods()
        with self.lock:
            for key, st in list(self.pods.items()):
                doc = desired.get(key)
                gone = doc is None or doc["metadata"]["uid"] != st.uid
                due = time.time() >= st.delete_retry
                if (gone or doc["metadata"].get("deletionTimestamp")) and not st.deleting and not st.busy and due:
                    st.deleting, st.stage = True, Stage.DELETING
                    self.submit(st, self.kill_pod)
            order = sorted(desired.items(), key=lambda kv: kv[1]["metadata"].get("annotations", {})
                           .get("kindlab.io/created-at", kv[1]["metadata"].get("creationTimestamp", "")))
            for key, doc in order:
                if key in self.pods:
                    continue
                if doc["metadata"].get("deletionTimestamp"):   # never started: nothing to stop
                    self.store.remove_status(key)
                    self.store.remove_desired(key, doc["metadata"]["uid"])
                    continue
                st = PodState(key=key, uid=doc["metadata"]["uid"], meta=doc["metadata"], spec=doc["spec"],
                              node=doc["spec"].get("nodeName"))
                self.pods[key] = st
                self.admit(st)
            for st in self.pods.values():
                if st.stage == Stage.UNSCHEDULABLE and not st.busy:
                    self.admit(st, again=True)

    def admit(self, st: PodState, again: bool = False) -> None:
        """Schedule (if needed) and admit a new pod, as the scheduler and the kubelet would."""
        if st.node is None:
            node, why = controllers.pick_node(st, self.views, self.pods.values(), ports_conflict)
            if node is None:
                if not again or st.message != why:
                    st.stage, st.message = Stage.UNSCHEDULABLE, why
                    self.events.record(st.meta, None, "Warning", "FailedScheduling", why, "default-scheduler")
                    self.write(st)
                return
            if not controllers.bind(self.store, st.key, st.uid, node):
                return
            st.node = node
            st.spec = {**st.spec, "nodeName": node}
            self.events.record(st.meta, None, "Normal", "Scheduled",
                               f"Successfully assigned {st.label} to {node}", "default-scheduler")
        st.start_time = timestamp()
        mine = st.host_ports()
        if mine and any(o is not st and o.node == st.node and o.stage not in (Stage.REJECTED, Stage.UNSCHEDULABLE)
                        and ports_conflict(mine, o.host_ports()) for o in self.pods.values()):
            st.stage, st.phase, st.reason = Stage.REJECTED, "Failed", NODE_PORTS_REASON
            st.message = f"Pod was rejected: {NODE_PORTS_MESSAGE}"
            self.events.record(st.meta, st.node, "Warning", NODE_PORTS_REASON, NODE_PORTS_MESSAGE)
            self.write(st)
            return
        st.stage, st.next_try = Stage.SANDBOX, 0.0
        self.write(st)
        self.submit(st, self.create_pod)

    def tick(self) -> None:
        """Retries that are due; workloads that started listening or ended."""
        now = time.time()
        with self.lock:
            for st in list(self.pods.values()):
                if st.busy or st.deleting:
                    continue
                if st.stage in (Stage.SANDBOX, Stage.IMAGE, Stage.CRASH) and st.next_try and now >= st.next_try:
                    st.next_try = 0.0
                    self.submit(st, self.create_pod if st.stage == Stage.SANDBOX else self.start_container)
                elif st.stage == Stage.STARTING and st.workload:
                    pid, start = st.workload
                    if workloads.listening(pid, st.port):
                        self.became_ready(st)
                    elif not processes.alive(pid, start):
                        self.container_exited(st)

    def liveness(self) -> None:
        """Sandboxes and workloads of running pods that died."""
        with self.lock:
            for st in list(self.pods.values()):
                if st.busy or st.deleting or st.stage not in (Stage.RUNNING, Stage.STARTING, Stage.IMAGE, Stage.CRASH):
                    continue
                if st.sandbox is not None and not st.sandbox.alive():
                    self.events.record(st.meta, st.node, "Normal", "SandboxChanged",
                                       "Pod sandbox changed, it will be killed and re-created.")
                    self.submit(st, self.recreate_sandbox)
                elif st.stage == Stage.RUNNING and st.workload and not processes.alive(*st.workload):
                    self.container_exited(st)

    # -- pod work (on pool threads) ---------------------------------------------------------------
    def create_pod(self, st: PodState) -> None:
        """RunPodSandbox (sandbox + CNI ADD), then start the container."""
        view = self.views[st.node]
        hosts, resolv = self.pod_files(st)
        began = time.monotonic()
        try:
            sb = sandbox.create(view, st.name, st.label, hosts, resolv)
        except SandboxError as exc:
            self.sandbox_failed(st, str(exc))
            return
        made = time.monotonic()
        net = self.pod_network(st, sb)
        try:
            with self.node_locks[st.node]:
                locked = time.monotonic()
                result = self.runtimes[st.node].setup(net)
                log.info("pod %s: sandbox %.0f ms, CNI ADD %.0f ms (waited %.0f ms for the node)", st.label,
                         (made - began) * 1000, (time.monotonic() - locked) * 1000, (locked - made) * 1000)
        except CniError as exc:
            try:   # containerd tears the half-made network down; its failure is only logged
                with self.node_locks[st.node]:
                    self.runtimes[st.node].teardown(net)
            except CniError as cleanup:
                log.info("pod %s: %s", st.label, cleanup)
            sandbox.destroy(sb)
            self.sandbox_failed(st, str(exc))
            return
        with self.lock:
            st.sandbox, st.pod_ip = sb, pod_ip(result)
            self.write(st)
        self.pod_files(st)
        self.start_container(st)

    def start_container(self, st: PodState) -> None:
        """Pull (check) the image and start the workload in the sandbox."""
        image = st.container["image"]
        if not workloads.supported(image):
            with self.lock:
                st.stage, st.waiting_reason = Stage.IMAGE, "ErrImagePull"
                st.waiting_message = workloads.unsupported_message(image)
                st.next_try = time.time() + self.retry_delay()
                self.events.record(st.meta, st.node, "Warning", "Failed", st.waiting_message)
                self.write(st)
            return
        self.events.record(st.meta, st.node, "Normal", "Pulled",
                           f'Container image "{image}" already present on machine')
        env = workloads.environment(st.name, st.container, self.record["service_subnet"])
        self.events.record(st.meta, st.node, "Normal", "Created", f"Created container {st.container['name']}")
        workload = workloads.start(self.views[st.node], st.sandbox, env, self.pod_dir(st) / "container.log", st.label)
        self.events.record(st.meta, st.node, "Normal", "Started", f"Started container {st.container['name']}")
        with self.lock:
            st.workload, st.stage, st.started_at = workload, Stage.STARTING, timestamp()
            st.waiting_reason = st.waiting_message = None
            st.phase = "Running"
            self.write(st)

    def recreate_sandbox(self, st: PodState) -> None:
        """The sandbox died: stop what is left, CNI DEL, and make the pod again."""
        self.stop_workload(st)
        self.network_down(st)
        with self.lock:
            st.sandbox, st.pod_ip, st.workload = None, None, None
            st.stage, st.phase, st.waiting_reason, st.ready_since, st.running_at = (
                Stage.SANDBOX, "Pending", "ContainerCreating", None, None)
            st.restarts += 1
            self.write(st)
        self.create_pod(st)

    def kill_pod(self, st: PodState) -> None:
        """Delete: stop the workload, CNI DEL, remove the sandbox, forget the pod."""
        if st.workload:
            self.events.record(st.meta, st.node, "Normal", "Killing", f"Stopping container {st.container['name']}")
        self.stop_workload(st)
        if not self.network_down(st):
            with self.lock:   # retried by a reconcile after the back-off
                st.deleting, st.stage, st.delete_retry = False, Stage.DELETING, time.time() + self.retry_delay()
            return
        sandbox.destroy(st.sandbox)
        shutil.rmtree(self.pod_dir(st), ignore_errors=True)
        with self.lock:
            self.pods.pop(st.key, None)
            self.store.remove_status(st.key)
            self.store.remove_desired(st.key, st.uid)

    def stop_workload(self, st: PodState) -> None:
        if st.workload:
            processes.terminate(*st.workload)

    def network_down(self, st: PodState) -> bool:
        """CNI DEL for the pod's sandbox; False (and an event) when it fails."""
        if st.sandbox is None:
            return True
        try:
            with self.node_locks[st.node]:
                self.runtimes[st.node].teardown(self.pod_network(st, st.sandbox))
        except CniError as exc:
            name = f"{st.name}_{st.meta.get('namespace', 'default')}({st.uid})"
            self.events.record(st.meta, st.node, "Warning", "FailedKillPod",
                               f'error killing pod: failed to "KillPodSandbox" for "{name}" with KillPodSandboxError: '
                               f'"{RPC}{exc}"')
            return False
        return True

    # -- transitions --------------------------------------------------------------------------------
    def sandbox_failed(self, st: PodState, error: str) -> None:
        with self.lock:
            st.attempts.append(time.time())
            st.stage, st.phase, st.waiting_reason = Stage.SANDBOX, "Pending", "ContainerCreating"
            st.next_try = time.time() + self.retry_delay()
            self.events.record(st.meta, st.node, "Warning", SANDBOX_FAILED,
                               f"Failed to create pod sandbox: {RPC}{error}")
            self.write(st)

    def became_ready(self, st: PodState) -> None:
        st.stage, st.phase = Stage.RUNNING, "Running"
        st.running_at = time.time()
        st.ready_since = timestamp(st.running_at)
        self.write(st)

    def container_exited(self, st: PodState) -> None:
        st.restarts += 1
        st.stage, st.waiting_reason, st.ready_since, st.running_at = Stage.CRASH, "CrashLoopBackOff", None, None
        st.waiting_message = f"back-off restarting failed container {st.container['name']} in pod {st.label}"
        st.workload = None
        st.next_try = time.time() + self.retry_delay()
        self.events.record(st.meta, st.node, "Warning", "BackOff",
                           f"Back-off restarting failed container {st.container['name']} in pod {st.label}")
        self.write(st)

    # -- adoption -----------------------------------------------------------------------------------
    def adopt(self) -> None:
        """Take over the pods of a previous agent: keep what still runs, clean up what is stale."""
        desired = self.store.desired_pods()
        for key, data in self.store.statuses().items():
            doc = desired.get(key)
            internal = data.get("agent") or {}
            if doc is None or doc["metadata"]["uid"] != data.get("uid"):
                st = PodState(key=key, uid=data.get("uid", ""), meta={"name": key}, spec={}, node=None)
                st.restore(internal)
                if st.workload:
                    processes.terminate(*st.workload)
                sandbox.destroy(st.sandbox)
                self.store.remove_status(key)
                continue
            st = PodState(key=key, uid=doc["metadata"]["uid"], meta=doc["metadata"], spec=doc["spec"],
                          node=doc["spec"].get("nodeName"))
            st.restore(internal)
            if st.node not in self.views:
                continue
            self.pods[key] = st
            if st.stage in (Stage.NEW, Stage.UNSCHEDULABLE):
                del self.pods[key]       # admitted again by reconcile
            elif st.stage == Stage.SANDBOX:
                st.next_try = min(st.next_try or time.time(), time.time() + self.backoff)
            log.info("adopted pod %s (%s)", st.label, st.stage)
        self.sweep_orphans()

    def sweep_orphans(self) -> None:
        """Stop sandboxes and workloads no pod owns (a dead agent's work in flight), and DEL their networks."""
        sandboxes = {st.sandbox.pid for st in self.pods.values() if st.sandbox}
        running = {st.workload[0] for st in self.pods.values() if st.workload}
        orphans = []
        for pid in processes.recorded(self.lab):
            words = processes.cmdline(pid)
            if not words or words[0].startswith("kindlab-node"):
                continue
            if words[0].startswith("kindlab-pause") and pid not in sandboxes:
                orphans.append(pid)
            elif not words[0].startswith("kindlab-pause") and any(w.startswith("pod=") for w in words) \
                    and pid not in running:
                orphans.append(pid)
        processes.kill(orphans)
        known = {st.sandbox.id for st in self.pods.values() if st.sandbox}
        for node, runtime in self.runtimes.items():
            for net in runtime.orphans(known):
                try:
                    runtime.teardown(net)
                    log.info("node %s: removed the network of orphaned sandbox %s (pod %s/%s)", node,
                             net.sandbox_id[:12], net.pod_namespace, net.pod_name)
                except CniError as exc:
                    log.info("node %s: %s", node, exc)

    # -- helpers ---------------------------------------------------------------------------------------
    def pod_network(self, st: PodState, sb: Sandbox) -> PodNetwork:
        return PodNetwork(sandbox_id=sb.id, netns=sb.netns, pod_name=st.name,
                          pod_namespace=st.meta.get("namespace", "default"), pod_uid=st.uid,
                          port_mappings=port_mappings(st.spec))

    def pod_dir(self, st: PodState) -> Path:
        return self.store.root / "pods" / f"{st.key}-{st.uid[:8]}"

    def pod_files(self, st: PodState) -> tuple[Path, Path]:
        """(Re)write the pod's hosts and resolv.conf, with its IP once it has one."""
        return workloads.write_pod_files(self.pod_dir(st), st.name, st.meta.get("namespace", "default"), st.pod_ip,
                                         self.record["service_subnet"])

    def write(self, st: PodState) -> None:
        """Write the pod's status now."""
        with self.lock:
            if st.key not in self.pods or self.pods[st.key] is not st:
                return
            view = self.views.get(st.node) if st.node else None
            doc = {"uid": st.uid, "nodeName": st.node, "status": v1_status(st, view.ip if view else None),
                   "annotations": annotations(st), "agent": st.internal()}
            self.store.put_status(st.key, doc)


def annotations(st: PodState) -> dict[str, str]:
    """The agent's record of the pod, as annotations on its status (records.py)."""
    return records.annotations(st.attempts, st.running_at, st.sandbox.id if st.sandbox else None)


def v1_status(st: PodState, host_ip: str | None) -> dict[str, Any]:
    """The pod's v1 status."""
    created = st.meta.get("creationTimestamp")
    if st.stage == Stage.UNSCHEDULABLE:
        return {"phase": "Pending", "qosClass": "BestEffort",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": st.message, "lastTransitionTime": created}]}
    if st.stage == Stage.REJECTED:
        return {"phase": "Failed", "reason": st.reason, "message": st.message, "qosClass": "BestEffort",
                "startTime": st.start_time}
    ready = st.stage == Stage.RUNNING
    c = st.container
    if st.stage in (Stage.RUNNING, Stage.STARTING):
        state: dict[str, Any] = {"running": {"startedAt": st.started_at}}
    else:
        state = {"waiting": {"reason": st.waiting_reason or "ContainerCreating",
                             **({"message": st.waiting_message} if st.waiting_message else {})}}
    not_ready = {} if ready else {"reason": "ContainersNotReady",
                                  "message": f"containers with unready status: [{c['name']}]"}
    since = st.ready_since or st.start_time
    status: dict[str, Any] = {
        "phase": st.phase,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": st.start_time},
            {"type": "Ready", "status": str(ready), "lastTransitionTime": since, **not_ready},
            {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": since, **not_ready},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
        ],
        "hostIP": host_ip, "startTime": st.start_time, "qosClass": "BestEffort",
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": ready,
                               "restartCount": st.restarts, "started": st.stage in (Stage.RUNNING, Stage.STARTING),
                               "state": state,
                               **({"containerID": f"kindlab://{st.workload[0]}"} if st.workload else {})}],
    }
    if host_ip:
        status["hostIPs"] = [{"ip": host_ip}]
    if st.pod_ip:
        status["podIP"], status["podIPs"] = st.pod_ip, [{"ip": st.pod_ip}]
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
