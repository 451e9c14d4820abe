"""RemoteCluster: any Kubernetes cluster through a kubeconfig, as far as doctor needs one.

Nodes, pods (every namespace) and events come from the API server; `exec` on a node runs in a node
debug pod (debug.py: the node's own root and network namespace). Nothing else is made, and the debug
pods go on `close` (the class is a context manager). Copying files and curl are not offered: kindlab
sends no traffic to a cluster it did not make.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ... import objects
from ...capabilities import Capabilities
from ...cluster import Cluster, HttpResponse, node_summary
from ...errors import ClusterError, ExecError, KindlabError
from ...input_files import load_one, read_text
from ...topology import Networking, Node, Topology
from .client import KubeApi
from .debug import IMAGE, NAMESPACE, DebugPods
from .errors import kubernetes_error


def api_client(kubeconfig: str | Path | dict[str, Any], context: str | None = None) -> Any:
    """An ApiClient for `kubeconfig` (a file, or its parsed YAML) and `context`, verifying the server as it says."""
    from kubernetes import config
    from kubernetes.client import Configuration

    where = "the kubeconfig" if isinstance(kubeconfig, dict) else f"kubeconfig {kubeconfig}"
    settings = Configuration()
    settings.retries = 0     # no retries behind the caller's deadline, and no urllib3 warnings about them
    try:
        if isinstance(kubeconfig, dict):
            return config.new_client_from_config_dict(kubeconfig, context=context, persist_config=False,
                                                      client_configuration=settings)
        path = Path(kubeconfig).expanduser()
        if not path.exists():
            raise ClusterError(f"--kubeconfig {kubeconfig}: no such file; give the kubeconfig of the cluster to "
                               "check (e.g. `kind get kubeconfig --name kind > kubeconfig`)")
        doc = load_one(read_text(path, ClusterError, "kubeconfig"), f"kubeconfig {kubeconfig}", ClusterError)
        if not isinstance(doc, dict) or not isinstance(doc.get("clusters"), list):
            raise ClusterError(f"kubeconfig {kubeconfig}: not a kubeconfig (a YAML mapping with `clusters`, "
                               "`users` and `contexts`); e.g. `kind get kubeconfig --name kind > kubeconfig`")
        return config.new_client_from_config(config_file=str(path), context=context, persist_config=False,
                                             client_configuration=settings)
    except KindlabError:
        raise
    except Exception as exc:
        mapped = kubernetes_error(exc, where)
        raise (mapped or ClusterError(f"{where} cannot be used: {' '.join(str(exc).split())}")) from None


def connect(kubeconfig: str | Path | dict[str, Any], context: str | None = None, *, name: str | None = None,
            image: str = IMAGE, namespace: str = NAMESPACE, nodes: list[str] | None = None,
            topology: Topology | None = None) -> RemoteCluster:
    """The cluster of `kubeconfig` (a file or its parsed YAML), for doctor: `with connect(...) as cluster:`."""
    return RemoteCluster(api_client(kubeconfig, context), name=name or context or "cluster", image=image,
                         namespace=namespace, nodes=nodes, topology=topology)


class DebugPodNodes:
    """The node half of a cluster reached by its kubeconfig: exec through node debug pods; no cp, no curl."""

    def __init__(self, debug: DebugPods):
        self.debug = debug

    def exec(self, node: str, cmd: str | list[str], check: bool = True, input: str | bytes | None = None,
             timeout: float | None = 60) -> str:
        if input is not None:
            raise ClusterError("exec with input is not offered on a cluster reached through its kubeconfig")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
        code, out, err = self.debug.exec(node, argv, timeout=timeout or 60)
        if check and code != 0:
            raise ExecError(f"{node}: `{' '.join(argv)}` exited with {code}: {(err or out).strip() or '(no output)'}",
                            returncode=code, stdout=out, stderr=err)
        return out

    def cp(self, src: str, dest: str) -> None:
        raise ClusterError("cp is not offered on a cluster reached through its kubeconfig (doctor only reads)")

    def curl(self, url: str, timeout: float = 5.0) -> HttpResponse:
        raise ClusterError("curl is not offered on a cluster kindlab did not make: kindlab sends it no traffic")


class RemoteCluster(Cluster):
    """A cluster kindlab did not make, read through its API server (every namespace); exec through node debug
    pods."""

    backend = "kubeconfig"

    def __init__(self, api: Any, name: str = "cluster", image: str = IMAGE, namespace: str = NAMESPACE,
                 nodes: list[str] | None = None, topology: Topology | None = None):
        self.kube = KubeApi(api, namespace=None, where=f"cluster {name!r}")
        self.debug = DebugPods(self.kube.core, image=image, namespace=namespace)
        self._nodes = self.kube.node_list()
        wanted = nodes or [n["metadata"]["name"] for n in self._nodes]
        known = [n["metadata"]["name"] for n in self._nodes]
        if unknown := [n for n in wanted if n not in known]:
            raise ClusterError(f"cluster {name!r} has no node {', '.join(unknown)}; nodes are: {', '.join(known)}")
        if topology is None:
            rows = {n["metadata"]["name"]: node_summary(n) for n in self._nodes}
            topology = Topology(name=name, nodes=tuple(Node(name=n, role=rows[n]["role"], index=i,
                                                            pod_cidr=rows[n]["podCIDR"] or "")
                                                       for i, n in enumerate(wanted)),
                                networking=Networking())
        super().__init__(name, topology, api_server=self.kube, node_access=DebugPodNodes(self.debug))

    def __enter__(self) -> RemoteCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the debug pods this run made."""
        self.debug.close()

    @property
    def capabilities(self) -> Capabilities:
        info = ((self._nodes[0].get("status") or {}).get("nodeInfo") or {}) if self._nodes else {}
        return Capabilities(backend=self.backend, kubelet="real", kubernetes_version=info.get("kubeletVersion", "?"),
                            runtime_version=info.get("containerRuntimeVersion", "?"), watches_pods=True,
                            poll_interval=1.0, immediate_retries=1, pod_timeout=300.0, kubeconfig=True)

    def node_list(self) -> list[dict[str, Any]]:
        """The nodes asked for (`--node`), else every node."""
        wanted = set(self.node_names())
        return [n for n in super().node_list() if n["metadata"]["name"] in wanted]

    # -- changes: none ------------------------------------------------------------------------------
    def apply_object(self, obj: objects.Manifest) -> str:
        raise ClusterError("kindlab changes nothing on a cluster reached through its kubeconfig but its debug pods")

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True) -> str:
        raise ClusterError("kindlab changes nothing on a cluster reached through its kubeconfig but its debug pods")

    def down(self) -> None:
        raise ClusterError("kindlab deletes only clusters it made")
