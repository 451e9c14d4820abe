"""The backend-neutral Cluster API that notebooks, the CLI, heal and doctor use.

A cluster is its two halves, composed: an ApiServer (nodes, pods, events in Kubernetes' JSON shapes:
v1 Node, Pod and Event dicts) and a NodeAccess (exec, cp, curl). This class hands each call to its half
and turns the objects into DataFrames, so every backend prints and plots the same thing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from . import objects
from .capabilities import Capabilities, ContainerStarts
from .capabilities import RuntimeTimes as RuntimeTimes  # re-exported: backends take it from here
from .errors import ClusterError, NotFound
from .model import pods as pod_rules
from .topology import Topology
from .waiting import Deadline, until

POD_COLUMNS = ["name", "node", "phase", "hostIP", "podIP", "ready", "restarts", "reason", "startTime"]
NODE_COLUMNS = ["name", "role", "ip", "podCIDR", "ready", "backend", "kubelet", "kubeletVersion",
                "containerRuntimeVersion"]
EVENT_COLUMNS = ["time", "type", "reason", "object", "message", "count", "firstTimestamp", "lastTimestamp"]


@dataclass
class HttpResponse:
    """What curl got back: status code, headers and body."""

    url: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


class ApiServer(Protocol):
    """The API half of a cluster: where its Kubernetes objects live (a real API server, or the model's store)."""

    def node_list(self) -> list[dict[str, Any]]:
        """The nodes as v1 Node objects (metadata.name, labels, spec.podCIDR, status.addresses)."""

    def pod_list(self) -> list[dict[str, Any]]:
        """The pods as v1 Pod objects (metadata, spec.nodeName, status.phase/hostIP/podIP/...)."""

    def event_list(self) -> list[dict[str, Any]]:
        """The events as v1 Event objects (type, reason, message, count, involvedObject, timestamps)."""

    def apply_object(self, obj: objects.Manifest) -> str:
        """Create or update one Pod or Deployment; returns kubectl's line, e.g. 'pod/echo created'."""

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True) -> str:
        """Delete a pod (and, with wait, until it is gone); returns kubectl's line."""

    def watch_pods(self, timeout: float = 60.0) -> Iterator[tuple[float, str, dict[str, Any]]]:
        """(time.monotonic(), ADDED|MODIFIED|DELETED, v1 Pod) as pods change, for `timeout` seconds."""


class NodeAccess(Protocol):
    """The node half of a cluster: commands, files and HTTP on its nodes (Docker, namespaces, debug pods)."""

    def exec(self, node: str, cmd: str | list[str], check: bool = True, input: str | bytes | None = None,
             timeout: float | None = 60) -> str:
        """Run a command in a node, as `docker exec`; a string runs under `sh -c`. Raises ExecError."""

    def cp(self, src: str, dest: str) -> None:
        """Copy like `docker cp`: either side may be `node:/path`."""

    def curl(self, url: str, timeout: float = 5.0) -> HttpResponse:
        """GET `url` from the host side, as the seed's curl does. Refused/timeout raise CurlError."""


def polled_pods(pod_list: Callable[[], list[dict[str, Any]]], interval: float,
                timeout: float) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """A watch made by polling: every pod on every read of `pod_list`, stamped with the middle of the read."""
    deadline = Deadline(timeout)
    while not deadline.passed:
        start = time.monotonic()
        items = pod_list()
        seen = (start + time.monotonic()) / 2
        for pod in items:
            yield seen, "MODIFIED", pod
        time.sleep(interval)


class Cluster(ABC):
    """A running cluster on some backend: nodes, pods, events, exec, cp and curl.

    A cluster is composed of two halves: `api_server` (an ApiServer: pods, nodes, events) and `node_access`
    (a NodeAccess: exec, cp, curl). The methods below hand each call to its half; a backend gives the halves
    and its own `down`, `capabilities` and what it may add.
    """

    backend: str = "?"

    def __init__(self, name: str, topology: Topology, api_server: ApiServer | None = None,
                 node_access: NodeAccess | None = None):
        self.name = name
        self.topology = topology
        self.api_server = api_server
        self.node_access = node_access

    def __repr__(self) -> str:
        return f"<kindlab {self.backend} cluster {self.name!r}: {len(self.topology.nodes)} nodes>"

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do (a backend overrides this with its own record)."""
        return Capabilities(backend=self.backend)

    # -- the API half ------------------------------------------------------------------
    def node_list(self) -> list[dict[str, Any]]:
        """The nodes as v1 Node objects (metadata.name, labels, spec.podCIDR, status.addresses)."""
        return self._api_half().node_list()

    def pod_list(self) -> list[dict[str, Any]]:
        """The pods as v1 Pod objects (metadata, spec.nodeName, status.phase/hostIP/podIP/...)."""
        return self._api_half().pod_list()

    def event_list(self) -> list[dict[str, Any]]:
        """The events as v1 Event objects (type, reason, message, count, involvedObject, timestamps)."""
        return self._api_half().event_list()

    def apply_object(self, obj: objects.Manifest) -> str:
        """Create or update one Pod or Deployment; returns kubectl's line, e.g. 'pod/echo created'."""
        return self._api_half().apply_object(obj)

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True) -> str:
        """Delete a pod (and, with wait, until it is gone); returns kubectl's line."""
        return self._api_half().delete_pod(name, namespace, wait=wait)

    def watch_pods(self, timeout: float = 60.0) -> Iterator[tuple[float, str, dict[str, Any]]]:
        """(time.monotonic(), ADDED|MODIFIED|DELETED, v1 Pod) as pods change, for `timeout` seconds: the API
        half's watch, where it has one (`capabilities.watches_pods`); polled every `poll_interval` otherwise."""
        if self.api_server is None:
            return polled_pods(self.pod_list, self.capabilities.poll_interval, timeout)
        return self.api_server.watch_pods(timeout)

    def _api_half(self) -> ApiServer:
        if self.api_server is None:
            raise ClusterError(f"cluster {self.name!r} has no API half")
        return self.api_server

    # -- the node half -----------------------------------------------------------------
    def exec(self, node: str, cmd: str | list[str], check: bool = True, input: str | bytes | None = None,
             timeout: float | None = 60) -> str:
        """Run a command in a node, as `docker exec`; a string runs under `sh -c`. Raises ExecError."""
        return self._node_half().exec(self.check_node(node), cmd, check=check, input=input, timeout=timeout)

    def cp(self, src: str, dest: str) -> None:
        """Copy like `docker cp`: either side may be `node:/path`."""
        self._node_half().cp(src, dest)

    def curl(self, url: str, timeout: float = 5.0) -> HttpResponse:
        """GET `url` from the host side, as the seed's curl does. Refused/timeout raise CurlError."""
        return self._node_half().curl(url, timeout)

    def _node_half(self) -> NodeAccess:
        if self.node_access is None:
            raise ClusterError(f"cluster {self.name!r} has no node half")
        return self.node_access

    @abstractmethod
    def down(self) -> None:
        """Delete the cluster and everything it made."""

    # -- what a backend may add ----------------------------------------------------
    @property
    def substitutions(self) -> list[str]:
        """Files of the config the backend replaced by its own, as printed at create (none by default)."""
        return []

    def runtime_times(self, pod: dict[str, Any]) -> RuntimeTimes | None:
        """The runtime's own record of the pod's failed attempts and Running; None where it keeps none."""
        return None

    def container_starts(self, node: str) -> AbstractContextManager[ContainerStarts]:
        """The starts of `node`'s containers that the runtime pushes while the block runs (none by default:
        `capabilities.runtime_events` says whether a backend has them)."""
        return nullcontext(ContainerStarts())

    def kubeconfig(self) -> str:
        """A kubeconfig for the cluster's API server, as `kind get kubeconfig` prints it."""
        raise ClusterError(f"cluster {self.name!r} has no Kubernetes API server: its pods are run by kindlab's "
                           "model of the kubelet (create it with --kubernetes real for one)")

    # -- shared ---------------------------------------------------------------------
    def apply(self, path: str | Path) -> list[str]:
        """`kubectl apply -f PATH`: every Pod and Deployment in a file or folder."""
        return [self.apply_object(obj) for obj in objects.load(path)]

    def node_names(self) -> list[str]:
        """Node names in config order."""
        return [n.name for n in self.topology.nodes]

    def check_node(self, node: str) -> str:
        """`node` if this cluster has it; NotFound naming the known nodes otherwise."""
        names = self.node_names()
        if node not in names:
            raise NotFound(f"cluster {self.name!r} has no node {node!r}; nodes are: {', '.join(names)}")
        return node

    def nodes(self) -> pd.DataFrame:
        """DataFrame: name, role, ip, podCIDR, ready, backend, kubelet, kubeletVersion, containerRuntimeVersion."""
        kubelet = self.capabilities.kubelet
        rows = [{**node_summary(n), "backend": self.backend, "kubelet": kubelet} for n in self.node_list()]
        return pd.DataFrame(rows, columns=NODE_COLUMNS)

    def pods(self) -> pd.DataFrame:
        """DataFrame: name, node, phase, hostIP, podIP, ready, restarts, reason, startTime."""
        return pods_frame(self.pod_list())

    def events(self) -> pd.DataFrame:
        """DataFrame: time, type, reason, object, message, count, first and last timestamps."""
        return events_frame(self.event_list())

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """One pod as a v1 Pod object; NotFound otherwise."""
        for p in self.pod_list():
            if p["metadata"]["name"] == name and p["metadata"].get("namespace", "default") == namespace:
                return p
        raise NotFound(f"pod {name!r} not found in cluster {self.name!r} (namespace {namespace})")

    def node_ip(self, node: str) -> str:
        """The node's InternalIP."""
        self.check_node(node)
        frame = self.nodes()
        return str(frame.loc[frame["name"] == node, "ip"].iloc[0])

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.05,
                 what: str = "condition") -> Any:
        """Poll `predicate` until it returns something truthy; WaitTimeout after `timeout` seconds."""
        return until(predicate, timeout, every=interval, what=f"cluster {self.name!r}: {what}")

    def wait_for_pod(self, name: str, phase: str = "Running", timeout: float = 60) -> dict[str, Any]:
        """Wait until pod `name` has `phase` (and, for Running, is ready)."""
        def check() -> dict[str, Any] | None:
            try:
                p = self.pod(name)
            except NotFound:
                return None
            status = p.get("status", {})
            if status.get("phase") != phase:
                return None
            if phase == "Running" and not pod_rules.is_ready(p):
                return None
            return p
        pod: dict[str, Any] = self.wait_for(check, timeout=timeout, what=f"pod {name} {phase}")
        return pod


def node_summary(node: dict[str, Any]) -> dict[str, Any]:
    """One v1 Node as the row `nodes()` and `kindlab get nodes` show: name, role(s), ip, podCIDR, ready, versions."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    status = node.get("status") or {}
    roles = [k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")]
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), "Unknown")
    info = status.get("nodeInfo") or {}
    return {
        "name": node["metadata"]["name"],
        "role": "control-plane" if "control-plane" in roles else "worker",
        "roles": ",".join(roles) or "<none>",
        "ip": next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None),
        "podCIDR": (node.get("spec") or {}).get("podCIDR"),
        "ready": ready == "True",
        "kubeletVersion": info.get("kubeletVersion"),
        "containerRuntimeVersion": info.get("containerRuntimeVersion"),
        "creationTimestamp": node["metadata"].get("creationTimestamp"),
    }


def pod_summary(pod: dict[str, Any]) -> dict[str, Any]:
    """One v1 Pod as the row `pods()` and `kindlab get pods` show (READY as ready_count/containers)."""
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    waiting = next((s.get("state", {}).get("waiting", {}).get("reason") for s in statuses
                    if (s.get("state") or {}).get("waiting")), None)
    return {
        "name": pod["metadata"]["name"],
        "node": (pod.get("spec") or {}).get("nodeName"),
        "phase": status.get("phase"),
        "hostIP": status.get("hostIP"),
        "podIP": status.get("podIP"),
        "ready": pod_rules.is_ready(pod),
        "restarts": sum(int(s.get("restartCount", 0)) for s in statuses),
        "reason": status.get("reason") or waiting,
        "startTime": status.get("startTime"),
        "ready_count": sum(1 for s in statuses if s.get("ready")),
        "containers": len((pod.get("spec") or {}).get("containers") or []) or len(statuses),
        "creationTimestamp": pod["metadata"].get("creationTimestamp"),
    }


def pods_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    """v1 Pod objects as the DataFrame `Cluster.pods()` returns."""
    rows = [pod_summary(p) for p in items]
    return pd.DataFrame(rows, columns=POD_COLUMNS).sort_values("name", ignore_index=True)


def events_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    """v1 Event objects as the DataFrame `Cluster.events()` returns, oldest first."""
    rows = []
    for e in items:
        obj = e.get("involvedObject", {}) or {}
        last = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
        rows.append({
            "time": pd.Timestamp(last) if last else pd.NaT,
            "type": e.get("type"),
            "reason": e.get("reason"),
            "object": f"{obj.get('kind', 'Pod').lower()}/{obj.get('name')}",
            "message": e.get("message"),
            "count": int(e.get("count") or 1),
            "firstTimestamp": e.get("firstTimestamp"),
            "lastTimestamp": e.get("lastTimestamp"),
        })
    frame = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    return frame.sort_values("time", kind="stable", ignore_index=True) if len(frame) else frame
