"""Kubernetes objects as the API server speaks them: JSON shapes of client models, manifests, kubectl-like apply."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ... import objects

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
PATCH_TYPE = "application/strategic-merge-patch+json"
_UTC_SUFFIX = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)\+00:00$")


def to_json(model: Any) -> Any:
    """A client model as the API server's JSON (camelCase keys; timestamps end in Z as kubectl prints)."""
    from kubernetes.client import ApiClient

    return _utc_z(ApiClient().sanitize_for_serialization(model))


def _utc_z(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _utc_z(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utc_z(v) for v in value]
    if isinstance(value, str):
        match = _UTC_SUFFIX.match(value)
        return match.group(1) + "Z" if match else value
    return value


# -- manifests --------------------------------------------------------------------------------
def manifest(obj: objects.Manifest) -> dict[str, Any]:
    """The object as the manifest kindlab sends: a v1 Pod or an apps/v1 Deployment."""
    if isinstance(obj, objects.PodSpec):
        return obj.to_manifest()
    pod = obj.template.to_manifest()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": obj.name, "namespace": obj.namespace, "labels": dict(obj.labels)},
        "spec": {
            "replicas": obj.replicas,
            # The loader checked that the selector is part of the template's labels and keeps
            # only the labels: selecting on all of them is equivalent for kindlab's manifests.
            "selector": {"matchLabels": dict(obj.template.labels)},
            "template": {"metadata": {"labels": dict(obj.template.labels)}, "spec": pod["spec"]},
        },
    }


def with_last_applied(body: dict[str, Any]) -> dict[str, Any]:
    """The manifest annotated with itself, as `kubectl apply` records what it applied."""
    applied = json.dumps(body, sort_keys=True, separators=(",", ":"))
    meta = dict(body["metadata"])
    meta["annotations"] = {**meta.get("annotations", {}), LAST_APPLIED: applied}
    return {**body, "metadata": meta}


def last_applied(live: Any) -> str | None:
    """The last-applied annotation of a live object (model or dict), if any."""
    meta = to_json(live).get("metadata", {})
    return (meta.get("annotations") or {}).get(LAST_APPLIED)


def apply(body: dict[str, Any], resource: str, read: Callable, create: Callable, patch: Callable) -> str:
    """Create-or-update like `kubectl apply`; returns kubectl's line: created, unchanged or configured."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = body["metadata"]["name"], body["metadata"].get("namespace", "default")
    body = with_last_applied(body)
    try:
        live = read(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        create(namespace, body)
        return f"{resource}/{name} created"
    if last_applied(live) == body["metadata"]["annotations"][LAST_APPLIED]:
        return f"{resource}/{name} unchanged"
    patch(name, namespace, body, _content_type=PATCH_TYPE)
    return f"{resource}/{name} configured"


def is_ready(node: dict[str, Any]) -> bool:
    """True when a v1 Node's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])
