"""kind's recording (tests/data/kind, a real kind cluster) and the real lab's (tests/data/real, record.py) agree
where the same components made them: the kubelet v1.20.2 and containerd 1.7.24 run in kind's nodes (kindlab's node
image) and in the lab's. The kubelet's event messages and event shape, the sequence of worker2's events, the API
server's pod and node field layout must be the same; kind's own (its addresses, labels, providerID) may differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"
SANDBOX_ID = re.compile(r'sandbox \\?"[0-9a-f]{64}\\?"')
# v1.20 mounted the service-account token from a Secret; the kind fixture's newer API server uses a projected volume
V120_ONLY = (".spec.volumes[].secret",)
INCIDENTAL = {"FailedMount"}   # a pod applied as the lab came up: its secret's list beat the Node authorizer


def load(folder: str, name: str) -> list[dict[str, Any]]:
    return json.loads((DATA / folder / f"{name}.json").read_text())["items"]


def real(name: str) -> list[dict[str, Any]]:
    return load("real", f"broken-{name}")


def kind(name: str) -> list[dict[str, Any]]:
    return load("kind", name)


def of(items: list[dict[str, Any]], pod: str, reason: str | None = None) -> list[dict[str, Any]]:
    return [e for e in items if e["involvedObject"]["name"] == pod and reason in (None, e["reason"])]


def template(message: str) -> str:
    """The message with its sandbox id replaced by <id>."""
    return SANDBOX_ID.sub('sandbox "<id>"', message)


def paths(value: Any, prefix: str = "") -> set[str]:
    """Every field path of a JSON value (lists as [])."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in {f"{prefix}.{k}"} | paths(v, f"{prefix}.{k}")}
    if isinstance(value, list):
        return {p for v in value for p in paths(v, f"{prefix}[]")}
    return set()


def api_paths(obj: dict[str, Any]) -> set[str]:
    """Field paths without managedFields (trimmed from the kind fixtures) and v1.20-only fields."""
    return {p for p in paths(obj) if ".managedFields" not in p and not p.startswith(V120_ONLY)}


def states(pod: dict[str, Any]) -> list[Any]:
    """Each container's state: the waiting reason in full, else which state (running) it is in."""
    return [s["state"] if "waiting" in s["state"] else list(s["state"]) for s in pod["status"]["containerStatuses"]]


def test_failed_sandbox_message_is_containerds_real_wording():
    recorded = of(real("events"), "echo-kind-worker2", "FailedCreatePodSandBox")
    fixture = of(kind("events"), "echo-kind-worker2", "FailedCreatePodSandBox")
    assert {template(e["message"]) for e in fixture} == {template(e["message"]) for e in recorded} == {
        'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "<id>": '
        'plugin type="portmap" failed (add): failed to find plugin "portmap" in path [/opt/cni/bin]'}
    assert {e["type"] for e in fixture + recorded} == {"Warning"}
    assert {e["count"] for e in fixture + recorded} == {1}   # a new sandbox id each time: an event each


def test_worker2_retries_as_a_new_sandbox_each_after_one_sandbox_changed_event_whose_count_grows():
    (recorded,) = of(real("events"), "echo-kind-worker2", "SandboxChanged")
    (fixture,) = of(kind("events"), "echo-kind-worker2", "SandboxChanged")
    assert fixture["message"] == recorded["message"] == "Pod sandbox changed, it will be killed and re-created."
    assert fixture["type"] == recorded["type"] == "Normal"
    assert fixture["count"] > 1 and recorded["count"] > 1
    assert fixture["firstTimestamp"] < fixture["lastTimestamp"]
    for events in (real("events"), kind("events")):
        reasons = [e["reason"] for e in of(events, "echo-kind-worker2")
                   if e["source"]["component"] == "kubelet" and e["reason"] not in INCIDENTAL]
        failed = reasons.count("FailedCreatePodSandBox")
        assert reasons[:2] == ["FailedCreatePodSandBox", "SandboxChanged"] and failed >= 3
        assert set(reasons) == {"FailedCreatePodSandBox", "SandboxChanged"}
        changed = next(e for e in of(events, "echo-kind-worker2", "SandboxChanged"))
        assert failed - 1 <= changed["count"] <= failed


@pytest.mark.parametrize("reason", ["Pulling", "Started"])
def test_container_event_messages_match_the_real_kubelet(reason):
    (recorded,) = of(real("events"), "echo-kind-worker", reason)
    (fixture,) = of(kind("events"), "echo-kind-worker", reason)
    assert fixture["message"] == recorded["message"]
    assert fixture["involvedObject"]["fieldPath"] == recorded["involvedObject"]["fieldPath"] == "spec.containers{echo}"


def test_event_fields_are_the_real_ones():
    recorded = {e["reason"]: e for e in real("events") if e["involvedObject"]["kind"] == "Pod"}
    shared = [e for e in kind("events") if e["involvedObject"]["kind"] == "Pod" and e["reason"] in recorded]
    assert {"FailedCreatePodSandBox", "SandboxChanged", "Pulling", "Pulled", "Created", "Started"} <= \
        {e["reason"] for e in shared}
    for fixture in shared:
        twin = recorded[fixture["reason"]]
        assert set(fixture) == set(twin)
        assert set(fixture["involvedObject"]) == set(twin["involvedObject"])
        assert set(fixture["source"]) == set(twin["source"]) == {"component", "host"}
        assert set(fixture["metadata"]) == set(twin["metadata"]) - {"managedFields"}
        assert fixture["eventTime"] is twin["eventTime"] is None


@pytest.mark.parametrize("pod", ["echo-kind-worker", "echo-kind-worker2"])
def test_pod_fields_the_real_api_server_sends_are_in_the_fixture(pod):
    (recorded,) = [p for p in real("pods") if p["metadata"]["name"] == pod]
    (fixture,) = [p for p in kind("pods") if p["metadata"]["name"] == pod]
    assert api_paths(recorded) <= paths(fixture)
    assert [c["type"] for c in recorded["status"]["conditions"]] == \
        [c["type"] for c in fixture["status"]["conditions"] if c["type"] != "PodReadyToStartContainers"]
    assert states(fixture) == states(recorded)


def test_node_fields_the_real_api_server_sends_are_in_the_fixture():
    recorded = {n["metadata"]["name"]: n for n in real("nodes")}["kind-worker"]
    fixture = {n["metadata"]["name"]: n for n in kind("nodes")}["kind-worker"]
    kind_only = {p for p in api_paths(recorded) if p.startswith(".status.images")}   # kind's image list, trimmed
    assert api_paths(recorded) - kind_only <= paths(fixture)
    assert [c["type"] for c in fixture["status"]["conditions"]] == [c["type"] for c in recorded["status"]["conditions"]]
    assert set(fixture["metadata"]["labels"]) == set(recorded["metadata"]["labels"])   # a worker: no role label
