"""KubeApi: the API half of every cluster with a real API server (kind, the lab's real Kubernetes, any cluster
by its kubeconfig): pods, nodes and events in the API server's own JSON shape.

Written once: every such cluster composes it as its `api_server`, so the same code lists, watches, creates and
deletes pods and reads events everywhere, and its errors pass through the one translator (errors.kube_errors).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ... import objects
from ...waiting import until
from . import shapes
from .errors import kube_errors

DELETE_TIMEOUT = 120.0


class KubeApi:
    """A Kubernetes API client; `make_client()` gives the ApiClient when first needed.

    `namespace` is where pods and events are read and made (None: pods and events of every namespace are read);
    `where` names the cluster in errors; `poll` is the delete's wait between reads.
    """

    def __init__(self, make_client: Callable[[], Any] | Any, namespace: str | None = "default", poll: float = 1.0,
                 where: str = "the cluster", delete_timeout: float = DELETE_TIMEOUT, config_hint: str = ""):
        self._make = make_client if callable(make_client) else (lambda: make_client)
        self._client: Any = None
        self.namespace = namespace
        self.poll = poll
        self.delete_timeout = delete_timeout
        self.errors = kube_errors(where, config_hint)

    @property
    def client(self) -> Any:
        """The kubernetes ApiClient."""
        if self._client is None:
            with self.errors:
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
        with self.errors:
            return [shapes.to_json(n) for n in self.core.list_node().items]

    def pod_list(self) -> list[dict[str, Any]]:
        """The namespace's (or every namespace's) pods as v1 Pod JSON."""
        with self.errors:
            core = self.core
            found = (core.list_pod_for_all_namespaces() if self.namespace is None
                     else core.list_namespaced_pod(self.namespace))
            return [shapes.to_json(p) for p in found.items]

    def event_list(self) -> list[dict[str, Any]]:
        """The namespace's (or every namespace's) events as v1 Event JSON."""
        with self.errors:
            core = self.core
            found = (core.list_event_for_all_namespaces() if self.namespace is None
                     else core.list_namespaced_event(self.namespace))
            return [shapes.to_json(e) for e in found.items]

    # -- changes -----------------------------------------------------------------------------------
    def apply_object(self, obj: objects.Manifest) -> str:
        """`kubectl apply` of one Pod or Deployment; kubectl's line."""
        body = shapes.manifest(obj)
        with self.errors:
            if body["kind"] == "Pod":
                core = self.core
                return shapes.apply(body, "pod", core.read_namespaced_pod, core.create_namespaced_pod,
                                    core.patch_namespaced_pod)
            apps = self.apps
            return shapes.apply(body, "deployment.apps", apps.read_namespaced_deployment,
                                apps.create_namespaced_deployment, apps.patch_namespaced_deployment)

    def delete_pod(self, name: str, namespace: str = "default", wait: bool = True,
                   timeout: float | None = None) -> str:
        """`kubectl delete pod` (and, with wait, until it is gone: by default `delete_timeout`); kubectl's line."""
        timeout = self.delete_timeout if timeout is None else timeout
        with self.errors:
            self.core.delete_namespaced_pod(name, namespace)
            if wait:
                until(lambda: self.pod_gone(name, namespace), timeout, every=self.poll,
                      what=f"pod {name} gone after its deletion")
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
    def watch_pods(self, timeout: float = 60.0, namespace: str | None = None) -> Iterator[tuple[float, str, dict]]:
        """Pod changes as (time.monotonic(), ADDED|MODIFIED|DELETED, v1 Pod JSON) for `timeout` seconds."""
        return self.watch("list_namespaced_pod", timeout, namespace)

    def watch_events(self, timeout: float = 60.0, namespace: str | None = None) -> Iterator[tuple[float, str, dict]]:
        """Event changes as (time.monotonic(), ADDED|MODIFIED|DELETED, v1 Event JSON) for `timeout` seconds."""
        return self.watch("list_namespaced_event", timeout, namespace)

    def watch(self, lister: str, timeout: float, namespace: str | None = None) -> Iterator[tuple[float, str, dict]]:
        """(time.monotonic(), ADDED|MODIFIED|DELETED, object JSON) from a watch on CoreV1Api.`lister`."""
        from kubernetes import watch

        stream = watch.Watch()
        with self.errors:
            list_fn = getattr(self.core, lister)
            try:
                for event in stream.stream(list_fn, namespace or self.namespace or "default",
                                           timeout_seconds=max(1, int(timeout))):
                    yield time.monotonic(), event["type"], event["raw_object"]
            finally:
                stream.stop()
