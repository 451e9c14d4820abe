"""The model's API half: the lab's store plays the API server (desired pods in, the agent's statuses out).

It writes desired pods into the store and reads back what the node agent (agent.py, the kubelet's part)
reports; any change to pods starts the agent again when it is not running.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from typing import Any

from ... import objects
from ...cluster import polled_pods
from ...errors import ClusterError, NotFound
from ...model import kubelet
from ...waiting import until
from . import processes
from .names import pod_key
from .nodes import NodeView
from .podspec import deployment_template, pod_doc
from .state.store import Store, timestamp

MAX_PODS_PER_NODE = 110   # the kubelet's default maxPods: what one node of the lab holds
POLL_SECONDS = 0.01  # reading the lab's store costs well under 1 ms


class ModelApiServer:
    """The store of lab `name` as an ApiServer; `ensure_agent` starts the agent, `backoff` reads the back-off."""

    def __init__(self, name: str, store: Store, record: dict[str, Any], views: dict[str, NodeView],
                 ensure_agent: Callable[[], None], backoff: Callable[[], float]):
        self.name = name
        self.store = store
        self.record = record
        self.views = views
        self.ensure_agent = ensure_agent
        self.backoff = backoff

    # -- Kubernetes-shaped reads ---------------------------------------------------------
    def node_list(self) -> list[dict[str, Any]]:
        agent = self.store.agent_running()
        out = []
        for v in self.views.values():
            issues = v.problems()
            ready = agent and not issues
            reason = "KubeletReady" if ready else ("NodeStatusUnknown" if not issues else "NodeNotReady")
            message = ("kubelet is posting ready status" if ready else "; ".join(issues) if issues
                       else "Kubelet stopped posting node status (the agent is not running).")
            labels = {"kubernetes.io/hostname": v.name, "kubernetes.io/os": "linux",
                      "kubernetes.io/arch": platform.machine()}
            spec: dict[str, Any] = {"podCIDR": v.pod_cidr, "podCIDRs": [v.pod_cidr]}
            if v.role == "control-plane":
                labels["node-role.kubernetes.io/control-plane"] = ""
                spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
            out.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": v.name, "labels": labels, "creationTimestamp": self.record.get("created")},
                "spec": spec,
                "status": {
                    "addresses": [{"type": "InternalIP", "address": v.ip}, {"type": "Hostname", "address": v.name}],
                    "conditions": [{"type": "Ready", "status": "True" if ready else ("Unknown" if not issues
                                                                                      else "False"),
                                    "reason": reason, "message": message}],
                    "nodeInfo": {"kubeletVersion": "kindlab-netns", "containerRuntimeVersion": "kindlab://netns",
                                 "kernelVersion": platform.release(), "operatingSystem": "linux",
                                 "architecture": platform.machine()},
                },
            })
        return out

    def pod_list(self) -> list[dict[str, Any]]:
        statuses = self.store.statuses()
        out = []
        for key, doc in self.store.desired_pods().items():
            pod = {**doc, "metadata": dict(doc["metadata"])}
            recorded = statuses.get(key)
            if recorded and recorded.get("uid") == doc["metadata"]["uid"]:
                pod["status"] = recorded["status"]
                if recorded.get("annotations"):
                    notes = doc["metadata"].get("annotations", {})
                    pod["metadata"]["annotations"] = {**notes, **recorded["annotations"]}
                if recorded.get("nodeName") and not pod["spec"].get("nodeName"):
                    pod["spec"] = {**pod["spec"], "nodeName": recorded["nodeName"]}
            else:
                pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            out.append(pod)
        return out

    def event_list(self) -> list[dict[str, Any]]:
        return self.store.events()

    def watch_pods(self, timeout: float = 60.0) -> Iterator[tuple[float, str, dict[str, Any]]]:
        """The store has no watch: every pod at every read, a read costing well under a millisecond."""
        return polled_pods(self.pod_list, POLL_SECONDS, timeout)

    # -- changes -------------------------------------------------------------------------------
    def apply_object(self, obj: objects.Manifest) -> str:
        if isinstance(obj, objects.Deployment):
            return self._apply_deployment(obj)
        doc = self._pod_doc(obj)
        key = pod_key(obj.namespace, obj.name)
        with self.store.lock():
            old = self.store.desired_pod(key)
            if old is not None:
                if old["metadata"].get("deletionTimestamp"):
                    raise ClusterError(f"pod {obj.name!r} is being deleted; wait until it is gone, then apply again")
                if old["spec"] == doc["spec"] and old["metadata"].get("labels") == doc["metadata"]["labels"]:
                    return f"pod/{obj.name} unchanged"
                raise ClusterError(f'The Pod "{obj.name}" is invalid: spec: Forbidden: pod updates may not change '
                                   "fields other than image and a few others; delete the pod and apply it again")
            self.store.put_desired(key, doc)
            self.store.bump()
        self.ensure_agent()
        return f"pod/{obj.name} created"

    def _pod_doc(self, obj: objects.PodSpec) -> dict[str, Any]:
        return pod_doc(obj, self.name, list(self.views))

    def _apply_deployment(self, obj: objects.Deployment) -> str:
        from .controllers import apply_deployment

        self._check_room(obj)
        line = apply_deployment(self.store, obj, self._pod_doc(deployment_template(obj)))
        self.ensure_agent()
        return line

    def _check_room(self, obj: objects.Deployment) -> None:
        """ClusterError when the deployment's replicas and the lab's other pods exceed what its nodes hold
        (MAX_PODS_PER_NODE each): the scheduler would leave the rest Pending, the model would make them all."""
        room = MAX_PODS_PER_NODE * len(self.views)
        mine = f"{obj.name}-"
        others = sum(1 for key, pod in self.store.desired_pods().items()
                     if not (pod["metadata"].get("namespace") == obj.namespace
                             and pod["metadata"].get("ownerReferences")
                             and pod["metadata"]["name"].startswith(mine)))
        if obj.replicas + others > room:
            raise ClusterError(f"deployment {obj.name!r}: spec.replicas: {obj.replicas} pods (besides the {others} "
                               f"the lab runs) do not fit: its {len(self.views)} nodes hold {room} pods "
                               f"({MAX_PODS_PER_NODE} each, the kubelet's maxPods); ask for fewer replicas")

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True,
                   timeout: float | None = None) -> str:
        """Mark the pod deleted; with `wait`, until it has left (by default a minute, or as long as the kubelet
        may take, container GC included, if that is longer)."""
        key = pod_key(namespace, name)
        with self.store.lock():
            doc = self.store.desired_pod(key)
            if doc is None:
                raise NotFound(f'pods "{name}" not found in cluster {self.name!r} (namespace {namespace})')
            if not doc["metadata"].get("deletionTimestamp"):
                doc["metadata"]["deletionTimestamp"] = timestamp()
                doc["metadata"]["deletionGracePeriodSeconds"] = 30
                self.store.put_desired(key, doc)
                self.store.bump()
        self.ensure_agent()
        if wait:
            uid = doc["metadata"]["uid"]

            def gone() -> bool:
                current = self.store.desired_pod(key)
                return current is None or current["metadata"]["uid"] != uid
            if timeout is None:
                timeout = max(60.0, kubelet.longest_stay(self.backoff()) + processes.TERMINATE_GRACE + 10.0)
            until(gone, timeout, every=0.01, what=f"cluster {self.name!r}: pod {name} deleted")
        return f'pod "{name}" deleted'

    def cni_check(self, name: str, namespace: str = "default") -> str:
        """CNI CHECK of a running pod's network against its cached ADD result (libcni's CheckNetworkList).

        Returns "ok"; ClusterError with the runtime's words when a plugin finds something wrong.
        (portmap before 1.2, e.g. Debian 12's 1.1.1, fails CHECK of IPv4-only pods looking for
        ip6tables rules: containernetworking/plugins#819.)
        """
        from .cni import CniError, Runtime
        from .container_runtime import pod_network
        from .pod_status import PodState
        from .sandbox import Sandbox

        pod = next((p for p in self.pod_list() if p["metadata"]["name"] == name
                    and p["metadata"].get("namespace", "default") == namespace), None)
        if pod is None:
            raise NotFound(f"pod {name!r} not found in cluster {self.name!r} (namespace {namespace})")
        key = pod_key(namespace, name)
        agent = (self.store.statuses().get(key) or {}).get("agent") or {}
        sandbox = Sandbox.from_record(agent.get("sandbox"))
        if sandbox is None or not sandbox.alive():
            raise ClusterError(f"pod {name!r} has no running sandbox to check")
        known = PodState(key=key, uid=pod["metadata"]["uid"], meta=pod["metadata"], spec=pod["spec"],
                         node=pod["spec"]["nodeName"])
        known.restore(agent)      # when the kubelet had the pod: its sandbox's annotations say so
        net = pod_network(known, sandbox, self.record["service_subnet"])
        try:
            Runtime(self.views[pod["spec"]["nodeName"]]).check(net)
        except CniError as exc:
            raise ClusterError(f"CNI CHECK of pod {name!r}: {exc}") from None
        return "ok"
