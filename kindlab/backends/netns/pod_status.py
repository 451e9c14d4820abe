"""What the node agent knows about a pod, and the status it writes for it (the kubelet's status manager).

    Stage              where the agent is with a pod (persisted by value)
    PodState           the agent's record of one pod, persisted in its status file's `agent` part
    v1_status          the pod's v1 status, as the kubelet reports it
    agent_annotations  the agent's record of the pod's attempts and start (records.py)

Stdlib only, with the agent's own modules: the agent imports it (see the package's note on pandas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...model.pods import declared_host_ports
from . import records
from .sandbox import Sandbox


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
    seen: str = ""        # when the kubelet's config source first had the pod (RFC 3339, to the nanosecond)

    PERSISTED = ("stage", "phase", "reason", "message", "pod_ip", "restarts", "attempts", "start_time", "started_at",
                 "ready_since", "running_at", "waiting_reason", "waiting_message", "next_try", "node",
                 "finished_at", "exit_code", "exit_seen_at", "exit_seen", "remove_at", "seen")

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def label(self) -> str:
        return f"{self.meta.get('namespace', 'default')}/{self.name}"

    @property
    def bound_node(self) -> str:
        """The node the pod is bound to, for the work done on it there (only a bound pod gets any)."""
        if self.node is None:
            raise RuntimeError(f"pod {self.label} is not bound to a node")
        return self.node

    @property
    def container(self) -> dict[str, Any]:
        return self.spec["containers"][0]

    @property
    def active(self) -> bool:
        """Counted by the kubelet's admission: admitted, and not deleted with its stop already seen by a relist."""
        return self.stage not in (Stage.REJECTED, Stage.UNSCHEDULABLE) and not (
            self.stage == Stage.TERMINATED and self.exit_seen)

    def host_ports(self) -> list[tuple[str, int, str]]:
        """(protocol, hostPort, hostIP) of each hostPort the pod asks for, as the kubelet's admission compares them."""
        return [(d.protocol, d.host_port, d.host_ip) for d in declared_host_ports(self.spec)]

    def sandbox_annotations(self) -> dict[str, str]:
        """The annotations the kubelet gives the pod's sandbox: the pod's own, and where and when it had the pod."""
        return {**(self.meta.get("annotations") or {}), "kubernetes.io/config.seen": self.seen,
                "kubernetes.io/config.source": "api"}

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
        self.workload = tuple(data["workload"]) if data.get("workload") else None


def ports_conflict(a: list[tuple[str, int, str]], b: list[tuple[str, int, str]]) -> bool:
    """True when two pods ask for the same protocol and hostPort on overlapping host IPs."""
    wild = ("", "0.0.0.0", "::")
    return any(pa == pb and na == nb and (ia in wild or ib in wild or ia == ib)
               for pa, na, ia in a for pb, nb, ib in b)


def container_id(pod: PodState) -> str | None:
    """The id of the pod's container (its workload's pid), as its status names it."""
    return f"kindlab://{pod.workload[0]}" if pod.workload else None


def agent_annotations(pod: PodState) -> dict[str, str]:
    """The agent's record of the pod, as annotations on its status (records.py)."""
    return records.agent_annotations(pod.attempts, pod.running_at, pod.sandbox.id if pod.sandbox else None,
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
    status: dict[str, Any] = {
        "phase": pod.phase, "conditions": _conditions(pod, created),
        "hostIP": host_ip, "startTime": pod.start_time, "qosClass": "BestEffort",
        "containerStatuses": [_container_status(pod)],
    }
    if host_ip:
        status["hostIPs"] = [{"ip": host_ip}]
    if pod.pod_ip:
        status["podIP"], status["podIPs"] = pod.pod_ip, [{"ip": pod.pod_ip}]
    return status


def _conditions(pod: PodState, created: str | None) -> list[dict[str, Any]]:
    """An admitted pod's conditions: Initialized, Ready, ContainersReady, PodScheduled."""
    ready = pod.stage == Stage.RUNNING
    not_ready = {} if ready else {"reason": "ContainersNotReady",
                                  "message": f"containers with unready status: [{pod.container['name']}]"}
    since = pod.ready_since or pod.start_time
    return [
        {"type": "Initialized", "status": "True", "lastTransitionTime": pod.start_time},
        {"type": "Ready", "status": str(ready), "lastTransitionTime": since, **not_ready},
        {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": since, **not_ready},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": created},
    ]


def _container_status(pod: PodState) -> dict[str, Any]:
    """The status of the pod's one container."""
    c = pod.container
    running = pod.stage == Stage.RUNNING
    return {"name": c["name"], "image": c["image"], "imageID": "", "ready": running,
            "restartCount": pod.restarts, "started": running, "state": _container_state(pod),
            **({"containerID": container_id(pod)} if running else {})}


def _container_state(pod: PodState) -> dict[str, Any]:
    """Running, terminated or waiting: until PLEG's relist sees a new container the kubelet's status is the one
    before it started."""
    if pod.stage == Stage.RUNNING:
        return {"running": {"startedAt": pod.started_at}}
    if pod.stage == Stage.TERMINATED and pod.exit_seen and pod.finished_at:
        return {"terminated": {"containerID": container_id(pod), "exitCode": pod.exit_code,
                               "reason": "Completed" if pod.exit_code == 0 else "Error",
                               "startedAt": pod.started_at, "finishedAt": pod.finished_at}}
    return {"waiting": {"reason": pod.waiting_reason or "ContainerCreating",
                        **({"message": pod.waiting_message} if pod.waiting_message else {})}}
