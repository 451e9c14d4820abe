"""The seed's whole walkthrough on the netns backend, for real: one cluster, three workers.

worker works; worker2 lacks portmap and heals when portmap is copied into the host folder mounted
over its /opt/cni; worker3 lacks the chained conflist, and only a recreated pod picks it up.

The cluster runs from a private copy of kind/config under a name of its own (the static manifests
renamed for it), so that it can run beside a lab of the repository's kind/config.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from conftest import curl_answer, portmap_binary, small_config

from kindlab import measured, scenario
from kindlab import walkthrough as wt
from kindlab.errors import ConnectionRefused
from kindlab.model import containerd, kubelet

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


def test_seed_walkthrough(make_lab, host_network, tmp_path):
    before = host_network()
    config = wt.private_config(tmp_path / "kind")
    name = f"seed{os.getpid() % 10000}"
    lab = make_lab(config, name=name, backoff=BACKOFF)
    w, w2, w3 = (f"{name}-{role}" for role in ("worker", "worker2", "worker3"))
    empty = tmp_path / "kind" / "empty"

    # The nodes, as the seed's `docker exec ... ls /opt/cni/bin /etc/cni/net.d` shows them.
    assert any("000-cilium-portmap.conflist -> cni/000-kindlab-portmap.conflist" in s for s in lab.substitutions)
    assert ls(lab, w2, "/opt/cni/bin") == ["kindlab-cni", "loopback"]
    assert ls(lab, w2, "/etc/cni/net.d") == ["000-kindlab-portmap.conflist", "05-kindlab.conf"]
    assert {"portmap", "bridge", "host-local", "kindlab-cni", "loopback"} <= set(ls(lab, w, "/opt/cni/bin"))
    assert ls(lab, w3, "/etc/cni/net.d") == ["05-kindlab.conf"]
    assert lab.exec(w, "hostname").strip() == w
    assert empty.is_dir() and scenario.cni_bin_folder(lab, w2) == empty / "bin"

    assert wt.apply_static(lab) == [f"pod/echo-{w} created", f"pod/echo-{w2} created", f"pod/echo-{w3} created"]

    # worker: the hostPort answers, through portmap's DNAT to the pod.
    pod = lab.wait_for_pod(f"echo-{w}", timeout=20)
    assert pod["status"]["hostIP"] == lab.node_ip(w) == "172.18.0.3"
    reply = curl_answer(lab, "http://172.18.0.3/")
    assert reply.status == 200
    assert f"-> My hostname is: echo-{w}\n" in reply.body
    assert "-> Requesting IP: 172.18.0.1:" in reply.body
    assert f"{pod['status']['podIP']}\techo-{w}" in reply.body
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in reply.body and "nameserver 10.96.0.10" in reply.body
    rules = lab.exec(w, "iptables-save")
    assert ":CNI-HOSTPORT-DNAT" in rules
    assert f"-j DNAT --to-destination {pod['status']['podIP']}:8080" in rules

    # worker2: Pending, failing on the missing portmap, as the seed's event says.
    lab.wait_for(lambda: sandbox_failures(lab, f"echo-{w2}"), timeout=10, what="a sandbox failure")
    assert lab.pod(f"echo-{w2}")["status"]["phase"] == "Pending"
    event = sandbox_failures(lab, f"echo-{w2}")[0]
    assert event["type"] == "Warning"
    assert event["message"].startswith("Failed to create pod sandbox: ")
    assert 'failed to setup network for sandbox "' in event["message"]
    assert f'plugin type="portmap" failed (add): {PORTMAP_MISSING}' in event["message"]
    assert event["count"] >= 1 and event["firstTimestamp"] and event["lastTimestamp"]
    recorded = lab.runtime_times(lab.pod(f"echo-{w2}"))
    assert recorded is not None and len(recorded.attempts) >= 1 and recorded.running_at is None

    # ... the seed's fix: portmap copied into the host folder mounted over /opt/cni; healed at the next retry.
    shutil.copy2(portmap_binary(), empty / "bin" / "portmap")
    fixed_at = time.time()
    healed_by = measured.heal_bound(BACKOFF, "model")   # the real kubelet's longest measured heal, at this back-off
    pod2 = lab.wait_for_pod(f"echo-{w2}", timeout=healed_by + 3)
    recorded = lab.runtime_times(pod2)
    assert len([t for t in recorded.attempts if t > fixed_at]) <= 1   # at most an attempt already under way
    assert recorded.running_at - fixed_at < healed_by
    assert "portmap" in ls(lab, w2, "/opt/cni/bin")
    reply = curl_answer(lab, "http://172.18.0.4/")
    assert reply.status == 200 and f"-> My hostname is: echo-{w2}\n" in reply.body

    # worker3: Running, but nothing maps its hostPort.
    lab.wait_for_pod(f"echo-{w3}", timeout=10)
    with pytest.raises(ConnectionRefused):
        lab.curl("http://172.18.0.5/", timeout=3)
    assert hostport_lines(lab, w3) == []
    # ... copying the conflist in changes nothing for the running pod,
    lab.cp(str(tmp_path / "kind" / "cni" / "000-kindlab-portmap.conflist"), f"{w3}:/etc/cni/net.d/")
    assert ls(lab, w3, "/etc/cni/net.d") == ["000-kindlab-portmap.conflist", "05-kindlab.conf"]
    time.sleep(BACKOFF * 2)
    with pytest.raises(ConnectionRefused):
        lab.curl("http://172.18.0.5/", timeout=3)
    assert hostport_lines(lab, w3) == []
    # ... only a recreated pod gets the chain.
    assert lab.delete_pod(f"echo-{w3}") == f'pod "echo-{w3}" deleted'
    assert wt.apply_pod(lab, f"echo-{w3}") == f"pod/echo-{w3} created"
    lab.wait_for_pod(f"echo-{w3}", timeout=10)
    reply = curl_answer(lab, "http://172.18.0.5/")
    assert reply.status == 200 and f"-> My hostname is: echo-{w3}\n" in reply.body
    assert any("CNI-HOSTPORT-DNAT" in line for line in hostport_lines(lab, w3))

    frame = lab.pods()
    assert list(frame["phase"]) == ["Running"] * 3 and list(frame["ready"]) == [True] * 3

    # Teardown leaves nothing, and the host's own network namespace never changed.
    lab.down()
    assert not [n for n in netns_names() if n.startswith(f"kindlab-{name}-")]
    assert not lab.state_dir.exists()
    assert not empty.exists()
    assert not marked_processes(name)
    assert host_network() == before


def netns_names() -> list[str]:
    import subprocess
    return [line.split()[0] for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                                         check=True).stdout.splitlines() if line.strip()]


def marked_processes(lab: str) -> list[int]:
    from kindlab.backends.netns import processes
    return [pid for pid, owner in processes.marked().items() if owner == lab]


def test_a_model_pod_starts_as_late_as_containerd_would_start_it(make_lab, tmp_path):
    """containerd's pause container, pull, create and start (model.containerd) take the model's runtime as long:
    at the kubelet's 10 s back-off the container starts no sooner than its volumes, then those steps."""
    lab = make_lab(small_config(tmp_path), backoff=kubelet.KUBELET_BACKOFF)
    applied = time.time()
    wt.apply_pod(lab, f"echo-{lab.name}-worker")
    started = lab.wait_for(lambda: (t := lab.runtime_times(lab.pod(f"echo-{lab.name}-worker"))) and t.running_at,
                           timeout=10, what="the container's start")
    steps = containerd.PAUSE_START + containerd.PULL + containerd.CREATE + containerd.START
    assert started - applied >= kubelet.volumes_ready_after() + steps
    pulled = next(e["message"] for e in lab.event_list() if e["reason"] == "Pulled")
    assert float(re.search(r" in ([0-9.]+)ms$", pulled).group(1)) >= containerd.PULL * 1000, pulled


def test_the_models_kubelet_retries_as_the_real_one(make_lab, tmp_path):
    """Measured on the real kubelet with containerd 1.7 (benchmarks/bench_fidelity.py, tests/data/real): a
    FailedCreatePodSandBox per attempt, each of a new sandbox, every retry a relist after the last, after a
    SandboxChanged; from the 10th, the failures are combined into one event; from the 25th event, none."""
    config = wt.private_config(tmp_path / "kind")
    name = f"kubelet{os.getpid() % 10000}"
    lab = make_lab(config, name=name, backoff=BACKOFF)
    pod = f"echo-{name}-worker2"
    applied = time.time()
    wt.apply_pod(lab, pod)
    times = lab.wait_for(lambda: (t := lab.runtime_times(lab.pod(pod))) and len(t.attempts) >= 14 and t.attempts,
                         timeout=BACKOFF * 1.6 * 4 + 5, what="fourteen failed attempts")
    scale = BACKOFF / measured.BACKOFF.low      # the model's clocks, scaled to its short back-off
    # the first waits for volumes: the real kubelet's first attempt came at least 0.39 s after the apply, of which
    # RunPodSandbox's own 0.13 s (the model's is its own, unscaled)
    assert times[0] - applied >= (measured.FIRST_ATTEMPT.low - 0.13) * scale
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] < measured.RELIST.high * scale + 0.1, gaps                          # the first retry
    earliest, latest = measured.retry_gap_bounds(BACKOFF)                               # then a relist apart
    assert all(earliest - 0.05 <= g < latest + 0.1 for g in gaps[1:]), gaps
    mine = [e for e in lab.event_list() if e["involvedObject"]["name"] == pod]
    failed = [e for e in mine if e["reason"] == "FailedCreatePodSandBox"]
    assert len({e["message"] for e in failed}) == len(failed) >= 10                    # one per sandbox
    assert failed[-1]["message"].startswith("(combined from similar events): ") and failed[-1]["count"] >= 2
    changed = next(e for e in mine if e["reason"] == "SandboxChanged")
    assert changed["type"] == "Normal"
    assert changed["message"] == "Pod sandbox changed, it will be killed and re-created."
    # the spam filter: 25 events of the kubelet about the pod, then none
    assert sum(e["count"] for e in mine if e["source"]["component"] == "kubelet") == 25, mine
    assert sum(e["count"] for e in failed) == changed["count"] + 1 == 13

    # deleted with portmap still missing: containerd 1.7 stops the kept sandbox without a CNI DEL, so the kill
    # succeeds, and the pod goes at the status tick after the container GC's round (the real kubelet: 57.9 and
    # 61.4 s after the delete, each at the first tick after a round)
    lab.delete_pod(pod, wait=False)
    lab.wait_for(lambda: scenario.find_pod(lab, pod) is None, timeout=kubelet.longest_stay(BACKOFF) + 1,
                 what="the pod gone")
    assert not any(e["reason"] == "FailedKillPod" for e in lab.event_list()), lab.event_list()
