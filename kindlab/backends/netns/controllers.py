"""The control plane's small part: deployments (straight to pods, without ReplicaSets) and scheduling.

Deployments are kept in the store's deployments/ folder. `reconcile_deployments` makes each one's
pods match its template and replica count (a changed template replaces all pods, like the
Recreate strategy); both `apply` and the agent's loop run it. Pods without spec.nodeName are
scheduled by the agent with `pick_node`: not onto the tainted control-plane, not where their
hostPorts are taken, onto the node with the fewest pods.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ... import objects
from .names import pod_key
from .state.store import Store, read_json, timestamp, write_json

if TYPE_CHECKING:
    from .nodes import NodeView

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TAINT = "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
NO_PORTS = "node(s) didn't have free ports for the requested pod ports"


def template_hash(template: dict[str, Any]) -> str:
    """A pod-template-hash, as Kubernetes spells them."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:10])


def apply_deployment(store: Store, obj: objects.Deployment, template: dict[str, Any]) -> str:
    """Create or update a deployment from its validated pod `template` (podspec.pod_doc), then make its pods."""
    spec = {"replicas": obj.replicas, "selector": {"matchLabels": dict(obj.template.labels)},
            "template": {"metadata": {"labels": dict(obj.template.labels)}, "spec": template["spec"]}}
    folder = store.root / "deployments"
    folder.mkdir(exist_ok=True)
    path = folder / f"{pod_key(obj.namespace, obj.name)}.json"
    with store.lock():
        old = read_json(path)
        if old is not None and old["spec"] == spec:
            return f"deployment.apps/{obj.name} unchanged"
        meta: dict[str, Any] = old["metadata"] if old else {
            "name": obj.name, "namespace": obj.namespace, "uid": str(uuid.uuid4()),
            "creationTimestamp": timestamp(), "generation": 0}
        meta = {**meta, "labels": dict(obj.labels), "generation": meta.get("generation", 0) + 1}
        write_json(path, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})
        store.bump()
    reconcile_deployments(store)
    return f"deployment.apps/{obj.name} {'configured' if old else 'created'}"


def reconcile_deployments(store: Store) -> bool:
    """Make every deployment's pods match it; delete pods whose deployment is gone. True if anything changed."""
    folder = store.root / "deployments"
    if not folder.exists():
        return False
    changed = False
    with store.lock():
        deployments = [d for d in (read_json(p) for p in sorted(folder.glob("*.json"))) if d]
        pods = store.desired_pods()
        uids = {d["metadata"]["uid"] for d in deployments}
        for key, pod in pods.items():
            owner = _owner(pod)
            if owner and owner not in uids and not pod["metadata"].get("deletionTimestamp"):
                _mark_deleted(store, key, pod)
                changed = True
        for dep in deployments:
            changed |= _reconcile_one(store, dep, pods)
        if changed:
            store.bump()
    return changed


def _owner(pod: dict[str, Any]) -> str | None:
    refs = pod["metadata"].get("ownerReferences") or []
    return refs[0]["uid"] if refs else None


def _mark_deleted(store: Store, key: str, pod: dict[str, Any]) -> None:
    pod["metadata"]["deletionTimestamp"] = timestamp()
    store.put_desired(key, pod)


def _reconcile_one(store: Store, dep: dict[str, Any], pods: dict[str, dict[str, Any]]) -> bool:
    meta, spec = dep["metadata"], dep["spec"]
    h = template_hash(spec["template"])
    owned = [(k, p) for k, p in pods.items() if _owner(p) == meta["uid"] and not p["metadata"].get("deletionTimestamp")]
    current = [(k, p) for k, p in owned if p["metadata"].get("labels", {}).get("pod-template-hash") == h]
    changed = False
    for k, p in owned:
        if (k, p) not in current:
            _mark_deleted(store, k, p)
            changed = True
    current.sort(key=lambda kp: kp[1]["metadata"].get("annotations", {}).get("kindlab.io/created-at", ""))
    for k, p in current[spec["replicas"]:]:
        _mark_deleted(store, k, p)
        changed = True
    for _ in range(spec["replicas"] - len(current)):
        name = f"{meta['name']}-{h}-{''.join(secrets.choice(ALPHABET) for _ in range(5))}"
        now = time.time()
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": meta["namespace"],
                            "labels": {**spec["template"]["metadata"]["labels"], "pod-template-hash": h},
                            "uid": str(uuid.uuid4()), "creationTimestamp": timestamp(now),
                            "annotations": {"kindlab.io/created-at": f"{now:.6f}"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True}]},
               "spec": dict(spec["template"]["spec"])}
        store.put_desired(pod_key(meta["namespace"], name), pod)
        changed = True
    return changed


def pick_node(pod: Any, views: dict[str, NodeView], pods: Iterable[Any],
              conflict: Callable[[list, list], bool]) -> tuple[str | None, str]:
    """The node to run `pod` on, or None and the scheduler's FailedScheduling message."""
    reasons: Counter[str] = Counter()
    load: Counter[str] = Counter()
    placed = [p for p in pods if p is not pod and p.node and p.stage not in ("rejected", "unschedulable")]
    for p in placed:
        load[p.node] += 1
    candidates = []
    wanted = pod.host_ports()
    for v in views.values():
        if v.role == "control-plane":
            reasons[TAINT] += 1
        elif wanted and any(p.node == v.name and conflict(wanted, p.host_ports()) for p in placed):
            reasons[NO_PORTS] += 1
        else:
            candidates.append(v)
    if not candidates:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda rn: rn[1]))
        return None, f"0/{len(views)} nodes are available: {detail}."
    best = min(candidates, key=lambda v: (load[v.name], v.index))
    return best.name, ""


def bind(store: Store, key: str, uid: str, node: str) -> bool:
    """Set the pod's spec.nodeName, as a Binding does; False if the pod changed meanwhile."""
    with store.lock():
        doc = store.desired_pod(key)
        if doc is None or doc["metadata"]["uid"] != uid or doc["metadata"].get("deletionTimestamp"):
            return False
        doc["spec"]["nodeName"] = node
        store.put_desired(key, doc)
    return True
