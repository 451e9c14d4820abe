"""`kindlab doctor --kubeconfig`: doctor on any cluster through its API server and node debug pods, tested on
the lab's real Kubernetes through its printed kubeconfig (as a user points it at their own cluster).

The seed's broken state flags exactly worker2 and worker3; a stale DNAT made by hand and a hostPort conflict
are found; nothing after the fixes; no debug pod is left after a normal run, after SIGINT, after a timeout;
--dry-run creates nothing. The manifests and the debug-pod plumbing are also checked without a cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from kindlab.backends.kube import debug

ROOT = Path(__file__).resolve().parents[1]
KINDLAB = [sys.executable, "-m", "kindlab.cli"]


def test_a_debug_pod_is_kubectl_debug_node_shaped():
    pod = debug.manifest("kind-worker2", image="example/busybox:1")
    spec = pod["spec"]
    assert spec["nodeName"] == "kind-worker2" and spec["hostNetwork"] and spec["hostPID"]
    assert spec["tolerations"] == [{"operator": "Exists"}] and spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 0 and spec["activeDeadlineSeconds"] == debug.LIFETIME
    container = spec["containers"][0]
    assert container["securityContext"] == {"privileged": True} and container["image"] == "example/busybox:1"
    assert container["volumeMounts"] == [{"name": "host", "mountPath": "/host"}]
    assert spec["volumes"] == [{"name": "host", "hostPath": {"path": "/"}}]
    assert pod["metadata"]["labels"][debug.LABEL] == debug.LABEL_VALUE
    assert pod["metadata"]["namespace"] == debug.NAMESPACE and len(pod["metadata"]["name"]) <= 63
    assert "trap 'exit 0' TERM" in container["command"][-1]   # PID 1 stops at once on delete


class RefusingCore:
    """A CoreV1Api whose namespace was just made again: the first pod creates are refused as the API server's
    admission does while it still holds the earlier, Terminating namespace."""

    def __init__(self, refusals: int):
        self.refusals, self.created, self.namespaces = refusals, [], []

    def read_namespace(self, name):
        from kubernetes.client.exceptions import ApiException

        if name not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(status=SimpleNamespace(phase="Active"))

    def create_namespace(self, body):
        self.namespaces.append(body["metadata"]["name"])

    def create_namespaced_pod(self, namespace, body):
        from kubernetes.client.exceptions import ApiException

        if self.refusals:
            self.refusals -= 1
            exc = ApiException(status=403, reason="Forbidden")
            exc.body = json.dumps({"kind": "Status", "reason": "Forbidden", "details": {"causes": [
                {"reason": debug.TERMINATING, "message": f"namespace {namespace} is being terminated"}]}})
            raise exc
        self.created.append(body["metadata"]["name"])


def test_a_pod_refused_by_a_namespace_still_terminating_in_admission_is_created_once_it_is_not():
    core = RefusingCore(refusals=2)
    pods = debug.DebugPods(core, timeout=10)
    pods._namespace()
    pods._create(debug.manifest("n1"))
    assert len(core.created) == 1 and core.namespaces == [debug.NAMESPACE] and pods.made_namespace
    core = RefusingCore(refusals=100)
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException):   # not for ever: the pod's start timeout
        refused = debug.DebugPods(core, timeout=0.6)
        refused._namespace()
        refused._create(debug.manifest("n1"))
    assert core.created == [] and core.refusals < 100


def test_doctor_without_a_usable_kubeconfig_is_one_line(tmp_path):
    done = subprocess.run([*KINDLAB, "doctor", "--kubeconfig", str(tmp_path / "nope")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no such file" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    done = subprocess.run([*KINDLAB, "doctor", "--kubeconfig", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "kubeconfig" in done.stderr


# -- on the lab's real Kubernetes ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_lab(tmp_path_factory):
    from kindlab.backends.netns.real import binaries

    if os.geteuid() != 0 or binaries.missing():
        pytest.skip(f"real Kubernetes cannot run here: {'; '.join(binaries.missing()) or 'not root'}")
    import kindlab
    from kindlab import walkthrough as wt

    name = f"d{secrets.token_hex(2)}"
    lab = kindlab.up(wt.private_config(tmp_path_factory.mktemp("kind")), name=name, backend="netns",
                     kubernetes="real")
    try:
        wt.apply_static(lab)
        wt.ensure_pods(lab)
        folder = tmp_path_factory.mktemp("kubeconfig")
        (folder / "kubeconfig").write_text(lab.kubeconfig())
        yield lab, folder / "kubeconfig"
    finally:
        lab.down()


def run_doctor(kubeconfig: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*KINDLAB, "doctor", "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def findings(done: subprocess.CompletedProcess) -> list[dict]:
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)["findings"]


def leftovers(kubeconfig: Path, wait: float = 20) -> list[str]:
    """The debug pods still there after `wait` seconds at most (a delete with grace 0 takes a moment)."""
    from kubernetes import client

    from kindlab.backends.kube.remote import api_client

    api = api_client(kubeconfig)
    try:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + wait
        while (left := debug.leftovers(core)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left
    finally:
        api.close()


def test_doctor_through_the_kubeconfig_flags_the_seeds_two_workers(real_lab):
    lab, kubeconfig = real_lab
    worker2, worker3 = f"{lab.name}-worker2", f"{lab.name}-worker3"
    done = run_doctor(kubeconfig, "-o", "json")
    assert done.returncode == 1, done.stderr
    rows = findings(done)
    bad = [r for r in rows if not r["ok"]]
    assert {r["node"] for r in bad} == {worker2, worker3}, bad
    assert {r["check"] for r in bad if r["node"] == worker2} == {"portmap-binary"}
    assert {"cni-config", "hostport-dnat"} <= {r["check"] for r in bad if r["node"] == worker3}
    assert all(set(r) >= {"node", "ok", "check", "evidence", "fix"} for r in rows)
    portmap = next(r for r in bad if r["check"] == "portmap-binary")
    assert portmap["evidence"].startswith("ls /opt/cni/bin: ") and "portmap" not in portmap["evidence"].split(": ")[1]
    config = next(r for r in bad if r["check"] == "cni-config")
    assert "05-kindlab.conf" in config["evidence"]
    assert {r["node"] for r in rows} == {n for n in lab.node_names()}   # every node, through its debug pod
    assert leftovers(kubeconfig) == []


def test_the_labs_own_doctor_is_the_same_path(real_lab):
    lab, kubeconfig = real_lab
    done = subprocess.run([*KINDLAB, "doctor", "--name", lab.name, "--backend", "netns", "-o", "json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    mine = {(r["node"], r["check"], r["ok"]) for r in findings(done)}
    theirs = {(r["node"], r["check"], r["ok"]) for r in findings(run_doctor(kubeconfig, "-o", "json"))}
    assert mine == theirs
    assert leftovers(kubeconfig) == []


def test_dry_run_creates_nothing(real_lab):
    lab, kubeconfig = real_lab
    done = run_doctor(kubeconfig, "--dry-run", "--node", f"{lab.name}-worker")
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    assert [d["kind"] for d in docs] == ["Namespace", "Pod"] and docs[1]["spec"]["nodeName"] == f"{lab.name}-worker"
    assert leftovers(kubeconfig, wait=0) == []


def test_sigint_and_timeout_leave_no_debug_pod(real_lab):
    lab, kubeconfig = real_lab
    proc = subprocess.Popen([*KINDLAB, "doctor", "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    from kubernetes import client

    from kindlab.backends.kube.remote import api_client

    api = api_client(kubeconfig)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 60
    while not debug.leftovers(core) and time.monotonic() < deadline:
        time.sleep(0.1)
    api.close()
    assert proc.poll() is None, ("doctor ended before it was interrupted", proc.returncode, proc.communicate())
    proc.send_signal(signal.SIGINT)   # Ctrl-C while its pods exist
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, (proc.returncode, err)
    assert leftovers(kubeconfig) == []
    done = run_doctor(kubeconfig, "--timeout", "1")
    assert done.returncode != 0 and "did not finish in 1s" in done.stderr and "Traceback" not in done.stderr
    assert leftovers(kubeconfig) == []


def test_a_stale_dnat_and_a_hostport_conflict_are_found_and_the_fixed_cluster_is_clean(real_lab):
    from kindlab import objects
    from kindlab import walkthrough as wt

    lab, kubeconfig = real_lab
    worker = f"{lab.name}-worker"
    # a portmap chain left behind: its DNAT goes to an address no pod has
    lab.exec(worker, "iptables -t nat -N CNI-DN-kindlabtest && iptables -t nat -A CNI-DN-kindlabtest -p tcp "
                     "-m tcp --dport 9999 -j DNAT --to-destination 192.168.1.250:8080 && iptables -t nat "
                     "-A CNI-HOSTPORT-DNAT -p tcp -m tcp --dport 9999 -j CNI-DN-kindlabtest")
    twin = objects.loads(Path(ROOT / "manifests/static/echo-kind-worker.yaml").read_text()
                         .replace("kind-worker", worker).replace("name: echo-" + worker, "name: twin"))[0]
    lab.apply_object(twin)
    try:
        rows = findings(run_doctor(kubeconfig, "-o", "json", "--node", worker))
        bad = {r["check"]: r for r in rows if not r["ok"]}
        assert "stale-dnat" in bad and "192.168.1.250:8080" in bad["stale-dnat"]["message"]
        assert "CNI-DN-kindlabtest" in bad["stale-dnat"]["evidence"]
        assert "hostport-conflict" in bad, rows
    finally:
        lab.delete_pod("twin")
        lab.exec(worker, "iptables -t nat -D CNI-HOSTPORT-DNAT -p tcp -m tcp --dport 9999 -j CNI-DN-kindlabtest; "
                         "iptables -t nat -F CNI-DN-kindlabtest; iptables -t nat -X CNI-DN-kindlabtest")
    wt.fix_all(lab)
    done = run_doctor(kubeconfig, "-o", "json")
    assert done.returncode == 0, [r for r in findings(done) if not r["ok"]]
    assert leftovers(kubeconfig) == []


def test_the_api_half_on_kinds_recorded_objects(monkeypatch):
    """RemoteCluster's reads, and what doctor takes from the API, on the kind fixtures (tests/data/kind)."""
    from kubernetes import client

    from kindlab import doctor
    from kindlab.backends.kube import client as kube_client
    from kindlab.backends.kube import remote
    from kindlab.errors import ClusterError

    data = ROOT / "tests" / "data" / "kind"
    api = client.ApiClient()

    def load(name: str, kind: str):
        return api.deserialize((data / name).read_text(), kind, "application/json")

    class Core:
        def list_node(self):
            return load("nodes.json", "V1NodeList")

        def list_pod_for_all_namespaces(self):
            return load("pods.json", "V1PodList")

        def list_event_for_all_namespaces(self):
            return load("events.json", "CoreV1EventList")

    monkeypatch.setattr(kube_client.KubeApi, "core", property(lambda self: Core()))
    cluster = remote.RemoteCluster(api, name="kind")
    assert cluster.node_names() == ["kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"]
    assert cluster.topology.node("kind-control-plane").role == "control-plane"
    assert cluster.capabilities.kubelet == "real" and cluster.capabilities.kubeconfig
    assert cluster.capabilities.kubernetes_version.startswith("v1.")
    pods, events = cluster.pod_list(), cluster.event_list()
    ports = doctor.host_ports(pods, "kind-worker2")
    assert [(p.host_port, p.container_port, p.running) for p in ports] == [(80, 8080, False)]
    stuck = doctor._stuck(pods, events, "kind-worker2")
    assert 'failed to find plugin "portmap"' in stuck and "Pending" in stuck
    assert cluster.node_ip("kind-worker3").startswith("172.18.0.")   # kind gives addresses in its own order
    only = remote.RemoteCluster(api, name="kind", nodes=["kind-worker2"])
    assert only.node_names() == ["kind-worker2"]
    assert [n["metadata"]["name"] for n in only.node_list()] == ["kind-worker2"]
    with pytest.raises(ClusterError, match="has no node kind-worker9"):
        remote.RemoteCluster(api, name="kind", nodes=["kind-worker9"])
    for change in (lambda: cluster.cp("a", "b"), lambda: cluster.curl("http://172.18.0.3/"), cluster.down):
        with pytest.raises(ClusterError):
            change()
