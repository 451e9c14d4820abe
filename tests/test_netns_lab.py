"""The netns lab beyond the seed: get-or-create, the agent's restart and adoption, two labs, admission,
scheduling, exec/cp/curl semantics and their errors, and a clean teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, curl_answer, portmap_binary, small_config

from kindlab import backends, objects, scenario
from kindlab.errors import (
    ClusterError,
    ConfigError,
    ConnectionRefused,
    CurlError,
    ExecError,
    ManifestError,
    NotFound,
)
from kindlab.walkthrough import private_config

pytestmark = pytest.mark.netns


def pod(name: str, node: str | None, host_port: int | None = 80, image: str = "inanimate/echo-server"):
    port = {"containerPort": 8080, **({"hostPort": host_port} if host_port else {})}
    return objects.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                              "spec": {**({"nodeName": node} if node else {}),
                                       "containers": [{"name": "echo", "image": image, "ports": [port]}]}})[0]


def test_up_is_get_or_create_and_clashes_on_another_config(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    again = backends.up(small_config(tmp_path), name=lab.name, backend="netns")
    assert again.node_list() == lab.node_list()
    assert again.record["nodes"] == lab.record["nodes"]     # the same namespaces, not new ones
    backends.up(small_config(tmp_path), name=lab.name, backend="netns", backoff=0.7)
    assert lab.backoff == 0.7                                # a new back-off reaches the running agent
    with pytest.raises(ClusterError, match="already exists with another config"):
        backends.up(small_config(tmp_path, workers=2), name=lab.name, backend="netns")
    assert backends.get(lab.name, backend="netns").name == lab.name
    assert lab.name in backends.clusters(backend="netns")
    frame = lab.nodes()
    assert list(frame["ip"]) == ["172.18.0.2", "172.18.0.3"] and set(frame["backend"]) == {"netns"}
    assert list(frame["podCIDR"]) == ["192.168.0.0/24", "192.168.1.0/24"]
    assert all(n["status"]["conditions"][0]["status"] == "True" for n in lab.node_list())


def test_node_network_and_views(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    worker = f"{lab.name}-worker"
    routes = lab.exec(worker, "ip route")
    assert "192.168.0.0/24 via 172.18.0.2" in routes and "default" not in routes
    assert lab.exec(worker, "cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert lab.exec(worker, ["hostname"]).strip() == worker
    # the node's /opt/cni/bin is its own: a file put there is not on the host nor on other nodes
    lab.exec(worker, "touch /opt/cni/bin/only-here")
    plugins = os.path.dirname(portmap_binary())
    assert not os.path.exists("/opt/cni/bin/only-here") and not os.path.exists(os.path.join(plugins, "only-here"))
    assert "only-here" not in lab.exec(f"{lab.name}-control-plane", "ls /opt/cni/bin")


def test_agent_killed_pods_keep_serving_and_are_adopted(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    worker = f"{lab.name}-worker"
    lab.apply_object(pod("echo", worker))
    first = lab.wait_for_pod("echo", timeout=15)
    agent_pid = int((lab.state_dir / "agent.pid").read_text())
    os.kill(agent_pid, signal.SIGKILL)
    lab.wait_for(lambda: not lab.agent_running(), timeout=5, what="agent gone")
    assert curl_answer(lab, "http://172.18.0.3/").status == 200      # pods keep serving
    assert lab.node_list()[1]["status"]["conditions"][0]["status"] == "Unknown"
    again = backends.up(small_config(tmp_path), name=lab.name, backend="netns", backoff=0.5)
    again.wait_for(again.agent_running, timeout=5, what="agent back")
    assert int((lab.state_dir / "agent.pid").read_text()) != agent_pid
    time.sleep(0.3)
    adopted = again.pod("echo")
    assert adopted["status"]["phase"] == "Running"
    assert adopted["status"]["podIP"] == first["status"]["podIP"]
    keys = ("kindlab.io/sandbox-id", "kindlab.io/running-at")
    assert [adopted["metadata"]["annotations"][k] for k in keys] == [first["metadata"]["annotations"][k] for k in keys]
    assert again.curl("http://172.18.0.3/").status == 200
    try:                                           # CNI CHECK against the cached result
        assert again.cni_check("echo") == "ok"
    except ClusterError as exc:                    # portmap < 1.2 fails CHECK of IPv4-only pods (plugins#819)
        assert 'plugin type="portmap" failed (check): could not check ipv6 dnat' in str(exc)
    again.delete_pod("echo")                       # the new agent runs CNI DEL for the adopted pod
    assert "CNI-DN-" not in again.exec(worker, "iptables-save")
    with pytest.raises(ConnectionRefused):
        again.curl("http://172.18.0.3/", timeout=2)


def test_a_new_agent_removes_what_no_pod_owns(make_lab, tmp_path):
    from kindlab.backends.netns import processes
    lab = make_lab(small_config(tmp_path))
    worker = f"{lab.name}-worker"
    lab.apply_object(pod("echo", worker))
    lab.wait_for_pod("echo", timeout=15)
    os.kill(int((lab.state_dir / "agent.pid").read_text()), signal.SIGKILL)
    lab.wait_for(lambda: not lab.agent_running(), timeout=5, what="agent gone")
    (lab.state_dir / "status" / "default_echo.json").unlink()     # the old agent's work, forgotten
    lab.ensure_agent()
    lab.wait_for(lambda: lab.pod("echo")["status"].get("phase") == "Running"
                 and "kindlab.io/running-at" in lab.pod("echo")["metadata"]["annotations"], timeout=15, what="Running")
    pauses = [p for p, owner in processes.marked().items()
              if owner == lab.name and processes.cmdline(p)[0].startswith("kindlab-pause")]
    assert len(pauses) == 1
    assert lab.exec(worker, "iptables-save").count("DNAT --to-destination") == 1
    assert curl_answer(lab, "http://172.18.0.3/").status == 200


def test_two_labs_side_by_side(make_lab, tmp_path):
    one, two = make_lab(small_config(tmp_path)), make_lab(small_config(tmp_path))
    for lab in (one, two):
        lab.apply_object(pod("echo", f"{lab.name}-worker"))
    for lab in (one, two):
        lab.wait_for_pod("echo", timeout=15)
        assert curl_answer(lab, "http://172.18.0.3/").status == 200
    assert one.exec(f"{one.name}-worker", "iptables-save") .count("DNAT --to-destination") == 1
    one.down()
    assert two.curl("http://172.18.0.3/").status == 200
    assert two.pod("echo")["status"]["phase"] == "Running"


def test_hostport_conflict_is_rejected(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    worker = f"{lab.name}-worker"
    lab.apply_object(pod("first", worker))
    lab.wait_for_pod("first", timeout=15)
    lab.apply_object(pod("second", worker))
    rejected = lab.wait_for_pod("second", phase="Failed", timeout=10)
    assert rejected["status"]["reason"] == "NodePorts"
    assert rejected["status"]["message"] == "Pod Predicate NodePorts failed"   # the v1.20 kubelet's words
    assert any(e["reason"] == "NodePorts" and e["involvedObject"]["name"] == "second" for e in lab.event_list())
    assert lab.pods().set_index("name").loc["second", "reason"] == "NodePorts"
    lab.apply_object(pod("third", worker, host_port=81))        # another port is fine
    lab.wait_for_pod("third", timeout=15)
    lab.delete_pod("second")


def test_deployment_is_scheduled_off_the_control_plane(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    assert lab.apply(ROOT / "manifests" / "deploy" / "echo-deploy.yaml") == ["deployment.apps/echo created"]
    assert lab.apply(ROOT / "manifests" / "deploy" / "echo-deploy.yaml") == ["deployment.apps/echo unchanged"]
    name = lab.wait_for(lambda: [p["metadata"]["name"] for p in lab.pod_list()], timeout=5, what="a pod")[0]
    running = lab.wait_for_pod(name, timeout=15)
    assert running["spec"]["nodeName"] == f"{lab.name}-worker"
    assert any(e["reason"] == "Scheduled" for e in lab.event_list())
    lab.delete_pod(name)                           # the deployment makes another one
    lab.wait_for(lambda: [p for p in lab.pod_list() if p["metadata"]["name"] != name], timeout=5,
                 what="a replacement pod")


def test_unsupported_image_is_an_event_not_a_crash(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    lab.apply_object(pod("web", f"{lab.name}-worker", image="nginx:1.25"))
    event = lab.wait_for(lambda: [e for e in lab.event_list() if e["reason"] == "Failed"], timeout=10,
                         what="a Failed event")[0]
    assert event["type"] == "Warning" and "netns backend" in event["message"] and "nginx:1.25" in event["message"]
    # the agent records the event, then writes the status: wait for the status too
    def waiting(status):
        return (status.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason")
    status = lab.wait_for(lambda: [s for s in [lab.pod("web")["status"]] if waiting(s) != "ContainerCreating"],
                          timeout=5, what="the pod's status after its image failed")[0]
    assert status["phase"] == "Pending" and status["podIP"]
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    lab.delete_pod("web")
    assert lab.agent_running()


def test_a_deleted_pod_is_terminating_until_the_kubelets_status_sync(make_lab, tmp_path):
    # as the real kubelet: stopped at once, then in the API, its container terminated, until the status manager's
    # tick after three relists (0.1 s at this back-off) found it reclaimed; its hostPort is free meanwhile. Now and
    # then (a relist between the container's exit and the sandbox's stop) the container shows waiting instead, and
    # the pod leaves after the container GC's next round (6 s apart at this back-off)
    lab = make_lab(small_config(tmp_path), backoff=1.0)
    worker = f"{lab.name}-worker"
    lab.apply_object(pod("echo", worker))
    lab.wait_for_pod("echo", timeout=15)
    deleted = time.monotonic()
    lab.delete_pod("echo", wait=False)

    def stopped():
        p = lab.pod("echo")
        return "running" not in p["status"]["containerStatuses"][0]["state"] and p
    seen = lab.wait_for(stopped, timeout=5, interval=0.01, what="the container stopped")
    state = seen["status"]["containerStatuses"][0]
    assert seen["metadata"]["deletionTimestamp"] and seen["status"]["phase"] == "Running" and not state["ready"]
    left_to_gc = state["state"] == {"waiting": {"reason": "ContainerCreating"}}
    if not left_to_gc:
        ended = state["state"]["terminated"]
        assert ended["reason"] == "Completed" and ended["exitCode"] == 0 and ended["containerID"], state
    lab.apply_object(pod("next", worker))            # admission counts no terminated pod
    lab.wait_for(lambda: scenario.find_pod(lab, "echo") is None, timeout=9, interval=0.01, what="the pod gone")
    gone = time.monotonic() - deleted
    most = 6.0 + 0.1 * 1.2 if left_to_gc else 0.1 * 3.2   # a GC round and a relist, or 3 relists
    assert 0.2 <= gone < most + 1.0 + 0.5, (gone, left_to_gc)   # then at most a tick
    assert lab.wait_for_pod("next", timeout=15)["status"]["phase"] == "Running"


def test_exec_cp_curl_and_their_errors(make_lab, tmp_path):
    lab = make_lab(private_config(tmp_path / "kind"))  # worker2's /opt/cni is tmp_path/kind/empty
    worker, worker2 = f"{lab.name}-worker", f"{lab.name}-worker2"
    with pytest.raises(NotFound, match="has no node 'nope'"):
        lab.exec("nope", "true")
    with pytest.raises(ExecError) as failed:
        lab.exec(worker, "echo oops >&2; exit 3")
    assert failed.value.returncode == 3 and "oops" in str(failed.value) and failed.value.stderr.strip() == "oops"
    assert lab.exec(worker, "exit 4", check=False) == ""
    assert lab.exec(worker, "cat", input="in") == "in"
    # cp both ways, binaries kept executable; into a folder; onto a read-only mount fails
    lab.cp(portmap_binary(), f"{worker2}:/opt/cni/bin/")
    assert "portmap" in lab.exec(worker2, "ls /opt/cni/bin")
    assert (tmp_path / "kind" / "empty" / "bin" / "portmap").exists()
    lab.exec(worker2, "/opt/cni/bin/portmap --version 2>&1 || true", check=False)
    lab.cp(f"{worker}:/etc/cni/net.d/05-kindlab.conf", str(tmp_path / "out.conf"))
    assert json.loads((tmp_path / "out.conf").read_text())["type"] == "kindlab-cni"
    lab.cp(f"{worker}:/opt/cni/bin/loopback", str(tmp_path))
    assert os.access(tmp_path / "loopback", os.X_OK)
    with pytest.raises(ExecError, match="read-only"):
        lab.cp(str(tmp_path / "out.conf"), f"{worker}:/etc/cni/net.d/000-kindlab-portmap.conflist")
    with pytest.raises(ExecError, match="could not find"):
        lab.cp(f"{worker}:/no/such/file", str(tmp_path))
    with pytest.raises(NotFound):
        lab.cp(str(tmp_path / "out.conf"), "nope:/tmp/")
    with pytest.raises(ClusterError, match="must be NODE:PATH"):
        lab.cp(str(tmp_path / "out.conf"), str(tmp_path / "x"))
    # curl: refused, unknown names, node names
    with pytest.raises(ConnectionRefused) as refused:
        lab.curl("http://172.18.0.3/", timeout=2)
    assert refused.value.exit_code == 7
    with pytest.raises(CurlError) as unknown:
        lab.curl("http://example.com/", timeout=2)
    assert unknown.value.exit_code == 6
    with pytest.raises(ConnectionRefused):
        lab.curl(f"http://{worker}/", timeout=2)


def test_bad_input(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    with pytest.raises(ManifestError, match="spec.nodeName"):
        lab.apply_object(pod("echo", "no-such-node"))
    with pytest.raises(ManifestError, match="metadata.name"):
        lab.apply_object(pod("Bad_Name", f"{lab.name}-worker"))
    with pytest.raises(NotFound, match='pods "ghost" not found'):
        lab.delete_pod("ghost")
    lab.apply_object(pod("echo", f"{lab.name}-worker"))
    assert lab.apply_object(pod("echo", f"{lab.name}-worker")) == "pod/echo unchanged"
    with pytest.raises(ClusterError, match="Forbidden"):
        lab.apply_object(pod("echo", f"{lab.name}-worker", host_port=81))
    with pytest.raises(NotFound, match="no netns cluster named 'nosuchlab'"):
        backends.get("nosuchlab", backend="netns")
    with pytest.raises(ConfigError, match="cluster name"):
        backends.up(small_config(tmp_path), name="Bad_Name", backend="netns")
    with pytest.raises(ConfigError, match="backoff"):
        backends.up(small_config(tmp_path), name=lab.name, backend="netns", backoff=-1)
    assert backends.delete("nosuchlab", backend="netns") is False


def test_cli_against_a_lab(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    worker = f"{lab.name}-worker"

    def cli(*args: str) -> subprocess.CompletedProcess:
        argv = [args[0], "--name", lab.name, "--backend", "netns", *args[1:]]
        return subprocess.run([sys.executable, "-m", "kindlab.cli", *argv], capture_output=True, text=True, timeout=60)

    nodes = json.loads(cli("get", "nodes", "-o", "json").stdout)
    assert [n["metadata"]["name"] for n in nodes["items"]] == [f"{lab.name}-control-plane", worker]
    assert cli("exec", worker, "--", "hostname").stdout.strip() == worker
    refused = cli("curl", "http://172.18.0.3/", "--timeout", "2")
    assert refused.returncode == 7
    for args in (("exec", "nope", "--", "true"), ("delete", "pod", "ghost")):
        result = cli(*args)
        assert result.returncode != 0 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_lab_whose_agent_died_is_found_and_swept(make_lab, tmp_path):
    from kindlab.backends.netns import host, lifecycle, processes
    lab = make_lab(small_config(tmp_path))
    lab.apply_object(pod("echo", f"{lab.name}-worker"))
    lab.wait_for_pod("echo", timeout=15)
    os.kill(int((lab.state_dir / "agent.pid").read_text()), signal.SIGKILL)
    (lab.state_dir / "lab.json").unlink()            # as if `up` had died half-way
    assert lab.name not in lifecycle.lab_names() and lab.name in lifecycle.all_traces()
    assert backends.delete(lab.name, backend="netns") is True
    assert host.existing(lab.name) == [] and not lab.state_dir.exists()
    assert not [p for p, owner in processes.marked().items() if owner == lab.name]
    assert lab.name not in lifecycle.all_traces()
