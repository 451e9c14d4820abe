"""The kind path's first real run (issue "The kind path"): what the backend's own record and the
recorded objects say, without Docker. The real Docker half is tests/test_kind_docker.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kindlab import topology
from kindlab import walkthrough as wt
from kindlab.backends.kind import cluster, lifecycle, state
from kindlab.capabilities import Capabilities
from kindlab.cluster import Cluster
from kindlab.errors import WaitTimeout
from kindlab.heal import unseen_attempts
from kindlab.model import pods as pod_rules

ROOT = Path(__file__).resolve().parents[1]


def test_a_healthy_kind_node_has_the_node_images_plugins_not_bridge(monkeypatch):
    lab = cluster.KindCluster("kind", topology.load(ROOT / "kind" / "config"), api_client=object())
    monkeypatch.setattr(lab, "node_list", lambda: [{"status": {"nodeInfo": {
        "kubeletVersion": "v1.35.0", "containerRuntimeVersion": "containerd://2.2.0"}}}])
    caps = lab.capabilities
    assert (caps.kubernetes_version, caps.runtime_version) == ("v1.35.0", "containerd://2.2.0")
    assert set(caps.node_plugins) == {"host-local", "loopback", "portmap", "ptp"}
    assert caps.watches_pods and caps.portmap_source is None and caps.kubelet == "real"
    assert caps.heal_slack >= 5  # a real kubelet healed 1.5 s past its window, before Cilium's endpoint


def test_rootless_docker_curls_from_a_node():
    rootless = {"OperatingSystem": "Debian GNU/Linux 12", "SecurityOptions": ["name=seccomp,profile=default",
                                                                            "name=rootless", "name=cgroupns"]}
    assert cluster.is_docker_desktop(rootless, platform="linux")
    assert not cluster.is_docker_desktop({"OperatingSystem": "Debian", "SecurityOptions": ["name=seccomp"]},
                                         platform="linux")


def test_the_state_keeps_the_config_path_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("KINDLAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(ROOT / "notebooks")
    state.save_state("kind", Path("../kind/config"), [])
    saved = json.loads((tmp_path / "state" / "kind" / "kind.json").read_text())
    assert saved["config"] == str((ROOT / "kind" / "config").resolve())
    monkeypatch.chdir(tmp_path)
    assert Path(state.load_state("kind")["config"]).is_file()  # read from another folder, the same file


def test_dev_mapper_is_kinds_own_mount_not_the_configs():
    node = SimpleNamespace(name="kind-worker", labels={lifecycle.KIND_ROLE_LABEL: "worker"}, attrs={"Mounts": [
        {"Type": "bind", "Source": "/dev/mapper", "Destination": "/dev/mapper", "RW": True},
        {"Type": "bind", "Source": "/lib/modules", "Destination": "/lib/modules", "RW": False},
        {"Type": "bind", "Source": "/srv/cni", "Destination": "/etc/cni/net.d/x.conflist", "RW": False}]})
    topo = lifecycle.topology_from_containers("kind", [node])
    assert [m.container_path for m in topo.node("kind-worker").mounts] == ["/etc/cni/net.d/x.conflist"]


# -- events folded by the kubelet's correlator --------------------------------------------------
def folded(count: int, first: str = "2026-12-01T10:00:00Z", last: str = "2026-12-01T10:03:00Z") -> dict:
    return {"reason": pod_rules.SANDBOX_FAILED, "type": "Warning", "count": count, "firstTimestamp": first,
            "lastTimestamp": last, "message": f"{pod_rules.COMBINED}failed to setup network",
            "involvedObject": {"kind": "Pod", "name": "echo-kind-worker2", "uid": "u1"}}


class EventsOnly(Cluster):
    """A pod failing on kind-worker2, as a real kubelet reports it: events only, no runtime record."""

    def __init__(self, events: list[dict]):
        super().__init__("kind", topology.load(ROOT / "kind" / "config"))
        self.events = events

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(backend="test", sandbox_backoff=0.05, backoff_jitter=0.5, poll_interval=0.01)

    def pod_list(self):
        return [{"metadata": {"name": "echo-kind-worker2", "uid": "u1", "creationTimestamp": "2026-12-01T09:59:59Z"},
                 "spec": {"nodeName": "kind-worker2"}, "status": {"phase": "Pending"}}]

    def event_list(self):
        return self.events

    def node_list(self):
        return []

    apply_object = delete_pod = exec = cp = curl = down = None  # not used here


def test_counts_of_folded_events_are_attempts_and_the_hidden_ones_are_said():
    lab = EventsOnly([folded(7)])
    assert wt.sandbox_failure_count(lab, "echo-kind-worker2") == 7
    assert unseen_attempts(lab, lab.pod("echo-kind-worker2")) == 5  # only the first and last have a time


def test_watching_attempts_past_the_spam_filter_says_why_it_sees_none():
    lab = EventsOnly([folded(pod_rules.SPAM_BURST)])
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="spam filter .*25 events per object.*recreate the pod"):
        wt.watch_attempts(lab, "echo-kind-worker2", count=2, timeout=0.3)
    assert time.monotonic() - started < 5


def test_watching_attempts_counts_a_growing_folded_event(monkeypatch):
    event = folded(3)
    lab = EventsOnly([event])
    reads = iter(range(100))

    def grow():
        event["count"] = 3 + next(reads) // 3  # the combined event's count grows every third read
        return [event]
    monkeypatch.setattr(lab, "event_list", grow)
    times = wt.watch_attempts(lab, "echo-kind-worker2", count=2, timeout=5, interval=0.001)
    assert len(times) == 2 and times[0] <= times[1]


KUBE_PROXY_AND_PORTMAP = """*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SEP-ABC - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-1234 - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SEP-ABC -p tcp -m tcp -j DNAT --to-destination 172.18.0.2:6443
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: kind" -m multiport --dports 80 -j CNI-DN-1234
-A CNI-DN-1234 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2:8080
COMMIT
"""


def test_portmaps_dnat_is_counted_apart_from_kube_proxys():
    from kindlab import iptables

    rules = iptables.parse(KUBE_PROXY_AND_PORTMAP).rules
    assert (rules["target"] == "DNAT").sum() == 2  # kind's nodes: kube-proxy's KUBE-SEP-* DNATs too
    dnat = wt.portmap_dnat(rules)
    assert dnat["to_destination"].tolist() == ["192.168.1.2:8080"]
    owners = wt.label_changes(rules.assign(change="added"))[["chain", "by"]].values.tolist()
    assert owners == [["PREROUTING", "portmap"], ["PREROUTING", "kube-proxy"], ["KUBE-SEP-ABC", "kube-proxy"],
                      ["CNI-HOSTPORT-DNAT", "portmap"], ["CNI-DN-1234", "portmap"]]
    assert wt.rule_owner("POSTROUTING", "MASQUERADE") == "primary plugin"
