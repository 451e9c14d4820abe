"""The lab's API-server part for a new pod: validate a manifest's names and make the v1 Pod it stores."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from ... import objects
from ...errors import ManifestError
from ...model.pods import rfc3339

DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CREATED_AT = "kindlab.io/created-at"


def pod_doc(obj: objects.PodSpec, lab_name: str, nodes: list[str],
            owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The v1 Pod the lab stores for `obj`: a uid, timestamps, defaults; ManifestError for bad names or nodes."""
    where = obj.source or "<manifest>"
    if not DNS_NAME.match(obj.name) or len(obj.name) > 253:
        raise ManifestError(f"{where}: metadata.name: {obj.name!r} is not a valid name (lowercase letters, "
                            "digits, '-' and '.')")
    if not DNS_NAME.match(obj.namespace):
        raise ManifestError(f"{where}: metadata.namespace: {obj.namespace!r} is not a valid namespace")
    if obj.node_name is not None and obj.node_name not in nodes:
        raise ManifestError(f"{where}: spec.nodeName: cluster {lab_name!r} has no node {obj.node_name!r}; "
                            f"nodes are: {', '.join(nodes)}")
    manifest = obj.to_manifest()
    now = time.time()
    meta = {**manifest["metadata"], "uid": str(uuid.uuid4()), "creationTimestamp": rfc3339(now),
            "annotations": {CREATED_AT: f"{now:.6f}"}}
    if owner:
        meta["ownerReferences"] = [owner]
    spec = {**manifest["spec"], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def deployment_template(obj: objects.Deployment) -> objects.PodSpec:
    """A deployment's pod template as a PodSpec named after the deployment (its pods get their own names)."""
    return objects.PodSpec(name=obj.name, namespace=obj.namespace, labels=obj.template.labels,
                           node_name=obj.template.node_name, containers=obj.template.containers, source=obj.source)
