"""Pieces of the netns backend that need no namespaces: names, mounts, the CNI runtime against fake
plugins, events, scheduling, curl parsing, docker-cp rules, workloads, the plugin, preflight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import KIND_CONFIG, ROOT

from kindlab import cni_plugin as plugin
from kindlab import topology
from kindlab.backends.netns import (
    cni,
    controllers,
    curl,
    events,
    files,
    kubelet_loop,
    mounts,
    names,
    pod_status,
    preflight,
    workloads,
)
from kindlab.backends.netns.state.store import Store
from kindlab.errors import ConfigError, EnvironmentProblem, ExecError


def test_names_find_only_their_own_lab():
    assert names.owns_netns("a", "kindlab-a-host") and names.owns_netns("a", "kindlab-a-a-worker2")
    assert not names.owns_netns("a", "kindlab-a-a-host")               # lab "a-a"'s host
    assert not names.owns_netns("a", "kindlab-a-a-a-a-worker")         # lab "a-a"'s node
    assert names.labs_of_netns(["kindlab-a-a-host", "kindlab-b-host", "x"]) == {"a-a", "b"}
    assert names.marked_lab(["kindlab-node kindlab-lab=kind node=kind-worker", "infinity"]) == "kind"
    for bad in ("Kind", "-a", "a_b", "a..b", "a.b", "x" * 47, ""):
        with pytest.raises(ConfigError):
            names.check_lab_name(bad)


def test_mount_plan_substitutes_cilium_and_resolves_worker2(tmp_path):
    topo = topology.load(KIND_CONFIG, name="kind")
    worker2 = topo.node("kind-worker2")
    dirs = mounts.NodeDirs(tmp_path)
    plan, subs = mounts.plan(topo, worker2, dirs, Path("/usr/lib/cni"))
    software = [str(f) for f in mounts.software()]   # a checkout under /tmp is bound in first, read-only
    assert [m.target for m in plan] == [*software, "/opt/cni/bin", "/etc/cni/net.d", "/run/kindlab/node",
                                        "/opt/cni", "/etc/cni/net.d/000-kindlab-portmap.conflist"]
    assert subs[0].line(KIND_CONFIG.parent) == ("netns: kindlab-cni stands in for cilium-cni: "
                                                "cni/000-cilium-portmap.conflist -> cni/000-kindlab-portmap.conflist")
    assert plan[-1].source == ROOT / "kind" / "cni" / "000-kindlab-portmap.conflist" and plan[-1].read_only
    assert mounts.host_path(plan, "/opt/cni/bin", dirs) == ROOT / "kind" / "empty" / "bin"
    assert mounts.host_path(plan, "/etc/cni/net.d/05-kindlab.conf", dirs) == dirs.netd / "05-kindlab.conf"
    worker = topo.node("kind-worker")
    plan, _ = mounts.plan(topo, worker, dirs, Path("/usr/lib/cni"))
    assert mounts.host_path(plan, "/opt/cni/bin/kindlab-cni", dirs) == dirs.upper / "kindlab-cni"
    assert mounts.host_path(plan, "/srv/x", dirs) == dirs.rootfs.upper("srv") / "x"   # the node's own layer
    script = "\n".join(mounts.script(plan, dirs))
    assert "mount -t overlay" in script and "remount,bind,ro /etc/cni/net.d/000-kindlab-portmap.conflist" in script


# -- the CNI runtime against fake plugins ----------------------------------------------------------
@dataclass
class FakeView:
    root: Path
    dirs: mounts.NodeDirs

    def enter(self) -> list[str]:
        return []


#: A hostPort 80 -> 8080 as containerd hands it to CNI (go-cni's keys).
HTTP_MAPPING = {"HostPort": 80, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}
FAKE_PLUGIN = """#!/bin/sh
name=$(basename "$0")
cat > "{log}/$name.$CNI_COMMAND.json"
env | grep ^CNI_ | sort > "{log}/$name.$CNI_COMMAND.env"
echo "$name $CNI_COMMAND" >> "{log}/order"
case "$name" in
  failing) echo '{{"cniVersion": "0.4.0", "code": 7, "msg": "no bridge for you", "details": "why"}}'; exit 1;;
esac
[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "0.4.0", "ips": [{{"address": "10.0.0.5/24"}}], "via": "'$name'"}}'
exit 0
"""


@pytest.fixture
def fake_cni(tmp_path, monkeypatch):
    bin_dir, conf_dir, log = tmp_path / "bin", tmp_path / "net.d", tmp_path / "log"
    for d in (bin_dir, conf_dir, log):
        d.mkdir()
    for name in ("primary", "portmap", "loopback", "failing"):
        (bin_dir / name).write_text(FAKE_PLUGIN.format(log=log))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(cni, "CNI_PATH", str(bin_dir))
    monkeypatch.setattr(cni, "CONF_DIR", str(conf_dir))
    runtime = cni.Runtime(FakeView(Path("/"), mounts.NodeDirs(tmp_path / "node")))
    pod = cni.PodNetwork(sandbox_id="abc", netns="/proc/1/ns/net", pod_name="p", pod_namespace="default",
                         pod_uid="u-1", port_mappings=[HTTP_MAPPING])
    return runtime, pod, conf_dir, log


def read(log: Path, name: str) -> dict:
    return json.loads((log / name).read_text())


def test_each_plugin_gets_the_capability_args_it_declares(fake_cni):
    """libcni's injectRuntimeConfig: a plugin's runtimeConfig holds the runtime's arguments for the capabilities it
    declares true, and the results cache records them all (containerd 1.7: annotations, hostPorts, DNS)."""
    runtime, pod, conf_dir, log = fake_cni
    dns = {"Servers": ["10.96.0.10"], "Searches": ["default.svc.cluster.local"], "Options": ["ndots:5"]}
    pod.dns, pod.annotations = dns, {"kubernetes.io/config.source": "api"}
    (conf_dir / "000-chain.conflist").write_text(json.dumps({"cniVersion": "0.4.0", "name": "chain", "plugins": [
        {"type": "primary", "capabilities": {"dns": True, "portMappings": False, "bandwidth": True}},
        {"type": "portmap", "capabilities": {"portMappings": True, cni.POD_ANNOTATIONS: True}}]}))
    runtime.setup(pod)
    assert read(log, "primary.ADD.json")["runtimeConfig"] == {"dns": dns}
    assert read(log, "portmap.ADD.json")["runtimeConfig"] == {cni.POD_ANNOTATIONS: pod.annotations,
                                                              "portMappings": [HTTP_MAPPING]}
    cached = json.loads((runtime.cache / "chain-abc-eth0").read_text())["capabilityArgs"]
    assert list(cached) == ["dns", cni.POD_ANNOTATIONS, "portMappings"]   # a Go map's keys, sorted
    pod.annotations, pod.port_mappings = {}, []
    assert pod.capability_args() == {"dns": dns, cni.POD_ANNOTATIONS: {}}   # annotations always, the rest when any


def test_config_choice_is_containerds(fake_cni):
    runtime, _, conf_dir, _ = fake_cni
    with pytest.raises(cni.CniError, match="cni plugin not initialized"):
        cni.load_network(Path("/"))
    (conf_dir / "10-b.conf").write_text('{"cniVersion": "0.4.0", "name": "b", "type": "primary"}')
    (conf_dir / "00-readme.txt").write_text("not a config")
    net = cni.load_network(Path("/"))
    assert (net.file, net.name, [p["type"] for p in net.plugins]) == ("10-b.conf", "b", ["primary"])
    (conf_dir / "05-a.conflist").write_text("{ not json")  # a broken first file: no network, as containerd
    with pytest.raises(cni.CniError, match="^cni plugin not initialized$"):
        cni.load_network(Path("/"))
    (conf_dir / "000-chain.conflist").write_text(json.dumps(
        {"cniVersion": "0.4.0", "name": "chain", "plugins": [{"type": "primary"}, {"type": "portmap"}]}))
    (conf_dir / "Z-upper.conf").write_text('{"cniVersion": "0.4.0", "name": "z", "type": "primary"}')
    assert cni.load_network(Path("/")).name == "chain"    # byte order: "0" < "Z" < "a"


def test_chain_add_del_check_per_the_spec(fake_cni):
    runtime, pod, conf_dir, log = fake_cni
    (conf_dir / "000-chain.conflist").write_text(json.dumps({"cniVersion": "0.4.0", "name": "chain", "plugins": [
        {"type": "primary", "capabilities": {"portMappings": False}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]}))
    result = runtime.setup(pod)
    assert result["via"] == "portmap" and cni.pod_ip(result) == "10.0.0.5"
    first, second = read(log, "primary.ADD.json"), read(log, "portmap.ADD.json")
    assert first["name"] == second["name"] == "chain" and first["cniVersion"] == "0.4.0"
    assert "prevResult" not in first and second["prevResult"]["via"] == "primary"
    assert "runtimeConfig" not in first and "capabilities" not in second
    assert second["runtimeConfig"] == {"portMappings": [HTTP_MAPPING]}
    env = (log / "portmap.ADD.env").read_text()
    assert "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=abc;" \
           "K8S_POD_UID=u-1" in env
    assert "CNI_IFNAME=eth0" in env and "CNI_NETNS=/proc/1/ns/net" in env and "CNI_CONTAINERID=abc" in env
    assert read(log, "loopback.ADD.json")["name"] == "cni-loopback"
    cache = runtime.cache / "chain-abc-eth0"
    assert json.loads(cache.read_text())["result"]["via"] == "portmap"
    runtime.check(pod)
    assert read(log, "primary.CHECK.json")["prevResult"]["via"] == "portmap"
    runtime.teardown(pod)
    order = (log / "order").read_text().split("\n")
    assert order[-4:-1] == ["portmap DEL", "primary DEL", "loopback DEL"]
    assert read(log, "primary.DEL.json")["prevResult"]["via"] == "portmap"
    assert not cache.exists()


def test_errors_read_as_libcni_and_containerd(fake_cni):
    runtime, pod, conf_dir, _ = fake_cni
    (conf_dir / "000-chain.conflist").write_text(json.dumps({"cniVersion": "0.4.0", "name": "chain", "plugins": [
        {"type": "primary"}, {"type": "missing"}]}))
    with pytest.raises(cni.CniError) as missing:
        runtime.setup(pod)
    assert str(missing.value) == ('failed to setup network for sandbox "abc": plugin type="missing" failed (add): '
                                  f'failed to find plugin "missing" in path [{cni.CNI_PATH}]')
    (conf_dir / "000-chain.conflist").write_text(json.dumps({"cniVersion": "0.4.0", "name": "chain", "plugins": [
        {"type": "failing"}]}))
    with pytest.raises(cni.CniError, match='plugin type="failing" failed \\(add\\): no bridge for you; why$'):
        runtime.setup(pod)


def test_port_mappings_from_a_pod_spec():
    spec = {"containers": [{"ports": [{"containerPort": 8080, "hostPort": 80, "protocol": "TCP"},
                                      {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "1.2.3.4"},
                                      {"containerPort": 9000}]}]}
    assert cni.port_mappings(spec) == [HTTP_MAPPING,
                                       {"HostPort": 53, "ContainerPort": 53, "Protocol": "udp", "HostIP": "1.2.3.4"}]


# -- events, scheduling ---------------------------------------------------------------------------
def test_events_count_like_kubernetes(tmp_path):
    store = Store(tmp_path)
    store.create()
    rec = events.EventRecorder(store)
    meta = {"name": "p", "namespace": "default", "uid": "u"}
    for _ in range(3):
        rec.record(meta, "n", "Warning", "FailedCreatePodSandBox", "same message")
    assert [(e["message"], e["count"]) for e in store.events()] == [("same message", 3)]
    for i in range(12):
        rec.record(meta, "n", "Warning", "FailedCreatePodSandBox", f"message {i}")
    combined = [e for e in store.events() if e["message"].startswith("(combined from similar events): ")]
    assert len(combined) == 1 and combined[0]["count"] == 4       # the 10th distinct message on
    assert sum(e["count"] for e in store.events()) == 15          # every occurrence counted once
    assert events.EventRecorder(store).events == store.events()   # a new agent carries on


@pytest.mark.parametrize(("backoff", "refill"), [(10.0, 300.0), (0.5, 15.0)])
def test_the_spam_filter_refills_on_the_labs_clock(tmp_path, monkeypatch, backoff, refill):
    """25 events per object, then one per 5 minutes at the real back-off, scaled as the model's other clocks."""
    store = Store(tmp_path)
    store.create()
    now = [1000.0]
    monkeypatch.setattr(events.time, "time", lambda: now[0])
    rec = events.EventRecorder(store, lambda: backoff)
    meta = {"name": "p", "namespace": "default", "uid": "u"}
    kept = [rec.record(meta, "n", "Warning", "FailedCreatePodSandBox", f"attempt {i}") for i in range(26)]
    assert [k is not None for k in kept] == [True] * 25 + [False]
    now[0] += refill * 0.99
    assert rec.record(meta, "n", "Warning", "FailedCreatePodSandBox", "early") is None
    now[0] += refill * 0.02
    assert rec.record(meta, "n", "Warning", "FailedCreatePodSandBox", "one more") is not None


def test_events_are_journaled_and_compacted(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "COMPACT_MIN", 2)
    store = Store(tmp_path)
    store.create()
    rec = events.EventRecorder(store)
    meta = {"name": "p", "namespace": "default", "uid": "u"}
    rec.record(meta, "n", "Normal", "Pulled", "once")
    for _ in range(7):
        rec.record(meta, "n", "Warning", "FailedCreatePodSandBox", "again")
        assert len(store.events_file.read_text().splitlines()) <= events.COMPACT_AT * 2 + 1   # never grows unbounded
    assert [(e["reason"], e["count"]) for e in store.events()] == [("Pulled", 1), ("FailedCreatePodSandBox", 7)]
    with open(store.events_file, "a") as f:
        f.write('{"half a line')                                   # a reader meets an append in progress
    assert [e["count"] for e in store.events()] == [1, 7]


@dataclass
class FakePod:
    node: str | None
    ports: list
    stage: pod_status.Stage = pod_status.Stage.RUNNING

    def host_ports(self):
        return self.ports


@dataclass
class FakeNode:
    name: str
    role: str
    index: int


def test_scheduler_avoids_the_control_plane_and_taken_ports():
    nodes = {n.name: n for n in (FakeNode("cp", "control-plane", 0), FakeNode("w1", "worker", 1),
                                 FakeNode("w2", "worker", 2))}
    port80 = [("tcp", 80, "")]
    new = FakePod(None, port80)
    assert controllers.pick_node(new, nodes, [new], pod_status.ports_conflict) == ("w1", "")
    placed = [FakePod("w1", port80), FakePod("w2", port80), new]
    node, why = controllers.pick_node(new, nodes, placed, pod_status.ports_conflict)
    assert node is None and why == ("0/3 nodes are available: 1 node(s) had untolerated taint "
                                    "{node-role.kubernetes.io/control-plane: }, 2 node(s) didn't have free ports "
                                    "for the requested pod ports.")
    assert controllers.pick_node(FakePod(None, []), nodes, placed, pod_status.ports_conflict)[0] == "w1"
    assert pod_status.ports_conflict([("tcp", 80, "1.2.3.4")], [("tcp", 80, "")])
    assert not pod_status.ports_conflict([("tcp", 80, "")], [("udp", 80, "")])
    assert not pod_status.ports_conflict([("tcp", 80, "1.1.1.1")], [("tcp", 80, "2.2.2.2")])
    assert len(controllers.template_hash({"a": 1})) == 10


# -- curl, cp, workloads, plugin, preflight -----------------------------------------------------
def test_curl_output_parsing():
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Real-Server: echo-server"
           b"\r\n\r\nhello\r\n\r\nworld")
    reply = curl.parse("http://x/", raw)
    assert (reply.status, reply.headers["X-Real-Server"], reply.body) == (200, "echo-server", "hello\r\n\r\nworld")


def test_cp_follows_docker_cp_rules(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (src / "f").chmod(0o755)
    dest = tmp_path / "dest"
    dest.mkdir()
    files.copy(src / "f", dest, "f", "node:/dest", False)                 # into an existing folder
    assert os.access(dest / "f", os.X_OK)
    files.copy(src / "f", dest / "g", "f", "node:/dest/g", False)         # to a new name
    with pytest.raises(ExecError, match="must exist"):
        files.copy(src / "f", tmp_path / "nope", "f", "node:/nope/", True)
    files.copy(src, tmp_path / "copy", "src", "node:/copy", False)        # a folder to a new path
    files.copy(src, dest, "src", "node:/dest", False)                     # a folder into a folder
    assert (tmp_path / "copy" / "f").exists() and (dest / "src" / "f").exists()
    with pytest.raises(ExecError, match="could not find"):
        files.copy(tmp_path / "missing", dest, "missing", "node:/dest", False)


def test_workload_environment_and_kubelet_files(tmp_path):
    assert workloads.image_name("docker.io/inanimate/echo-server:latest") == "inanimate/echo-server"
    assert workloads.supported("inanimate/echo-server@sha256:abc") and not workloads.supported("nginx")
    assert workloads.image_name("localhost:5000/x/y:1") == "localhost:5000/x/y"
    env = workloads.environment("p", {"env": [{"name": "PORT", "value": "9090"}]}, "10.96.0.0/12")
    assert env["PORT"] == "9090" and env["HOSTNAME"] == "p" and env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443" and env["SSLPORT"] == "8443"
    hosts, resolv = workloads.write_pod_files(tmp_path, "p", "ns1", "192.168.1.7", "10.96.0.0/12")
    assert hosts.read_text().startswith("# Kubernetes-managed hosts file.\n")
    assert hosts.read_text().endswith("192.168.1.7\tp\n")
    assert resolv.read_text() == ("nameserver 10.96.0.10\nsearch ns1.svc.cluster.local svc.cluster.local "
                                  "cluster.local\noptions ndots:5\n")


def run_plugin(command: str, stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-IS", plugin.__file__], input=stdin, capture_output=True, text=True,
                          env={"CNI_COMMAND": command, **env}, timeout=10)


def test_plugin_delegates_with_the_node_subnet(tmp_path):
    version = run_plugin("VERSION", "", {})
    assert "0.4.0" in json.loads(version.stdout)["supportedVersions"]
    conf = json.dumps({"cniVersion": "0.4.0", "name": "kindlab-portmap", "type": "kindlab-cni",
                       "subnetFile": str(tmp_path / "subnet.env")})
    missing = run_plugin("ADD", conf, {"CNI_PATH": "/opt/cni/bin"})
    assert missing.returncode == 1 and json.loads(missing.stdout)["code"] == 11
    assert run_plugin("DEL", conf, {"CNI_PATH": "/opt/cni/bin"}).returncode == 0
    (tmp_path / "subnet.env").write_text("KINDLAB_SUBNET=192.168.3.0/24\nKINDLAB_DELEGATE_PATH=/nowhere\n")
    nobridge = run_plugin("ADD", conf, {"CNI_PATH": "/opt/cni/bin"})
    assert json.loads(nobridge.stdout)["msg"] == 'failed to find plugin "bridge" in path [/nowhere]'
    delegate = plugin.delegate_config(json.loads(conf) | {"prevResult": {"x": 1}}, "192.168.3.0/24", 1500)
    assert delegate["type"] == "bridge" and delegate["ipam"]["ranges"] == [[{"subnet": "192.168.3.0/24"}]]
    assert delegate["ipam"]["dataDir"] == str(tmp_path / "ipam") and delegate["prevResult"] == {"x": 1}
    assert delegate["name"] == "kindlab-portmap"


def test_preflight_says_what_to_install(monkeypatch):
    preflight.check.cache_clear()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root"):
        preflight.check()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight.runtime_packages, "cni_dir", lambda: None)   # set-up's pinned plugins absent
    monkeypatch.setattr(preflight, "CNI_DIRS", (Path("/nonexistent"),))
    with pytest.raises(EnvironmentProblem, match="apt-get install containernetworking-plugins"):
        preflight.check()
    monkeypatch.setattr(preflight, "TOOLS", ("no-such-tool-xyz",))
    with pytest.raises(EnvironmentProblem, match="apt-get install no-such-tool-xyz"):
        preflight.check()
    from kindlab.backends.netns import tools as commands
    monkeypatch.setattr(commands, "PACKAGES", {"ip": "iproute2"})
    monkeypatch.setattr(commands.shutil, "which", lambda *a, **k: None)
    with pytest.raises(EnvironmentProblem, match="apt-get install iproute2"):
        commands.which("ip")
    preflight.check.cache_clear()


def test_rejected_and_waiting_statuses_have_kubernetes_shape():
    st = pod_status.PodState(key="default_p", uid="u", meta={"name": "p", "creationTimestamp": "t0"},
                        spec={"containers": [{"name": "echo", "image": "inanimate/echo-server"}]}, node="n")
    st.start_time = "t1"
    status = pod_status.v1_status(st, "172.18.0.3")
    assert status["phase"] == "Pending" and status["hostIP"] == "172.18.0.3"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert [c["status"] for c in status["conditions"] if c["type"] == "Ready"] == ["False"]
    assert st.stage == pod_status.Stage.NEW
    st.stage, st.phase, st.reason, st.message = pod_status.Stage.REJECTED, "Failed", "NodePorts", "Pod was rejected: x"
    assert pod_status.v1_status(st, None)["reason"] == "NodePorts"


def test_a_started_container_shows_only_after_the_relist_that_sees_it():
    """containerd's start is the process's; the kubelet's status changes at PLEG's next relist, with Running and
    Ready together (no readiness probe): until then it is the status from before the start."""
    st = pod_status.PodState(key="default_p", uid="u", meta={"name": "p", "creationTimestamp": "t0"},
                        spec={"containers": [{"name": "echo", "image": "inanimate/echo-server"}]}, node="n")
    st.start_time, st.workload, st.running_at, st.started_at = "t1", (4242, 1), 100.0, "t2"
    for before, phase in (("ContainerCreating", "Pending"), ("CrashLoopBackOff", "Running")):
        st.stage, st.waiting_reason, st.phase = pod_status.Stage.STARTING, before, phase
        status = pod_status.v1_status(st, "172.18.0.3")
        container = status["containerStatuses"][0]
        assert container["state"] == {"waiting": {"reason": before}} and not container["started"]
        assert "containerID" not in container and not container["ready"]
        assert status["phase"] == st.phase   # a restarting pod stays Running, a new one Pending
    st.stage, st.phase, st.waiting_reason = pod_status.Stage.RUNNING, "Running", None
    container = pod_status.v1_status(st, "172.18.0.3")["containerStatuses"][0]
    assert container["state"] == {"running": {"startedAt": "t2"}} and container["started"] and container["ready"]
    assert container["containerID"] == "kindlab://4242"


def test_a_kept_sandbox_is_retried_at_the_first_relist_after_its_failure():
    """The real kubelet's pod worker syncs only on a status cache newer than its last sync, so a relist that saw
    the sandbox while it was being made does not wake it: the next one does (measured 0.05-1.03 s, never at once).
    A sandbox that was not kept waits for the back-off."""
    now = time.time()
    fake = SimpleNamespace(lock=threading.RLock(), relist_period=1.0, next_retry=lambda: now + 12.0,
                           events=SimpleNamespace(record=lambda *a, **k: None), write=lambda pod: None)
    fake.relist = lambda t: kubelet_loop.Agent.relist(fake, t)
    fake.next_relist = lambda after: kubelet_loop.Agent.next_relist(fake, after)
    # a relist while the sandbox was made, one due that no tick has run yet, a sandbox not kept
    for last, due, kept in ((now - 0.01, now + 0.7, True), (now - 0.99, now - 0.02, True), (now, now + 1, False)):
        fake.last_relist, fake.relist_at = last, due
        st = pod_status.PodState(key="default_p", uid="u", meta={"name": "p"}, spec={"containers": []}, node="n")
        kubelet_loop.Agent.sandbox_failed(fake, st, "plugin type=\"portmap\" failed", kept=kept)
        assert len(st.attempts) == 1 and st.phase == "Pending"
        if kept:
            assert st.attempts[0] < st.next_try <= max(due, st.attempts[0]) + 1.05, (last, due)
        else:
            assert st.next_try == now + 12.0


def test_a_relist_between_the_containers_exit_and_the_sandboxs_stop_leaves_the_sandbox_to_the_gc():
    """The kill took 40 ms; when the relist that first saw the container exited came inside them, the kubelet keeps
    the sandbox for its container GC's round and shows the container waiting; otherwise terminated, and the pod is
    gone three relists on. Either way the status changes at the first relist after the kill."""
    now = time.time()
    fake = SimpleNamespace(lock=threading.RLock(), backoff=10.0, sync_origin=now - 100.0, gc_origin=now - 100.0,
                           relist_period=1.0, last_relist=now - 0.5, relist_at=now + 0.5)
    fake.relist = lambda t: kubelet_loop.Agent.relist(fake, t)
    fake.next_relist = lambda after: kubelet_loop.Agent.next_relist(fake, after)
    for first_relist, state, gone in ((now - 0.01, {"waiting": {"reason": "ContainerCreating"}}, now + 30.0),
                                      (now + 0.5, "terminated", now + 10.0)):
        st = pod_status.PodState(key="default_p", uid="u", meta={"name": "p", "creationTimestamp": "t0"},
                            spec={"containers": [{"name": "echo", "image": "inanimate/echo-server"}]}, node="n",
                            stage=pod_status.Stage.RUNNING, phase="Running", waiting_reason=None, workload=(4242, 1))
        kubelet_loop.Agent.terminated(fake, st, True, exited=now - 0.04, first_relist=first_relist, stopped=now)
        assert st.stage == pod_status.Stage.TERMINATED and st.exit_seen_at == now + 0.5 and st.active
        assert st.remove_at == pytest.approx(gone), (first_relist, st.remove_at - now)
        st.exit_seen = True
        container = pod_status.v1_status(st, None)["containerStatuses"][0]
        assert not st.active and not container["ready"]
        assert container["state"] == state if isinstance(state, dict) else container["state"][state]["exitCode"] == 0


def test_the_models_container_starts_are_pushed_as_they_are_written(tmp_path):
    from kindlab.backends.netns import runtime_events

    runtime_events.append(tmp_path, "kindlab://1", 100.0)   # before the follower: not its business
    with runtime_events.ContainerFollower(tmp_path) as starts:
        assert starts.start_of("kindlab://1", timeout=0.05) is None
        runtime_events.append(tmp_path, "kindlab://2", 200.5)
        seen = starts.start_of("kindlab://2", timeout=2.0)
        assert seen is not None and seen.runtime_at == 200.5 and seen.arrived_at > 0
        assert starts.start_of("kindlab://3", timeout=0.05) is None


def test_a_set_up_shell_that_fails_before_go_is_read_says_why(monkeypatch):
    """The node's shell may fail (say, `unshare` refused) before "go" is written: its stderr is read, no traceback."""
    from kindlab.backends.netns import nodes
    monkeypatch.setattr(nodes, "keep", lambda proc, lab_name: proc.wait())   # it has ended before "go" is written
    proc = nodes.spawn_gated(["sh", "-c", "echo 'unshare: mount refused' >&2; exit 3"], "unit")
    _, err = proc.communicate(timeout=10)
    assert (proc.returncode, err) == (3, b"unshare: mount refused\n")


def test_a_set_up_shell_reads_go_then_runs(monkeypatch):
    from kindlab.backends.netns import nodes
    monkeypatch.setattr(nodes, "keep", lambda proc, lab_name: proc.pid)
    proc = nodes.spawn_gated(["sh", "-c", "read -r word; echo \"got $word\"; read -r more || echo eof"], "unit")
    out, _ = proc.communicate(timeout=10)
    assert out == b"got go\neof\n"
