"""KubeApi: pods, nodes and events through a Kubernetes API server, in the API server's own JSON shape.

One client for every real cluster: the kind backend and the lab's real Kubernetes both use it, so the
same code lists, watches, creates and deletes pods and reads events everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ... import objects
from ...errors import WaitTimeout
from . import shapes

DELETE_TIMEOUT = 120.0


class KubeApi:
    """A Kubernetes API client for one namespace; `make_client()` gives the ApiClient when first needed."""

    def __init__(self, make_client: Callable[[], Any] | Any, namespace: str = "default", poll: float = 1.0):
        self._make = make_client if callable(make_client) else (lambda: make_client)
        self._client: Any = None
        self.namespace = namespace
        self.poll = poll

    @property
    def client(self) -> Any:
        """The kubernetes ApiClient."""
        if self._client is None:
            self._client = self._make()
        return self._client

    @property
    def core(self) -> Any:
        """CoreV1Api."""
        from kubernetes.client import CoreV1Api

        return CoreV1Api(self.client)

    @property
    def apps(self) -> Any:
        """AppsV1Api."""
        from kubernetes.client import AppsV1Api

        return AppsV1Api(self.client)

    # -- reads ------------------------------------------------------------------------------------
    def node_list(self) -> list[dict[str, Any]]:
        """The nodes as v1 Node JSON."""
        return [shapes.to_json(n) for n in self.core.list_node().items]

    def pod_list(self) -> list[dict[str, Any]]:
        """The namespace's pods as v1 Pod JSON."""
        return [shapes.to_json(p) for p in self.core.list_namespaced_pod(self.namespace).items]

    def event_list(self) -> list[dict[str, Any]]:
        """The namespace's events as v1 Event JSON."""
        return [shapes.to_json(e) for e in self.core.list_namespaced_event(self.namespace).items]

    # -- changes -----------------------------------------------------------------------------------
    def apply_object(self, obj: objects.Manifest) -> str:
        """`kubectl apply` of one Pod or Deployment; kubectl's line."""
        body = shapes.manifest(obj)
        if body["kind"] == "Pod":
            core = self.core
            return shapes.apply(body, "pod", core.read_namespaced_pod, core.create_namespaced_pod,
                                core.patch_namespaced_pod)
        apps = self.apps
        return shapes.apply(body, "deployment.apps", apps.read_namespaced_deployment,
                            apps.create_namespaced_deployment, apps.patch_namespaced_deployment)

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True,
                   timeout: float = DELETE_TIMEOUT) -> str:
        """`kubectl delete pod` (and, with wait, until it is gone); kubectl's line."""
        self.core.delete_namespaced_pod(name, namespace)
        if wait:
            deadline = time.monotonic() + timeout
            while not self.pod_gone(name, namespace):
                if time.monotonic() > deadline:
                    raise WaitTimeout(f"pod {name} not gone {timeout:g}s after its deletion")
                time.sleep(self.poll)
        return f'pod "{name}" deleted'

    def pod_gone(self, name: str, namespace: str) -> bool:
        """True when the API server no longer has the pod."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    # -- watches -------------------------------------------------------------------------------------
    def watch(self, lister: str, timeout: float, namespace: str | None = None) -> Iterator[tuple[float, str, dict]]:
        """(time.monotonic(), ADDED|MODIFIED|DELETED, object JSON) from a watch on CoreV1Api.`lister`."""
        from kubernetes import watch

        stream = watch.Watch()
        list_fn = getattr(self.core, lister)
        try:
            for event in stream.stream(list_fn, namespace or self.namespace, timeout_seconds=max(1, int(timeout))):
                yield time.monotonic(), event["type"], event["raw_object"]
        finally:
            stream.stop()
