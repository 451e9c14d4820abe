"""kindlab's own readers on the API objects recorded from a real v1.20.2 cluster (tests/data/real, record.py).

What they say about the seed's scenario: worker2's pod Pending after a failed sandbox whose message
names portmap, then Running once portmap is back; worker's and worker3's pods Running with a pod IP
in their node's podCIDR.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kindlab import cluster, doctor
from kindlab.model import pods as pod_rules

DATA = Path(__file__).resolve().parent / "data" / "real"
PORTMAP_MISSING = 'failed to find plugin "portmap" in path [/opt/cni/bin]'
WORKERS = ("kind-worker", "kind-worker2", "kind-worker3")


def items(moment: str, name: str) -> list[dict[str, Any]]:
    """The items of a recorded list, e.g. items("broken", "pods")."""
    return json.loads((DATA / f"{moment}-{name}.json").read_text())["items"]


def pod(moment: str, name: str) -> dict[str, Any]:
    return next(p for p in items(moment, "pods") if p["metadata"]["name"] == name)


def cidrs(moment: str) -> dict[str, str]:
    """Each node's podCIDR, as node_summary reads it."""
    return {s["name"]: s["podCIDR"] for s in map(cluster.node_summary, items(moment, "nodes"))}


@pytest.mark.parametrize("moment", ["broken", "healed"])
def test_node_summary_reads_the_real_nodes(moment):
    rows = {r["name"]: r for r in map(cluster.node_summary, items(moment, "nodes"))}
    assert set(rows) == set(WORKERS)   # the recorded control plane runs no kubelet
    assert all(r["ready"] and r["role"] == "worker" for r in rows.values())
    assert {r["kubeletVersion"] for r in rows.values()} == {"v1.20.2"}
    assert {r["containerRuntimeVersion"] for r in rows.values()} == {"containerd://1.7.24"}
    nets = [ipaddress.ip_network(r["podCIDR"]) for r in rows.values()]
    assert all(n.subnet_of(ipaddress.ip_network("10.244.0.0/16")) and n.prefixlen == 24 for n in nets)
    assert len(set(nets)) == 3


def test_pods_frame_broken_worker2_pending_others_running_in_their_cidr():
    frame = cluster.pods_frame(items("broken", "pods")).set_index("name")
    stuck = frame.loc["echo-kind-worker2"]
    assert (stuck["phase"], stuck["reason"], stuck["ready"]) == ("Pending", "ContainerCreating", False)
    assert stuck["podIP"] is None or stuck["podIP"] != stuck["podIP"]   # None or NaN: no sandbox, no IP
    nets = cidrs("broken")
    for name, node in (("echo-kind-worker", "kind-worker"), ("echo-kind-worker3", "kind-worker3")):
        row = frame.loc[name]
        assert (row["phase"], row["ready"], row["node"]) == ("Running", True, node)
        assert ipaddress.ip_address(row["podIP"]) in ipaddress.ip_network(nets[node])


def test_sandbox_failure_count_sees_a_failed_create_per_attempt():
    """containerd 1.7 stops the failed sandbox it kept and the kubelet makes a new one each retry, so each
    attempt is a FailedCreatePodSandBox of its own sandbox id, after a SandboxChanged (count grows)."""
    events, p = items("broken", "events"), pod("broken", "echo-kind-worker2")
    failures = pod_rules.sandbox_failure_events(events, "echo-kind-worker2", pod_rules.uid(p))
    ids = {re.search(r'for sandbox "([0-9a-f]{64})"', e["message"]).group(1) for e in failures}
    assert len(failures) == len(ids) >= 6
    assert pod_rules.sandbox_failure_count(events, "echo-kind-worker2", pod_rules.uid(p)) == len(failures)
    assert all(PORTMAP_MISSING in pod_rules.message(e) for e in failures)
    assert all('plugin type="portmap" failed (add)' in e["message"] for e in failures)
    changed = [e for e in events if e["reason"] == "SandboxChanged" and pod_rules.about(e, "echo-kind-worker2")]
    assert len(changed) == 1 and len(failures) - 1 <= pod_rules.count(changed[0]) <= len(failures)
    assert changed[0]["message"] == "Pod sandbox changed, it will be killed and re-created."


def test_doctor_names_the_stuck_pod_and_portmap():
    note = doctor._stuck(items("broken", "pods"), items("broken", "events"), "kind-worker2")
    failed = [e for e in items("broken", "events") if e["reason"] == "FailedCreatePodSandBox"]
    assert note.startswith(f" Pod echo-kind-worker2 is Pending: {len(failed)} failed sandbox "
                           "attempts, the last FailedCreatePodSandBox: Failed to create pod sandbox")
    assert PORTMAP_MISSING in note
    assert doctor._stuck(items("broken", "pods"), items("broken", "events"), "kind-worker") == ""
    assert doctor._stuck(items("healed", "pods"), items("healed", "events"), "kind-worker2") == ""


def test_host_ports_read_from_the_real_pods():
    for node in WORKERS:
        (hp,) = doctor.host_ports(items("broken", "pods"), node)
        assert (hp.host_port, hp.container_port, hp.protocol) == (80, 8080, "TCP")


def test_healed_worker2_running_in_its_cidr_its_healing_retry_not_counted():
    row = cluster.pods_frame(items("healed", "pods")).set_index("name").loc["echo-kind-worker2"]
    assert (row["phase"], row["ready"], row["node"]) == ("Running", True, "kind-worker2")
    assert ipaddress.ip_address(row["podIP"]) in ipaddress.ip_network(cidrs("healed")["kind-worker2"])
    p, events = pod("healed", "echo-kind-worker2"), items("healed", "events")
    assert pod_rules.is_running(p) and pod_rules.is_ready(p)
    changed = next(e for e in events if e["reason"] == "SandboxChanged" and pod_rules.about(e, "echo-kind-worker2"))
    # the last SandboxChanged is the retry that healed it: not a failure
    assert pod_rules.sandbox_failure_count(events, "echo-kind-worker2", pod_rules.uid(p), running=True) == \
        pod_rules.count(changed)
    frame = cluster.events_frame(events)
    mine = frame[frame["object"] == "pod/echo-kind-worker2"]
    assert list(mine["reason"])[-4:] == ["Pulling", "Pulled", "Created", "Started"]
    assert {"FailedCreatePodSandBox", "SandboxChanged"} <= set(mine["reason"])
