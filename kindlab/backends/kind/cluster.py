"""KindCluster: a kind cluster, composed of the one Kubernetes API half (KubeApi, context kind-NAME) and the
Docker node half (nodes.DockerNodes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...capabilities import Capabilities
from ...cluster import Cluster
from ...errors import KindlabError
from ...topology import Topology
from ..kube.client import KubeApi
from . import cni as cni_mod
from . import kube as kind_kube
from .cni import description as cni_description
from .nodes import DockerNodes, ExecResult, exec_argv, is_docker_desktop
from .translate import edge

__all__ = ["ExecResult", "KindCluster", "exec_argv", "is_docker_desktop"]

POLL_SECONDS = 1.0
#: A real kubelet healed 16.5 s after a fix whose retry was due by 15 s (the 1 s sync tick, the attempt itself,
#: an image pull policy of Always); on kind, Cilium's endpoint creation comes on top.
KIND_HEAL_SLACK = 6.0
#: What kind's node image has in /opt/cni/bin besides the CNI provider's plugin (kind images/base/Dockerfile).
KIND_NODE_PLUGINS = ("host-local", "loopback", "portmap", "ptp")
DELETE_TIMEOUT = 120.0
KUBECONFIG_HINT = "`kind export kubeconfig --name NAME` writes it"


class KindCluster(Cluster):
    """A kind cluster: nodes are Docker containers, pods and events come from its API server."""

    backend = "kind"
    namespace = "default"

    def __init__(self, name: str, topology: Topology, docker_client: Any = None, api_client: Any = None):
        kube = KubeApi(api_client if api_client is not None else (lambda: kind_kube.api_client(name)),
                       namespace=self.namespace, poll=POLL_SECONDS, where=f"kind cluster {name!r}",
                       delete_timeout=DELETE_TIMEOUT, config_hint=KUBECONFIG_HINT)
        super().__init__(name, topology, api_server=kube, node_access=DockerNodes(name, self.node_names,
                                                                                  docker_client))
        self.kube = kube
        self.docker_nodes: DockerNodes = self.node_access  # type: ignore[assignment]
        self._info: dict[str, str] | None = None
        self._cni_package: str | None = None

    @property
    def docker(self) -> Any:
        """The Docker SDK client."""
        return self.docker_nodes.docker

    @property
    def core(self) -> Any:
        """CoreV1Api on this cluster."""
        return self.kube.core

    @property
    def apps(self) -> Any:
        """AppsV1Api on this cluster."""
        return self.kube.apps

    @property
    def substitutions(self) -> list[str]:
        """Each Cilium file kindlab-cni's replaced, as printed at create (none with Cilium)."""
        from .state import load_state

        return list(load_state(self.name).get("substitutions") or [])

    @property
    def curl_from_node(self) -> bool | None:
        """Whether curl runs inside a node (Docker Desktop, rootless Docker); None until the first curl."""
        return self.docker_nodes.curl_from_node

    @curl_from_node.setter
    def curl_from_node(self, value: bool | None) -> None:
        self.docker_nodes.curl_from_node = value

    def exec_result(self, node: str, cmd: str | list[str], input: str | bytes | None = None,
                    timeout: float | None = 60) -> ExecResult:
        """Run a command in a node and return its exit code and output, whatever the exit code."""
        return self.docker_nodes.exec_result(node, cmd, input=input, timeout=timeout)

    @property
    def capabilities(self) -> Capabilities:
        """kind: the real kubelet (10 s back-off), a pod watch, and the node image's CNI plugins."""
        info = self._node_info()
        return Capabilities(
            backend=self.backend, kubelet="real", kubernetes_version=info.get("kubeletVersion", "unknown"),
            runtime_version=info.get("containerRuntimeVersion", "unknown"), cni_plugins=self._cni_plugins(),
            watches_pods=True,
            immediate_retries=1, kubeconfig=True,
            poll_interval=POLL_SECONDS, pod_timeout=300.0, heal_slack=KIND_HEAL_SLACK, portmap_source=None,
            runtime_timestamps=False,
            node_plugins=KIND_NODE_PLUGINS, cni=cni_description(self.cni))

    @property
    def cni(self) -> str:
        """The CNI kindlab installed on the cluster: "cilium" or "kindlab" (kindlab.backends.kind.cni)."""
        from .state import load_state

        return str(load_state(self.name).get("cni") or cni_mod.CILIUM)

    def _cni_plugins(self) -> str:
        """The CNI plugins' package in the first node, as its dpkg says (kindlab's image: the pinned 1.9.1)."""
        if self._cni_package is None:
            try:
                node = self.node_names()[0]
                said = self.exec_result(node, ["dpkg-query", "-W", "-f", "${Package} ${Version}",
                                               "containernetworking-plugins"], timeout=20)
            except (KindlabError, IndexError):
                return "unknown"
            self._cni_package = said.stdout.strip() if said.returncode == 0 and said.stdout.strip() else (
                "not a dpkg package in the node image")
        return self._cni_package

    def _node_info(self) -> dict[str, str]:
        if self._info is None:
            try:
                nodes = self.node_list()
            except KindlabError:
                return {}
            self._info = (nodes[0].get("status") or {}).get("nodeInfo") or {} if nodes else {}
        return self._info

    @edge
    def kubeconfig(self) -> str:
        """`kind get kubeconfig --name NAME` (its server at the host's port where kindlab forwards it)."""
        return kind_kube.kubeconfig(self.name)

    def watch_events(self, timeout: float = 60.0, namespace: str | None = None) -> Iterator[tuple[float, str, dict]]:
        """Event changes as (time.monotonic(), ADDED|MODIFIED|DELETED, v1 Event dict) until `timeout` seconds."""
        return self.kube.watch_events(timeout, namespace)

    def down(self) -> None:
        """`kindlab delete cluster`: the cluster, its host folders, its forwarder, and kindlab's engine once it runs
        no cluster."""
        from .teardown import delete

        delete(self.name)
