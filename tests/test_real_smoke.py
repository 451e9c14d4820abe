"""Real Kubernetes v1.20 in namespaces this test makes: a hostPort pod answers curl, then nothing is left.

A control-plane node runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler; two
workers run containerd, the kubelet and kube-proxy, with bridge + host-local + portmap chained in
their own /etc/cni/net.d. The images are made on the machine; the seed's own manifest (untagged
`inanimate/echo-server`, so pulled Always) is pulled from the lab's registry. The client is the
`kubernetes` package with the admin kubeconfig, verifying the API server's certificate, through a
loopback port of the host forwarded into the lab. Timings and memory are printed (-s).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from kindlab.backends.netns.real import binaries
from kindlab.backends.netns.real.bringup import conflist, leftovers, wait
from kindlab.backends.netns.real.cluster import DELETE_TIMEOUT
from kindlab.backends.netns.real.startup import service_account_ready

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[1]
GATEWAY, REGISTRY_PORT = "172.18.0.1", 5000
NODES = [("kind-control-plane", "172.18.0.2", "control-plane", False),
         ("kind-worker", "172.18.0.3", "worker", True), ("kind-worker2", "172.18.0.4", "worker", True)]
POD_CIDRS = {"kind-worker": "10.244.1.0/24", "kind-worker2": "10.244.2.0/24"}

if binaries.missing():
    pytest.skip(f"the real components cannot run here: missing {'; '.join(binaries.missing())}",
                allow_module_level=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop_seconds(containerd_log: Path) -> float | None:
    """How long containerd's StopContainer of the app container took (its grace period is 30 s)."""
    stamps = {}
    for line in containerd_log.read_text().splitlines():
        m = re.match(r'time="([^"]+)".*msg="StopContainer for \\"(\w+)\\" (with timeout|returns successfully)', line)
        if m:
            stamps.setdefault(m.group(3), datetime.fromisoformat(m.group(1)[:26] + "+00:00"))
    if len(stamps) < 2:
        return None
    return round((stamps["returns successfully"] - stamps["with timeout"]).total_seconds(), 3)


def test_real_cluster_serves_a_hostport_pod_and_leaves_nothing(host_network, tmp_path):
    from kubernetes import client

    from kindlab.backends.kube import forward
    from kindlab.backends.netns.processes import alive
    from kindlab.backends.netns.real import bringup, components, teardown, testbed
    from kindlab.backends.oci import images, registry

    testbed.sweep_stale()   # what a killed earlier run left (a live run's testbed is left alone)
    before, before_cgroups = host_network(), teardown.cgroup_tree()
    before_v6 = subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout
    prefix = f"kr-{secrets.token_hex(2)}"
    state = Path("/run") / prefix
    bringup.claim(state)   # before writing into it: a concurrent run's sweep_stale removes unowned state
    figures: dict[str, object] = {}
    nodes = [components.NodeSpec(n, ip, role, kubelet) for n, ip, role, kubelet in NODES]
    cluster = components.ClusterSpec(name="kind", nodes=nodes, bin_dir=binaries.bin_dir(),
                                 registry=f"{GATEWAY}:{REGISTRY_PORT}",
                                 node_status_update_frequency="1s")   # Ready at once, not at the next 10 s tick
    folder = state / "cluster"
    certs = components.write(folder, cluster)
    bin_dir = cluster.bin_dir
    made = [images.pause_image(bin_dir / "pause", state / "images"), images.echo_image(state / "images")]
    for name, cidr in POD_CIDRS.items():
        (components.node_dir(folder, name) / "etc/cni/net.d/10-kr-bridge-portmap.conflist").write_text(conflist(cidr))

    bed = testbed.create(prefix, state, [(n.name, n.ip) for n in nodes], GATEWAY, folder)
    fwd = reg = None
    closers: list = []
    try:
        reg = registry.serve([i.layout for i in made],
                             forward.listen(testbed.NETNS_DIR / bed.bridge_netns, GATEWAY, REGISTRY_PORT))
        t0 = time.monotonic()
        cp = bed.node("kind-control-plane")
        procs = bringup.start_control_plane(bed, cluster)
        workers = bringup.workers(bed, cluster)
        procs |= bringup.start_workers(bed, cluster)   # the kubelet spends ~5 s starting up before the API server

        api, fwd = bringup.admin_api(bed, cluster, certs, state / "admin-local.conf")
        assert api.configuration.verify_ssl and api.configuration.ssl_ca_cert
        core = client.CoreV1Api(api)
        closers.append(api.close)

        for w in workers:   # containerd answers: load the images made on the machine
            listed = bringup.import_images(bed, w, made)
            assert {i.name for i in made} <= set(listed), listed
        figures["containerd up + images imported (s)"] = round(time.monotonic() - t0, 2)

        wait("the API server", lambda: core.list_namespace(), 60)
        figures["API server answers (s)"] = round(time.monotonic() - t0, 2)

        def all_ready() -> bool:
            return len(bringup.ready_nodes(core)) == len(workers)
        wait("every node Ready", all_ready, 90, every=0.2)
        figures["nodes Ready (s)"] = round(time.monotonic() - t0, 2)

        wait("the default service account and its token", lambda: service_account_ready(core), 60)
        t1 = time.monotonic()   # the seed's own manifests, unchanged (nodeName set, hostPort 80 -> 8080)
        for name in ("echo-kind-worker", "echo-kind-worker2"):
            core.create_namespaced_pod("default", yaml.safe_load((ROOT / f"manifests/static/{name}.yaml").read_text()))

        def running(name: str):
            p = core.read_namespaced_pod(name, "default")
            return p if p.status.phase == "Running" else None
        pods = {n: wait(f"{n} Running", lambda n=n: running(n), 90, every=0.1)
                for n in ("echo-kind-worker", "echo-kind-worker2")}
        figures["pods created -> both Running (s)"] = round(time.monotonic() - t1, 2)
        for name, p in pods.items():
            assert p.spec.containers[0].image_pull_policy == "Always"   # untagged: pulled from the lab's registry
            assert p.status.host_ip == {"echo-kind-worker": "172.18.0.3", "echo-kind-worker2": "172.18.0.4"}[name]
            assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(POD_CIDRS[p.spec.node_name])

        def curl(netns: str, url: str) -> str:
            return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "curl", "-sS", "--max-time", "2", url],
                                  capture_output=True, text=True).stdout
        t2 = time.monotonic()
        body = wait("curl http://172.18.0.3/ from the bridge namespace",
                    lambda: curl(bed.bridge_netns, "http://172.18.0.3/"), 20)
        figures["Running -> curl answered (s)"] = round(time.monotonic() - t2, 2)
        assert "-> My hostname is: echo-kind-worker\n" in body
        assert f"-> Requesting IP: {GATEWAY}:" in body and "HTTP/1.1 GET /" in body
        body2 = wait("curl http://172.18.0.4/ from the control-plane node",
                     lambda: curl(cp.netns, "http://172.18.0.4/"), 20)
        assert "-> My hostname is: echo-kind-worker2" in body2 and f"-> Requesting IP: {cp.ip}:" in body2
        events = [(e.reason, e.message) for e in core.list_namespaced_event("default").items
                  if e.involved_object.name == "echo-kind-worker"]
        reasons = [r for r, _ in events]
        figures["events of echo-kind-worker"] = [f"{r}: {m}" for r, m in events]
        assert "Pulling" in reasons and "Pulled" in reasons and "Started" in reasons, events
        pod_ip = pods["echo-kind-worker"].status.pod_ip
        iptables = bed.exec(bed.node("kind-worker"), ["iptables-save", "-t", "nat"], "iptables-save")
        assert "CNI-HOSTPORT-DNAT" in iptables and f"--to-destination {pod_ip}:8080" in iptables
        assert "KUBE-SERVICES" in iptables   # kube-proxy ran, in the node's own namespace

        for w in workers:   # allocated by the controller-manager, whose node IPAM waits 10 s before its first list
            cidr = wait(f"{w.name}: spec.podCIDR", lambda w=w: core.read_node(w.name).spec.pod_cidr, 30)
            assert cidr.startswith("10.244.") and cidr.endswith("/24")   # (the CNI config has its own ranges)
        figures["podCIDRs allocated (s)"] = round(time.monotonic() - t0, 2)

        figures["RSS (MB)"] = {f"{node}/{name}": round(rss_mb(proc.pid), 1) for (node, name), proc in procs.items()
                               if proc.poll() is None}
        figures["RSS total (MB)"] = round(sum(figures["RSS (MB)"].values()), 1)
        dead = {k: v.returncode for k, v in procs.items() if v.poll() is not None}
        assert not dead, dead

        t3 = time.monotonic()   # the echo server is PID 1: it must stop on SIGTERM, not after the 30 s grace
        core.delete_namespaced_pod("echo-kind-worker", "default")
        # Gone once the kubelet has removed the sandbox, which its container GC may do only at its next round:
        # 3-70 s measured in the lab (real/cluster.DELETE_TIMEOUT). The SIGTERM is checked below, in containerd's log.
        wait("echo-kind-worker gone", lambda: [x.metadata.name for x in core.list_namespaced_pod("default").items]
             == ["echo-kind-worker2"], DELETE_TIMEOUT, every=0.1)
        figures["pod delete -> gone (s)"] = round(time.monotonic() - t3, 2)
        stop = stop_seconds(state / "logs" / "kind-worker.containerd.log")
        figures["StopContainer (SIGTERM) -> stopped (s)"] = stop
        assert stop is not None and stop < 5, "the echo server, PID 1, did not stop on SIGTERM"
        # echo-kind-worker2 stays up: teardown must take its shim, pause, server, mounts and cgroups
        w2 = bed.node("kind-worker2")
        assert w2.init is not None
        node_mounts = subprocess.run(["findmnt", "-N", str(w2.init.pid), "-rn", "-o", "TARGET,FSTYPE"],
                                     capture_output=True, text=True).stdout.splitlines()
        figures["kind-worker2 mounts at teardown"] = {
            "overlay rootfs": sum(1 for m in node_mounts if m.endswith("/rootfs overlay")),
            "shm": sum(1 for m in node_mounts if m.endswith("/shm tmpfs")),
            "netns": sum(1 for m in node_mounts if m.startswith("/run/netns/")),
            "kubelet root-dir": sum(1 for m in node_mounts if m.split()[0] == "/var/lib/kubelet"),
            "pod volumes": sum(1 for m in node_mounts if "/volumes/" in m),
        }
    finally:
        for close in closers:
            close()
        if fwd:
            fwd.close()
        if reg:   # its socket is in the bridge namespace, and would keep it alive
            reg.shutdown()
            reg.server_close()
        shutil.copytree(state / "logs", tmp_path / "logs", dirs_exist_ok=True)   # kept by pytest for a look
        net, mnt = testbed.namespace_ids(bed)
        seen = teardown.members(net, mnt)
        ticks = teardown.now_ticks()
        t4 = time.monotonic()
        result = testbed.destroy(bed)
        figures["teardown (s)"] = round(time.monotonic() - t4, 2)
        figures["teardown"] = {**result, "cgroups": [str(g) for g in result["cgroups"]]}
        print(f"\nlogs: {tmp_path / 'logs'}\nreal cluster figures:", json.dumps(figures, indent=1, default=str))
    assert not teardown.members(net, mnt, born_before=ticks), "processes left in the run's namespaces"
    assert not teardown.holders(net | mnt, born_before=ticks), "file descriptors still holding the run's namespaces"
    assert not [pid for pid in seen if alive(pid)], "processes of the run still alive"
    assert not leftovers(prefix, state), leftovers(prefix, state)
    assert result["cgroups_left"] == [] and not [g for g in result["cgroups"] if g.exists()]
    # new cgroup folders that no process uses: a concurrent run's busy ones are not ours
    new = [g for g in teardown.cgroup_tree() - before_cgroups if not teardown.cgroup_busy(g)]
    assert not new, new
    assert host_network() == before
    assert subprocess.run(["ip", "-6", "route"], capture_output=True, text=True).stdout == before_v6
