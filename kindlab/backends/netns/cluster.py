"""The netns lab as a `Cluster`: NetnsLab, what every lab is (its record, its nodes, its teardown), and ModelLab,
a lab whose pods kindlab's model of the kubelet runs (backend.py makes and finds labs; real/cluster.py has RealLab).

A lab composes the node half of every lab (lab_nodes.LabNodes) with an API half: the model's store
(model_api.ModelApiServer) here, the real API server (kube.KubeApi) in RealLab.
"""

from __future__ import annotations

import subprocess
import sys
from abc import abstractmethod
from pathlib import Path
from typing import Any

from ... import objects, runtime_packages
from ...capabilities import Capabilities
from ...cluster import ApiServer, Cluster, RuntimeTimes
from ...errors import ClusterError, ConfigError
from ...model import kubelet
from ...topology import Networking, Node, Topology, from_dict
from ...waiting import until
from . import processes
from .lab_nodes import LabNodes
from .lifecycle import locked, teardown
from .model_api import POLL_SECONDS, ModelApiServer
from .names import STD_PATH, marker, state_dir
from .nodes import NodeView
from .podspec import pod_doc
from .records import agent_times
from .runtime_events import ContainerFollower
from .state.store import Store

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class NetnsLab(Cluster):
    """A running netns lab: nodes are namespaces; the API half is given by the kind of lab."""

    backend = "netns"

    def __init__(self, record: dict[str, Any], topology: Topology, api_server: ApiServer | None = None):
        self.record = record
        self.store = Store(state_dir(record["name"]))
        self._views = {n["name"]: NodeView.from_record(n) for n in record["nodes"]}
        super().__init__(record["name"], topology, api_server=api_server,
                         node_access=LabNodes(record["name"], self._views, record))

    @property
    def state_dir(self) -> Path:
        """The lab's state folder, /run/kindlab/<name>."""
        return self.store.root

    @property
    def substitutions(self) -> list[str]:
        """Each Cilium file the lab replaced by its own plugin's, as printed at create."""
        return list(self.record.get("substitutions", []))

    def view(self, node: str) -> NodeView:
        """How to reach `node`; NotFound naming the known nodes otherwise."""
        return self._views[self.check_node(node)]

    def pod_doc(self, obj: objects.PodSpec) -> dict[str, Any]:
        """The pod as the lab stores it, after the lab's own checks (its nodeName, its image)."""
        return pod_doc(obj, self.name, list(self._views))

    @abstractmethod
    def agent_running(self) -> bool:
        """True when what runs the lab's pods runs."""

    @abstractmethod
    def ensure_agent(self) -> None:
        """Start again what runs the lab's pods, where it died."""

    def down(self) -> None:
        """Remove every namespace, mount, process, veth and state file of the lab.

        A hostPath folder that `up` made because it was missing (kind/config's `empty`) goes too,
        with whatever was copied into it: the next `up` starts with worker2 broken again.
        """
        with locked():
            teardown(self.name)


class ModelLab(NetnsLab):
    """A netns lab whose kubelet is kindlab's node agent, and whose API server is the lab's store."""

    def __init__(self, record: dict[str, Any], topology: Topology):
        self._agent: subprocess.Popen | None = None
        super().__init__(record, topology)
        self.model_api = ModelApiServer(self.name, self.store, record, self._views, self.ensure_agent,
                                        lambda: self.backoff)
        self.api_server = self.model_api

    @property
    def backoff(self) -> float:
        """The sandbox retry back-off in seconds (the kubelet's is 10, plus up to 50 % jitter)."""
        return float((self.store.read_lab() or self.record)["backoff"])

    @property
    def capabilities(self) -> Capabilities:
        """The model's kubelet: a configurable back-off, the agent's own timestamps, the machine's CNI package."""
        portmap = Path(self.record["cni_dir"]) / "portmap"   # the plugins this lab overlays on its nodes
        return Capabilities(
            cni_plugins=runtime_packages.describe_cni_dir(self.record["cni_dir"]),
            backend=self.backend, kubelet="model", kubernetes_version="none (kindlab's model)",
            runtime_version="none (kindlab's sandboxes)", watches_pods=False, poll_interval=POLL_SECONDS,
            sandbox_backoff=self.backoff, immediate_retries=1, pod_timeout=60.0,
            heal_slack=0.6 + 0.1 * self.backoff + kubelet.scaled(kubelet.SYNC_PERIOD + kubelet.RELIST_PERIOD,
                                                                 self.backoff),
            portmap_source=str(portmap) if portmap.exists() else None, runtime_timestamps=True, runtime_events=True,
            node_plugins=("bridge", "host-local", "loopback", "portmap"))

    def runtime_times(self, pod: dict[str, Any]) -> RuntimeTimes | None:
        """The agent's own record of the pod: its failed sandbox attempts and Running, to the microsecond."""
        return agent_times(pod)

    def container_starts(self, node: str) -> ContainerFollower:
        """The agent's pushed container starts (every node's) while the block runs."""
        return ContainerFollower(self.store.root)

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True,
                   timeout: float | None = None) -> str:
        """Mark the pod deleted; with `wait`, until it has left (by default a minute, or as long as the kubelet
        may take, container GC included, if that is longer)."""
        return self.model_api.delete_pod(name, namespace, wait=wait, timeout=timeout)

    def cni_check(self, name: str, namespace: str = "default") -> str:
        """CNI CHECK of a running pod's network against its cached ADD result (see ModelApiServer.cni_check)."""
        return self.model_api.cni_check(name, namespace)

    # -- the agent -------------------------------------------------------------------
    def agent_running(self) -> bool:
        """True when the lab's node agent runs."""
        return self.store.agent_running()

    def ensure_agent(self) -> None:
        """Start the node agent, detached, unless it runs (a new agent adopts the running pods)."""
        if self.store.agent_running() or (self._agent is not None and self._agent.poll() is None):
            return
        env = {"PATH": STD_PATH, "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT_ROOT)}
        with open(self.store.root / "agent.log", "ab") as log:
            self._agent = subprocess.Popen(
                [sys.executable, "-m", "kindlab.backends.netns.agent", marker(self.name)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/", env=env,
                start_new_session=True)
        processes.keep(self._agent, self.name)

    def down(self) -> None:
        super().down()
        if self._agent is not None:
            self._agent.poll()


def _topology(record: dict[str, Any]) -> Topology:
    """The lab's topology, from the config kept in its record."""
    source = Path(record["source"]) if record.get("source") else None
    try:
        return from_dict(record["config"], name=record["name"], source=source)
    except ConfigError:   # a mounted file vanished since: the nodes are still known
        nodes = tuple(Node(name=n["name"], role=n["role"], index=n["index"], pod_cidr=n["pod_cidr"])
                      for n in record["nodes"])
        return Topology(name=record["name"], nodes=nodes, source=source,
                        networking=Networking(pod_subnet=record["pod_subnet"],
                                              service_subnet=record["service_subnet"]))


def wait_for_agent(lab: NetnsLab, timeout: float = 10) -> None:
    """Wait until what runs the lab's pods runs (tests and benchmarks)."""
    log = lab.state_dir / "agent.log"
    until(lab.agent_running, timeout, every=0.01, what=f"the node agent of {lab.name!r}",
          fail=lambda why: ClusterError(f"{why}; see {log}"))
