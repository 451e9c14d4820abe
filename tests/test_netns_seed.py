"""The seed's whole walkthrough on the netns backend, for real: one cluster `kind`, three workers.

worker works; worker2 lacks portmap and heals when portmap is copied into the host folder mounted
over its /opt/cni; worker3 lacks the chained conflist, and only a recreated pod picks it up.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from conftest import KIND_CONFIG, ROOT

from kindlab.errors import ConnectionRefused

pytestmark = pytest.mark.netns

PORTMAP_MISSING = 'failed to find plugin "portmap" in path [/opt/cni/bin]'
BACKOFF = 0.5


def ls(lab, node: str, folder: str) -> list[str]:
    return lab.exec(node, ["ls", folder]).split()


def hostport_lines(lab, node: str) -> list[str]:
    return [line for line in lab.exec(node, "iptables-save").splitlines() if "HOSTPORT" in line]


def sandbox_failures(lab, pod: str) -> list[dict]:
    return [e for e in lab.event_list()
            if e["involvedObject"]["name"] == pod and e["reason"] == "FailedCreatePodSandBox"]


def test_seed_walkthrough(make_lab, host_network):
    before = host_network()
    from kindlab.backends import netns
    netns.delete("kind")   # the static manifests name kind's nodes: this test needs cluster `kind`
    assert not (ROOT / "kind" / "empty").exists(), "kind/empty exists: another lab of kind/config is running"
    lab = make_lab(KIND_CONFIG, name="kind", backoff=BACKOFF)

    # The nodes, as the seed's `docker exec ... ls /opt/cni/bin /etc/cni/net.d` shows them.
    assert any("000-cilium-portmap.conflist -> cni/000-kindlab-portmap.conflist" in s for s in lab.substitutions)
    assert ls(lab, "kind-worker2", "/opt/cni/bin") == ["kindlab-cni", "loopback"]
    assert ls(lab, "kind-worker2", "/etc/cni/net.d") == ["000-kindlab-portmap.conflist", "05-kindlab.conf"]
    assert {"portmap", "bridge", "host-local", "kindlab-cni", "loopback"} <= set(ls(lab, "kind-worker", "/opt/cni/bin"))
    assert ls(lab, "kind-worker3", "/etc/cni/net.d") == ["05-kindlab.conf"]
    assert lab.exec("kind-worker", "hostname").strip() == "kind-worker"

    assert lab.apply(ROOT / "manifests" / "static") == [
        "pod/echo-kind-worker created", "pod/echo-kind-worker2 created", "pod/echo-kind-worker3 created"]

    # worker: the hostPort answers, through portmap's DNAT to the pod.
    pod = lab.wait_for_pod("echo-kind-worker", timeout=20)
    assert pod["status"]["hostIP"] == "172.18.0.3"
    reply = lab.curl("http://172.18.0.3/")
    assert reply.status == 200
    assert "-> My hostname is: echo-kind-worker\n" in reply.body
    assert "-> Requesting IP: 172.18.0.1:" in reply.body
    assert f"{pod['status']['podIP']}\techo-kind-worker" in reply.body
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in reply.body and "nameserver 10.96.0.10" in reply.body
    rules = lab.exec("kind-worker", "iptables-save")
    assert ":CNI-HOSTPORT-DNAT" in rules
    assert f"-j DNAT --to-destination {pod['status']['podIP']}:8080" in rules

    # worker2: Pending, failing on the missing portmap, as the seed's event says.
    lab.wait_for(lambda: sandbox_failures(lab, "echo-kind-worker2"), timeout=10, what="a sandbox failure")
    assert lab.pod("echo-kind-worker2")["status"]["phase"] == "Pending"
    event = sandbox_failures(lab, "echo-kind-worker2")[0]
    assert event["type"] == "Warning"
    assert event["message"].startswith("Failed to create pod sandbox: ")
    assert 'failed to setup network for sandbox "' in event["message"]
    assert f'plugin type="portmap" failed (add): {PORTMAP_MISSING}' in event["message"]
    assert event["count"] >= 1 and event["firstTimestamp"] and event["lastTimestamp"]
    attempts = json.loads(lab.pod("echo-kind-worker2")["metadata"]["annotations"]["kindlab.io/sandbox-attempts"])
    assert len(attempts) >= 1

    # ... the seed's fix: portmap copied into the host folder mounted over /opt/cni; healed at the next retry.
    shutil.copy2("/usr/lib/cni/portmap", ROOT / "kind" / "empty" / "bin" / "portmap")
    fixed_at = time.time()
    pod2 = lab.wait_for_pod("echo-kind-worker2", timeout=BACKOFF * 1.5 + 3)
    running_at = float(pod2["metadata"]["annotations"]["kindlab.io/running-at"])
    failed = json.loads(pod2["metadata"]["annotations"]["kindlab.io/sandbox-attempts"])
    assert len([t for t in failed if t > fixed_at]) <= 1       # at most an attempt already under way
    assert running_at - fixed_at < BACKOFF * 1.5 + 2.0         # the next retry (plus slack for a busy machine)
    assert "portmap" in ls(lab, "kind-worker2", "/opt/cni/bin")
    reply = lab.curl("http://172.18.0.4/")
    assert reply.status == 200 and "-> My hostname is: echo-kind-worker2\n" in reply.body

    # worker3: Running, but nothing maps its hostPort.
    lab.wait_for_pod("echo-kind-worker3", timeout=10)
    with pytest.raises(ConnectionRefused):
        lab.curl("http://172.18.0.5/", timeout=3)
    assert hostport_lines(lab, "kind-worker3") == []
    # ... copying the conflist in changes nothing for the running pod,
    lab.cp(str(ROOT / "kind" / "cni" / "000-kindlab-portmap.conflist"), "kind-worker3:/etc/cni/net.d/")
    assert ls(lab, "kind-worker3", "/etc/cni/net.d") == ["000-kindlab-portmap.conflist", "05-kindlab.conf"]
    time.sleep(BACKOFF * 2)
    with pytest.raises(ConnectionRefused):
        lab.curl("http://172.18.0.5/", timeout=3)
    assert hostport_lines(lab, "kind-worker3") == []
    # ... only a recreated pod gets the chain.
    assert lab.delete_pod("echo-kind-worker3") == 'pod "echo-kind-worker3" deleted'
    assert lab.apply(ROOT / "manifests" / "static" / "echo-kind-worker3.yaml") == ["pod/echo-kind-worker3 created"]
    lab.wait_for_pod("echo-kind-worker3", timeout=10)
    reply = lab.curl("http://172.18.0.5/")
    assert reply.status == 200 and "-> My hostname is: echo-kind-worker3\n" in reply.body
    assert any("CNI-HOSTPORT-DNAT" in line for line in hostport_lines(lab, "kind-worker3"))

    frame = lab.pods()
    assert list(frame["phase"]) == ["Running"] * 3 and list(frame["ready"]) == [True] * 3

    # Teardown leaves nothing, and the host's own network namespace never changed.
    lab.down()
    assert not [n for n in netns_names() if n.startswith("kindlab-kind-")]
    assert not lab.state_dir.exists()
    assert not (ROOT / "kind" / "empty").exists()
    assert not marked_processes("kind")
    assert host_network() == before


def netns_names() -> list[str]:
    import subprocess
    return [line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                                         check=True).stdout.splitlines() if line.strip()]


def marked_processes(lab: str) -> list[int]:
    from kindlab.backends.netns import processes
    return [pid for pid, owner in processes.marked().items() if owner == lab]
