"""Record the seed's scenario on a real Kubernetes v1.20.2 cluster: `python tests/data/real/record.py [OUT]`.

A control-plane node (etcd, kube-apiserver, controller-manager, scheduler) and three workers
(kubelet, kube-proxy, and the pinned containerd 1.7 and CNI plugins 1.9.1:
kindlab.runtime_packages) in namespaces of a testbed; the seed's three static pods.
kind-worker: bridge + host-local + portmap chained; kind-worker2: the same config, but its node's
/opt/cni/bin has no `portmap`; kind-worker3: bridge + host-local only. Writes what the API server
returns for nodes, pods and events in `default` while worker2 is broken (broken-*.json) and after
portmap is put back and its pod heals (healed-*.json), and the measured figures (figures.json).
Needs root and the built binaries; leaves nothing behind.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from kindlab import runtime_packages
from kindlab.backends.kube import forward
from kindlab.backends.netns.real import binaries, bringup, components, startup, teardown, testbed
from kindlab.backends.oci import images, registry

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE   # where to write (default: this folder)
OUT.mkdir(parents=True, exist_ok=True)
GATEWAY, REGISTRY_PORT = "172.18.0.1", 5000
NODES = [("kind-control-plane", "172.18.0.2", "control-plane", False), ("kind-worker", "172.18.0.3", "worker", True),
         ("kind-worker2", "172.18.0.4", "worker", True), ("kind-worker3", "172.18.0.5", "worker", True)]
CHAINED = {"kind-worker": True, "kind-worker2": True, "kind-worker3": False}
PODS = ("echo-kind-worker", "echo-kind-worker2", "echo-kind-worker3")
BROKEN, ATTEMPTS = "kind-worker2", 6
FAILED = "FailedCreatePodSandBox"
GAPS = "gaps between failed attempts (each FailedCreatePodSandBox, or count added to one), polled every 0.2 s"
RETRIES = (FAILED,)   # containerd 1.7: every failed attempt is a new sandbox, with an event of its own


def raw_lists(core: Any) -> dict[str, Any]:
    """The NodeList, PodList and EventList exactly as the API server sends them (parsed, order kept)."""
    answers = {"nodes": core.list_node(_preload_content=False),
               "pods": core.list_namespaced_pod("default", _preload_content=False),
               "events": core.list_namespaced_event("default", _preload_content=False)}
    return {name: json.loads(answer.data) for name, answer in answers.items()}


def write_lists(lists: dict[str, Any], moment: str) -> None:
    """<OUT>/<moment>-<nodes|pods|events>.json."""
    for name, body in lists.items():
        (OUT / f"{moment}-{name}.json").write_text(json.dumps(body, indent=2) + "\n")


def phase(core: Any, pod: str) -> str | None:
    return core.read_namespaced_pod(pod, "default").status.phase


def failures(core: Any, pod: str) -> list[Any]:
    """The pod's events of a failed attempt: a FailedCreatePodSandBox each (from the 10th, combined into one)."""
    return [e for e in core.list_namespaced_event("default").items
            if e.involved_object.name == pod and e.reason in RETRIES]


class Attempts:
    """When each failed attempt is first seen (monotonic), by polling the events: one per count added."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.counts: dict[str, int] = {}

    def poll(self, core: Any, pod: str) -> int:
        """Poll once; the failed attempts seen so far."""
        now = time.monotonic()
        for e in failures(core, pod):
            n, before = e.count or 1, self.counts.get(e.metadata.uid, 0)
            self.times += [now] * max(0, n - before)
            self.counts[e.metadata.uid] = max(n, before)
        return sum(self.counts.values())

    def gaps(self) -> list[float]:
        return [round(b - a, 2) for a, b in zip(self.times, self.times[1:], strict=False)]


def event_summary(events: list[dict[str, Any]], pod: str) -> list[str]:
    """reason, count, firstTimestamp and lastTimestamp of the pod's events, from a recorded EventList."""
    return [f"{e['reason']} x{e['count']} {e['firstTimestamp']} .. {e['lastTimestamp']}" for e in events
            if e["involvedObject"]["name"] == pod]


def cluster_spec(state: Path) -> components.ClusterSpec:
    nodes = [components.NodeSpec(n, ip, role, kubelet) for n, ip, role, kubelet in NODES]
    return components.ClusterSpec(name="kind", nodes=nodes, bin_dir=binaries.bin_dir(),
                              registry=f"{GATEWAY}:{REGISTRY_PORT}", node_status_update_frequency="1s")


def configure_cni(bed: testbed.Testbed, core: Any, folder: Path) -> dict[str, str]:
    """Break worker2's /opt/cni/bin, then write each worker's config for the podCIDR the controller-manager gave it."""
    bed.exec(bed.node(BROKEN), ["rm", f"{components.CNI_BIN}/portmap"], "removing portmap")
    cidrs = {}
    for name, chained in CHAINED.items():
        cidrs[name] = bringup.wait(f"{name}: spec.podCIDR", lambda n=name: core.read_node(n).spec.pod_cidr, 60)
        conf = components.node_dir(folder, name) / "etc/cni/net.d/10-kr-bridge.conflist"
        conf.write_text(bringup.conflist(cidrs[name], portmap=chained))
    return cidrs


def run_scenario(bed: testbed.Testbed, cluster: components.ClusterSpec, certs: dict, made: list, state: Path,
                 figures: dict[str, Any], closers: list) -> None:
    """Bring the cluster up, record the broken moment, fix worker2, record the healed moment."""
    t0 = time.monotonic()
    bringup.start_control_plane(bed, cluster)
    bringup.start_workers(bed, cluster)
    api, fwd = bringup.admin_api(bed, cluster, certs, state / "admin-local.conf")
    closers += [api.close, fwd.close]
    from kubernetes import client
    core = client.CoreV1Api(api)
    for w in bringup.workers(bed, cluster):
        bringup.import_images(bed, w, made)
    bringup.wait("the API server", core.list_namespace, 60)
    figures["pod CIDRs"] = configure_cni(bed, core, state / "cluster")
    bringup.wait("every worker Ready", lambda: bringup.ready_nodes(core) == set(CHAINED), 90, every=0.2)
    bringup.wait("the default service account and its token", lambda: startup.service_account_ready(core), 60)
    figures["bring-up (s)"] = round(time.monotonic() - t0, 1)
    for pod in PODS:
        core.create_namespaced_pod("default", yaml.safe_load((ROOT / f"manifests/static/{pod}.yaml").read_text()))
    attempts = Attempts()
    for pod in ("echo-kind-worker", "echo-kind-worker3"):
        bringup.wait(f"{pod} Running", lambda p=pod: phase(core, p) == "Running", 90)
    bringup.wait(f"{ATTEMPTS} failed attempts", lambda: attempts.poll(core, "echo-kind-worker2") >= ATTEMPTS,
                 180, every=0.2)
    broken = raw_lists(core)
    write_lists(broken, "broken")
    figures["failed attempts seen (broken)"] = attempts.poll(core, "echo-kind-worker2")
    heal(bed, core, attempts, figures)
    time.sleep(3)   # the container events that follow Running
    healed = raw_lists(core)
    write_lists(healed, "healed")
    figures[GAPS] = attempts.gaps()
    figures["events of echo-kind-worker2 (healed)"] = event_summary(healed["events"]["items"], "echo-kind-worker2")


def heal(bed: testbed.Testbed, core: Any, attempts: Attempts, figures: dict[str, Any]) -> None:
    """Put portmap back into worker2's /opt/cni/bin; measure the time to Running."""
    node = bed.node(BROKEN)
    bed.exec(node, ["cp", "-p", f"{bed.cni_dir}/portmap", f"{components.CNI_BIN}/portmap"], "putting portmap back")
    t_fix = time.monotonic()
    figures["last failure seen -> fix (s)"] = round(t_fix - attempts.times[-1], 2)

    def running() -> bool:
        attempts.poll(core, "echo-kind-worker2")
        return phase(core, "echo-kind-worker2") == "Running"
    bringup.wait("echo-kind-worker2 Running after the fix", running, 120, every=0.1)
    figures["fix -> Running (s)"] = round(time.monotonic() - t_fix, 2)
    figures["failed attempts seen (total)"] = attempts.poll(core, "echo-kind-worker2")


def main() -> int:
    if binaries.missing():
        print(f"cannot run the real components here: {'; '.join(binaries.missing())}", file=sys.stderr)
        return 2
    testbed.sweep_stale()
    prefix = f"kr-{secrets.token_hex(2)}"
    state = Path("/run") / prefix
    bringup.claim(state)
    cluster = cluster_spec(state)
    certs = components.write(state / "cluster", cluster)
    made = [images.pause_image(cluster.bin_dir / "pause", state / "images"), images.echo_image(state / "images")]
    figures: dict[str, Any] = {"versions": {"kubernetes": "v1.20.2", **runtime_packages.versions()},
                               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    bed = testbed.create(prefix, state, [(n.name, n.ip) for n in cluster.nodes], GATEWAY, state / "cluster")
    closers: list = []
    try:
        reg = registry.serve([i.layout for i in made],
                             forward.listen(testbed.NETNS_DIR / bed.bridge_netns, GATEWAY, REGISTRY_PORT))
        closers += [reg.shutdown, reg.server_close]
        run_scenario(bed, cluster, certs, made, state, figures, closers)
    finally:
        for close in closers:
            close()
        logs = Path("/tmp") / f"{prefix}-logs"
        shutil.copytree(state / "logs", logs, dirs_exist_ok=True)
        net, mnt = testbed.namespace_ids(bed)
        result = testbed.destroy(bed)
        print(f"logs kept in {logs}; teardown: killed {result['killed']}, cgroups left {result['cgroups_left']}")
    left = bringup.leftovers(prefix, state) + [f"process {p}" for p in teardown.members(net, mnt)]
    left += [f"cgroup {g}" for g in result["cgroups_left"]]
    (OUT / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    if left:
        print("left behind:", left, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
