"""Node debug pods, as `kubectl debug node/NAME` makes them: one short-lived pod per node that runs commands
in the node's own filesystem (`chroot /host`) and network namespace (hostNetwork).

    manifest      the pod: privileged, hostNetwork and hostPID, the node's / at /host, every taint
                  tolerated, nodeName set (no scheduler), labelled LABEL so that it can be found
    DebugPods     make them on demand (`exec`), wait out an earlier run's namespace still going away, wait
                  until each runs, and delete them all on `close`:
                  used as a context manager, also on Ctrl-C and on a timeout
    leftovers     the debug pods still there (a test's check, and `kindlab doctor --dry-run`)

Commands run as `/bin/busybox chroot /host CMD...`: the image needs only a static busybox (busybox:1.36,
or the lab's own image of Debian's busybox-static), and the node's own tools do the work.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

from ...errors import ClusterError, ExecError, WaitTimeout
from ...waiting import Deadline

NAMESPACE = "kindlab-doctor"
LABEL = "app.kubernetes.io/name"
LABEL_VALUE = "kindlab-doctor"
IMAGE = "docker.io/library/busybox:1.36"
LIFETIME = 600          # a pod left behind (a killed doctor) ends by itself after this many seconds
START_TIMEOUT = 60.0
TERMINATING = "NamespaceTerminating"   # the cause of a create refused in a namespace going away
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # the node's tools, not the image's


def manifest(node: str, image: str = IMAGE, namespace: str = NAMESPACE, lifetime: int = LIFETIME) -> dict[str, Any]:
    """The debug pod for `node` (v1 Pod)."""
    suffix = secrets.token_hex(3)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"kindlab-doctor-{node}-{suffix}"[:63].rstrip("-"), "namespace": namespace,
                     "labels": {LABEL: LABEL_VALUE, "kindlab.io/node": node[:63]}},
        "spec": {
            "nodeName": node, "hostNetwork": True, "hostPID": True, "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0, "activeDeadlineSeconds": lifetime,
            "tolerations": [{"operator": "Exists"}], "automountServiceAccountToken": False,
            "containers": [{
                "name": "debugger", "image": image, "imagePullPolicy": "IfNotPresent",
                # PID 1 ignores SIGTERM unless it handles it: stop at once when deleted
                "command": ["/bin/busybox", "sh", "-c", f"trap 'exit 0' TERM; sleep {lifetime} & wait"],
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
            }],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        },
    }


def namespace_manifest(namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {LABEL: LABEL_VALUE}}}


class DebugPods:
    """The debug pods of one doctor run, made on demand and all deleted on `close`."""

    def __init__(self, core: Any, image: str = IMAGE, namespace: str = NAMESPACE, timeout: float = START_TIMEOUT):
        self.core, self.image, self.namespace, self.timeout = core, image, namespace, timeout
        self.pods: dict[str, str] = {}
        self.made_namespace = False

    def __enter__(self) -> DebugPods:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        deadline = Deadline(self.timeout)
        while True:   # an earlier run's namespace may still be going away
            try:
                ns = self.core.read_namespace(self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.made_namespace = True
                self.core.create_namespace(namespace_manifest(self.namespace))
                return
            if (ns.status.phase if ns.status else None) != "Terminating":
                return
            if deadline.passed:
                raise WaitTimeout(f"namespace {self.namespace} is still being deleted after {self.timeout:g}s")
            time.sleep(0.5)

    def _create(self, body: dict[str, Any]) -> None:
        """Create the pod. Right after an earlier run's namespace is gone and this one is made, the API server's
        admission may still hold the old one, Terminating, and refuse the pod (403, cause NamespaceTerminating):
        the namespace is then checked again, as at the start, until the start timeout."""
        from kubernetes.client.exceptions import ApiException

        deadline = Deadline(self.timeout)
        while True:
            try:
                self.core.create_namespaced_pod(self.namespace, body)
                return
            except ApiException as exc:
                if exc.status != 403 or TERMINATING not in (exc.body or "") or deadline.passed:
                    raise
            time.sleep(0.5)
            self._namespace()

    def pod(self, node: str) -> str:
        """The node's debug pod, made and Running."""
        if node in self.pods:
            return self.pods[node]
        if not self.pods:
            self._namespace()
        body = manifest(node, self.image, self.namespace)
        name = body["metadata"]["name"]
        self.pods[node] = name   # before it exists: an interrupt during the create still deletes it
        self._create(body)
        deadline = Deadline(self.timeout)
        while True:
            status = self.core.read_namespaced_pod(name, self.namespace).status
            if status.phase == "Running":
                return name
            if status.phase in ("Failed", "Succeeded"):
                raise ClusterError(f"the debug pod on {node} ended ({status.phase}: {status.reason or ''}); "
                                   f"see: kubectl -n {self.namespace} describe pod {name}")
            if deadline.passed:
                waiting = [c.state.waiting.reason for c in status.container_statuses or [] if c.state.waiting]
                raise WaitTimeout(f"the debug pod on {node} is not Running after {self.timeout:g}s "
                                  f"({', '.join(w for w in waiting if w) or status.phase}); is image {self.image} "
                                  "pullable there? (--image)")
            time.sleep(0.2)

    def exec(self, node: str, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
        """Run `argv` in the node's own root and network namespace; (exit code, stdout, stderr)."""
        from kubernetes.stream import stream

        name = self.pod(node)
        resp = stream(self.core.connect_get_namespaced_pod_exec, name, self.namespace,
                      command=["/bin/busybox", "env", f"PATH={NODE_PATH}", "chroot", "/host", *argv], stderr=True,
                      stdin=False, stdout=True,
                      tty=False, _preload_content=False)
        out, err = [], []
        deadline = Deadline(timeout)
        try:
            while resp.is_open():
                if deadline.passed:
                    raise ExecError(f"{node}: `{' '.join(argv)}` did not finish in {timeout:g}s", returncode=124)
                resp.update(timeout=1)
                if resp.peek_stdout():
                    out.append(resp.read_stdout())
                if resp.peek_stderr():
                    err.append(resp.read_stderr())
            code = resp.returncode
        finally:
            resp.close()
        return (0 if code is None else int(code)), "".join(out), "".join(err)

    def close(self) -> None:
        """Delete every debug pod this run made (at once: grace period 0), and its namespace if it made it."""
        for name in list(self.pods.values()):
            try:
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
            except Exception:  # gone already, or the API is unreachable: the pods end by themselves
                pass
        self.pods.clear()
        if self.made_namespace:
            try:
                self.core.delete_namespace(self.namespace)
            except Exception:  # as above
                pass
            self.made_namespace = False


def leftovers(core: Any, namespace: str = NAMESPACE) -> list[str]:
    """The names of debug pods still in `namespace` (terminating ones included)."""
    from kubernetes.client.exceptions import ApiException

    try:
        items = core.list_namespaced_pod(namespace, label_selector=f"{LABEL}={LABEL_VALUE}").items
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return [p.metadata.name for p in items]


def dry_run(nodes: list[str], image: str = IMAGE, namespace: str = NAMESPACE) -> Iterator[dict[str, Any]]:
    """What a doctor run would create: its namespace (if missing) and one pod per node."""
    yield namespace_manifest(namespace)
    for node in nodes:
        yield manifest(node, image, namespace)
