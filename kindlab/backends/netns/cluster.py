"""The netns lab as a `Cluster` whose pods kindlab's model of the kubelet runs (api.py makes and finds labs).

The lab client plays the API server's part: it writes desired pods into the store and reads back
what the node agent (agent.py, the kubelet's part) reports. The agent runs detached, one per lab,
and is (re)started by `up` and by any change to pods when it is not running.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ... import objects
from ...capabilities import Capabilities
from ...cluster import Cluster, HttpResponse, RuntimeTimes
from ...errors import ClusterError, ConfigError, ExecError, NotFound, WaitTimeout
from ...model import cni as cni_rules
from ...model import kubelet
from ...topology import Networking, Node, Topology, from_dict
from . import files, processes, tools
from .curl import curl as curl_from_host
from .lifecycle import locked, teardown
from .names import STD_PATH, host_netns, marker, pod_key, state_dir
from .nodes import NodeView
from .podspec import deployment_template, pod_doc
from .records import agent_times
from .runtime_events import ContainerFollower
from .state.store import Store, timestamp

POLL_SECONDS = 0.01  # reading the lab's store costs well under 1 ms
PROJECT_ROOT = Path(__file__).resolve().parents[3]


class NetnsCluster(Cluster):
    """A running netns lab: nodes are namespaces, the kubelet is kindlab's node agent."""

    backend = "netns"

    def __init__(self, record: dict[str, Any], topology: Topology):
        super().__init__(record["name"], topology)
        self.record = record
        self.store = Store(state_dir(self.name))
        self._views = {n["name"]: NodeView.from_record(n) for n in record["nodes"]}
        self._agent: subprocess.Popen | None = None

    # -- what the lab is -------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """The lab's state folder, /run/kindlab/<name>."""
        return self.store.root

    @property
    def substitutions(self) -> list[str]:
        """Each Cilium file the lab replaced by its own plugin's, as printed at create."""
        return list(self.record.get("substitutions", []))

    @property
    def backoff(self) -> float:
        """The sandbox retry back-off in seconds (the kubelet's is 10, plus up to 50 % jitter)."""
        return float((self.store.read_lab() or self.record)["backoff"])

    @property
    def capabilities(self) -> Capabilities:
        """The model's kubelet: a configurable back-off, the agent's own timestamps, the machine's CNI package."""
        portmap = cni_rules.PACKAGE_PORTMAP
        return Capabilities(
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

    def view(self, node: str) -> NodeView:
        """How to reach `node`; NotFound naming the known nodes otherwise."""
        return self._views[self.check_node(node)]

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

    # -- Kubernetes-shaped reads ---------------------------------------------------------
    def node_list(self) -> list[dict[str, Any]]:
        agent = self.store.agent_running()
        out = []
        for v in self._views.values():
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
        return pod_doc(obj, self.name, list(self._views))

    def _apply_deployment(self, obj: objects.Deployment) -> str:
        from .controllers import apply_deployment

        line = apply_deployment(self.store, obj, self._pod_doc(deployment_template(obj)))
        self.ensure_agent()
        return line

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
                timeout = max(60.0, kubelet.longest_stay(self.backoff) + processes.TERMINATE_GRACE + 10.0)
            self.wait_for(gone, timeout=timeout, interval=0.01, what=f"pod {name} deleted")
        return f'pod "{name}" deleted'

    def cni_check(self, name: str, namespace: str = "default") -> str:
        """CNI CHECK of a running pod's network against its cached ADD result (libcni's CheckNetworkList).

        Returns "ok"; ClusterError with the runtime's words when a plugin finds something wrong.
        (portmap before 1.2, e.g. Debian 12's 1.1.1, fails CHECK of IPv4-only pods looking for
        ip6tables rules: containernetworking/plugins#819.)
        """
        from .cni import CniError, PodNetwork, Runtime, port_mappings
        from .sandbox import Sandbox

        pod = self.pod(name, namespace)
        status = self.store.statuses().get(pod_key(namespace, name)) or {}
        sandbox = Sandbox.from_record((status.get("agent") or {}).get("sandbox"))
        if sandbox is None or not sandbox.alive():
            raise ClusterError(f"pod {name!r} has no running sandbox to check")
        net = PodNetwork(sandbox_id=sandbox.id, netns=sandbox.netns, pod_name=name, pod_namespace=namespace,
                         pod_uid=pod["metadata"]["uid"], port_mappings=port_mappings(pod["spec"]))
        try:
            Runtime(self.view(pod["spec"]["nodeName"])).check(net)
        except CniError as exc:
            raise ClusterError(f"CNI CHECK of pod {name!r}: {exc}") from None
        return "ok"

    # -- nodes ------------------------------------------------------------------------------------
    def exec(self, node: str, cmd: str | list[str], check: bool = True, input: str | bytes | None = None,
             timeout: float | None = 60) -> str:
        v = self.view(node)
        argv = [*v.enter(), *(["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd])]
        env = {"PATH": STD_PATH, "HOSTNAME": node, "HOME": "/root", "LANG": "C.UTF-8"}
        try:
            done = tools.run(argv, f"exec in {node}", input=input, timeout=timeout or 3600, env=env, check=False)
        except tools.TimedOut as exc:
            raise ExecError(f"{node}: `{_show(cmd)}` did not finish in {timeout:g}s", returncode=124,
                            stdout=_text(exc.stdout), stderr=_text(exc.stderr)) from None
        out, err = _text(done.stdout), _text(done.stderr)
        if check and done.returncode != 0:
            words = (err or out).strip() or "(no output)"
            raise ExecError(f"{node}: `{_show(cmd)}` exited with {done.returncode}: {words}",
                            returncode=done.returncode, stdout=out, stderr=err)
        return out

    def cp(self, src: str, dest: str) -> None:
        s_node, s_path = self._side(src)
        d_node, d_path = self._side(dest)
        if s_node and d_node:
            raise ClusterError("cp: copying between two nodes is not supported (docker cp neither); "
                               "copy to the host first")
        if not s_node and not d_node:
            raise ClusterError(f"cp: one of {src!r} and {dest!r} must be NODE:PATH, e.g. kind-worker:/etc/cni/net.d/")
        (s_real, s_root), (d_real, d_root) = self._real(s_node, s_path, src), self._real(d_node, d_path, dest)
        files.copy(s_real, d_real, src, dest, dest.endswith("/"), s_root, d_root)

    def _side(self, spec: str) -> tuple[str | None, str]:
        node, sep, path = spec.partition(":")
        if sep and "/" not in node and node:
            if node not in self._views:
                raise NotFound(f"cp: cluster {self.name!r} has no node {node!r}; nodes are: {', '.join(self._views)}")
            return node, path
        return None, spec

    def _real(self, node: str | None, path: str, spec: str) -> tuple[Path, Path]:
        """The host path of one side of cp, and the root of that side (a node's: /proc/<init>/root)."""
        if node is None:
            return Path(path).absolute(), files.HOST_ROOT
        v = self._views[node]
        if v.problems():
            raise ClusterError(f"cp: node {node} is not running ({'; '.join(v.problems())}); run up again")
        return files.in_node(v.root, path, spec), v.root

    def curl(self, url: str, timeout: float = 5.0) -> HttpResponse:
        return curl_from_host(host_netns(self.name), url, timeout, {v.name: v.ip for v in self._views.values()},
                              networks=(self.record["pod_subnet"], self.record["service_subnet"]))

    def down(self) -> None:
        """Remove every namespace, mount, process, veth and state file of the lab.

        A hostPath folder that `up` made because it was missing (kind/config's `empty`) goes too,
        with whatever was copied into it: the next `up` starts with worker2 broken again.
        """
        with locked():
            teardown(self.name)
        if self._agent is not None:
            self._agent.poll()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _show(cmd: str | list[str]) -> str:
    return cmd if isinstance(cmd, str) else " ".join(map(str, cmd))


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


def wait_for_agent(lab: NetnsCluster, timeout: float = 10) -> None:
    """Wait until the lab's agent runs (tests and benchmarks)."""
    try:
        lab.wait_for(lab.agent_running, timeout=timeout, interval=0.01, what="agent running")
    except WaitTimeout:
        log = (lab.state_dir / "agent.log")
        raise ClusterError(f"the node agent of {lab.name!r} did not start; see {log}") from None
