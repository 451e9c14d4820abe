"""The seed's scenario on a real kind cluster: kind's own `kind create cluster`, the real kubelet in kind's nodes.

Where helm is installed (and the internet answers), the CNI is Cilium on kind's default node image, as in the
seed; elsewhere (this machine, CI) kindlab-cni on kindlab's node image made on the machine, with the nodes in
kindlab's own Docker Engine where no Docker runs. Needs kind (`make setup-kind`) and set-up's Kubernetes build.
Creates the cluster `kind` (the manifests pin nodes kind-worker..3) and deletes it at the end, with the engine
kindlab started; skips when a cluster of that name already exists rather than touch it.
Set KINDLAB_RECORD_DIR to also save the API server's JSON for tests/data/kind/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

import kindlab
from kindlab.backends.kind import backend
from kindlab.errors import ConnectionRefused, ExecError, KindlabError

pytestmark = pytest.mark.kind

ROOT = Path(__file__).resolve().parents[1]
HOST_ICMP_RATELIMIT = Path("/proc/sys/net/ipv4/icmp_ratelimit").read_text().strip()   # before any engine starts
PORTMAP_MISSING = 'failed to find plugin "portmap" in path [/opt/cni/bin]'
POD_TIMEOUT = 300


def why_not_here() -> str | None:
    """Why the real scenario cannot run on this machine, or None."""
    if lack := backend.missing("real"):
        return "needs " + "; ".join(lack)
    if "kind" in backend.clusters():
        return "a kind cluster named 'kind' already exists; delete it (`kind delete cluster`) to run the scenario"
    return None


@pytest.fixture(scope="module")
def lab():
    reason = why_not_here()
    if reason:
        pytest.skip(reason)
    cluster = kindlab.up(ROOT / "kind" / "config", name="kind", backend="kind")
    try:
        yield cluster
    finally:
        cluster.down()


def test_a_failed_create_leaves_nothing_behind(tmp_path, monkeypatch):
    """kind cannot make the nodes (their image is nowhere): one KindlabError, and no cluster, container, host
    folder or state left, nor kindlab's engine where it started one for this."""
    from kindlab.backends.kind import api_port, docker_host, engine

    if reason := why_not_here():
        pytest.skip(reason)
    shutil.copytree(ROOT / "kind", tmp_path / "kind", ignore=shutil.ignore_patterns("empty"))
    monkeypatch.setenv("KINDLAB_KIND_IMAGE", "kindlab/no-such-node:v0")
    ran_before = docker_host.answers()
    with pytest.raises(KindlabError, match="kind create cluster"):
        kindlab.up(tmp_path / "kind" / "config", name="kindfail", backend="kind")
    assert "kindfail" not in backend.clusters()
    assert not (tmp_path / "kind" / "empty").exists()
    assert api_port.forwarders("kindfail") == []
    if docker_host.own() and not ran_before:
        assert engine.leftovers(docker_host.OWN) == [] and not docker_host.answers()
    else:
        client = docker_host.client()
        assert not client.containers.list(all=True, filters={"label": "io.x-k8s.kind.cluster=kindfail"})


def record(lab) -> None:
    """Save what the API server returns for nodes, pods and events (raw JSON) into $KINDLAB_RECORD_DIR."""
    folder = os.environ.get("KINDLAB_RECORD_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name, call in (("nodes", lambda: lab.core.list_node(_preload_content=False)),
                       ("pods", lambda: lab.core.list_namespaced_pod("default", _preload_content=False)),
                       ("events", lambda: lab.core.list_namespaced_event("default", _preload_content=False))):
        doc = json.loads(call().data)
        for item in doc.get("items", []):
            item.get("metadata", {}).pop("managedFields", None)
            item.get("status", {}).pop("images", None)
        (Path(folder) / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")


def failed_sandbox(lab, pod: str) -> list[str]:
    return [e["message"] for e in lab.event_list()
            if e["involvedObject"]["name"] == pod and e["reason"] == "FailedCreatePodSandBox"]


def test_nodes_are_the_seed_topology_and_ready(lab):
    nodes = lab.nodes()
    assert list(nodes["name"]) == ["kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"]
    assert list(nodes["role"]) == ["control-plane", "worker", "worker", "worker"]
    assert nodes["ip"].notna().all()


def test_kindlab_cni_is_installed_while_the_workers_join(lab):
    """kindlab-cni's DaemonSet is made once the control plane answers, before the last worker registers
    (lifecycle.cni_while_joining); Cilium is installed by helm after kind, as in the seed."""
    from kindlab.backends.kind import cni

    made = lab.apps.read_namespaced_daemon_set(cni.DAEMONSETS[lab.cni], cni.NAMESPACE).metadata.creation_timestamp
    last_joined = max(n.metadata.creation_timestamp for n in lab.core.list_node().items)
    assert (made < last_joined) == (lab.cni == cni.KINDLAB)


def test_every_kubelet_sends_its_status_every_second(lab):
    """kind's kubelets get the netns lab's setting (kube.kubelet_settings) through kubeadm's KubeletConfiguration."""
    for node in lab.nodes()["name"]:
        config = lab.exec(node, "cat /var/lib/kubelet/config.yaml")
        assert "nodeStatusUpdateFrequency: 1s" in config.splitlines(), node


def test_the_controllers_start_without_the_node_ipam_wait(lab):
    """kube-controller-manager starts its controllers as soon as it leads: the bootstrap signer, which `kubeadm
    join` waits for, no longer after nodeipam's first list of the nodes, which Kubernetes 1.20 made 10 s after
    asking (scripts/kubernetes-patches/nodeipam-list-nodes-at-once.patch; upstream's own since 2024, so kind's
    default node image has it too)."""
    log = lab.exec("kind-control-plane", "cat /var/log/pods/kube-system_kube-controller-manager-*/*/0.log")
    stamps = {}
    for line in log.splitlines():
        for what, marker in (("lead", "successfully acquired lease"), ("signer", 'Started "bootstrapsigner"')):
            if marker in line and what not in stamps:
                stamps[what] = datetime.fromisoformat(line.split()[0][:26])
    assert (stamps["signer"] - stamps["lead"]).total_seconds() < 10.0, stamps


def test_kindlabs_engine_answers_unreachable_at_once_and_the_host_keeps_its_limit(lab):
    """In kindlab's own engine's namespace, "network unreachable" is not rate-limited (engine.ICMP_RATELIMIT);
    the host's own setting is untouched."""
    from kindlab.backends.kind import docker_host, engine

    host = Path("/proc/sys") / engine.ICMP_RATELIMIT.replace(".", "/")
    assert host.read_text().strip() == HOST_ICMP_RATELIMIT
    if docker_host.own():
        inside = subprocess.run(["nsenter", f"--net={docker_host.OWN.netns_path}", "sysctl", "-n",
                                 engine.ICMP_RATELIMIT], capture_output=True, text=True, check=True).stdout
        assert inside.strip() == "0"


def provider_conf(lab) -> str:
    """The CNI provider's own config: Cilium's, or kindlab-cni's."""
    return "05-cilium.conflist" if lab.cni == "cilium" else "05-kindlab.conf"


def test_the_cni_left_the_seed_conflist_alone(lab):
    listing = lab.exec("kind-worker", "ls /etc/cni/net.d").split()
    chained = "000-cilium-portmap.conflist" if lab.cni == "cilium" else "000-kindlab-portmap.conflist"
    assert chained in listing and provider_conf(lab) in listing
    assert not [f for f in listing if f.endswith(".cilium_bak")]
    assert lab.exec("kind-worker3", "ls /etc/cni/net.d").split() == [provider_conf(lab)]
    with pytest.raises(ExecError):
        lab.exec("kind-worker2", "ls /opt/cni/bin/portmap")


def test_the_nodes_are_kinds_and_run_the_real_kubelet(lab):
    caps = lab.capabilities
    assert caps.kubelet == "real" and caps.kubernetes_version.startswith("v1.")
    nodes = lab.nodes()
    assert (nodes["kubeletVersion"] == caps.kubernetes_version).all()
    assert lab.exec("kind-control-plane", "cat /kind/version").strip() == caps.kubernetes_version
    assert "kubeadm" in lab.exec("kind-control-plane", "cat /etc/kubernetes/manifests/kube-apiserver.yaml")
    labels = {c.name: c.labels for c in lab.docker.containers.list(filters={"label": "io.x-k8s.kind.cluster=kind"})}
    assert labels["kind-worker3"]["io.x-k8s.kind.role"] == "worker"


def test_apply_the_static_pods(lab):
    assert lab.apply(ROOT / "manifests" / "static") == [
        "pod/echo-kind-worker created", "pod/echo-kind-worker2 created", "pod/echo-kind-worker3 created"]
    assert lab.apply(ROOT / "manifests" / "static" / "echo-kind-worker.yaml") == ["pod/echo-kind-worker unchanged"]


def test_worker_answers_on_its_hostport(lab):
    lab.wait_for_pod("echo-kind-worker", timeout=POD_TIMEOUT)
    resp = lab.curl(f"http://{lab.node_ip('kind-worker')}/")
    assert resp.status == 200 and "echo-kind-worker" in resp.body
    assert "CNI-HOSTPORT-DNAT" in lab.exec("kind-worker", "iptables-save -t nat")


def test_worker2_cannot_set_up_the_sandbox_without_portmap(lab):
    messages = lab.wait_for(lambda: failed_sandbox(lab, "echo-kind-worker2"), timeout=POD_TIMEOUT,
                            interval=2, what="FailedCreatePodSandBox on worker2")
    assert any(PORTMAP_MISSING in m for m in messages)
    assert lab.pod("echo-kind-worker2")["status"]["phase"] == "Pending"

    def retried() -> bool:   # the kubelet retries: one SandboxChanged whose count grows
        return any(e["count"] > 1 for e in lab.event_list() if e["involvedObject"]["name"] == "echo-kind-worker2"
                   and e["reason"] == "SandboxChanged")
    lab.wait_for(retried, timeout=POD_TIMEOUT, interval=1, what="worker2's sandbox retried")
    record(lab)


def test_worker3_refuses_without_the_chained_conflist(lab):
    lab.wait_for_pod("echo-kind-worker3", timeout=POD_TIMEOUT)
    with pytest.raises(ConnectionRefused):
        lab.curl(f"http://{lab.node_ip('kind-worker3')}/")


def test_worker2_heals_once_portmap_is_there(lab):
    from kindlab import scenario

    folder = scenario.host_cni_bin(lab)   # the seed's fix: into the host folder mounted over worker2's /opt/cni
    lab.cp("kind-worker:/opt/cni/bin/portmap", str(folder) + "/")
    assert lab.exec("kind-worker2", "ls /opt/cni/bin").split().count("portmap") == 1
    for _, _, pod in lab.watch_pods(timeout=POD_TIMEOUT):
        if pod["metadata"]["name"] == "echo-kind-worker2" and pod["status"].get("phase") == "Running":
            break
    lab.wait_for_pod("echo-kind-worker2", timeout=60)
    assert lab.curl(f"http://{lab.node_ip('kind-worker2')}/").status == 200


def test_worker3_needs_the_conflist_and_a_new_pod(lab):
    from kindlab import scenario

    source = scenario.chained_conflist_source(lab)
    lab.cp(str(source), f"kind-worker3:/etc/cni/net.d/{source.name}")
    with pytest.raises(ConnectionRefused):  # a running pod's network is not redone
        lab.curl(f"http://{lab.node_ip('kind-worker3')}/")
    assert lab.delete_pod("echo-kind-worker3") == 'pod "echo-kind-worker3" deleted'
    lab.apply(ROOT / "manifests" / "static" / "echo-kind-worker3.yaml")
    lab.wait_for_pod("echo-kind-worker3", timeout=POD_TIMEOUT)
    assert lab.curl(f"http://{lab.node_ip('kind-worker3')}/").status == 200


def test_an_echo_image_made_here_loads_with_kind_load(lab, tmp_path):
    """The arm64 readers' way (book/running.md): the echo server's image made on the machine, loaded into the
    nodes by `kind load image-archive`."""
    from kindlab.backends.kind import tools
    from kindlab.backends.oci import images

    image = images.echo_image(tmp_path)
    tools.run(["kind", "load", "image-archive", str(image.archive), "--name", "kind"], timeout=300)
    listed = lab.exec("kind-worker3", ["ctr", "-n", "k8s.io", "images", "ls", "-q"])
    assert image.name in listed.split()


def test_delete_leaves_nothing_behind(lab):
    from kindlab.backends.kind import docker_host, engine

    own = docker_host.own()
    client = lab.docker
    lab.down()
    assert "kind" not in kindlab.clusters(backend="kind")
    assert not (ROOT / "kind" / "empty").exists()   # the host folder kindlab made for worker2
    if own:   # kindlab's engine went with its last cluster: nothing of it is left on the machine
        assert engine.leftovers(docker_host.OWN) == []
        assert not docker_host.OWN.netns_path.exists() and not docker_host.OWN.folder.exists()
    else:
        assert not client.containers.list(all=True, filters={"label": "io.x-k8s.kind.cluster=kind"})
        if not kindlab.clusters(backend="kind"):
            assert "kind" not in [n.name for n in client.networks.list()]
