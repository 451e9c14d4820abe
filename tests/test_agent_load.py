"""The model's agent under load (issue 12): reaping children while pool threads kill failed sandboxes,
50 pods with failures mixed in, applied 20 times, and a dead agent brought back by the next command."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, portmap_binary

from kindlab import backends, objects
from kindlab.backends.netns import processes

ROUNDS, GOOD, BROKEN, NO_IMAGE, CLASHING = 20, 4, 36, 5, 5      # 50 pods a round


class ReapedMeanwhile:
    """A child whose exit another thread collects while this thread looks at it (the race of issue 12)."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int:
        processes.CHILDREN.pop(self.pid, None)     # what a pool thread's kill() does at this very moment
        return 0


def test_reap_tolerates_a_child_collected_by_another_thread(monkeypatch):
    monkeypatch.setattr(processes, "CHILDREN", {})
    for pid in (10**9, 10**9 + 1):
        processes.CHILDREN[pid] = ReapedMeanwhile(pid)  # type: ignore[assignment]
    processes.reap()
    assert processes.CHILDREN == {}


def test_reap_and_kill_from_many_threads(monkeypatch):
    monkeypatch.setattr(processes, "CHILDREN", {})
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(40)]
    for proc in procs:
        processes.CHILDREN[proc.pid] = proc
    errors: list[BaseException] = []
    done = threading.Event()

    def reaper() -> None:
        while not done.is_set():
            try:
                processes.reap()
            except BaseException as exc:   # the test reports it
                errors.append(exc)
    thread = threading.Thread(target=reaper)
    thread.start()
    try:
        for proc in procs:
            processes.kill([proc.pid])
    finally:
        done.set()
        thread.join()
    assert errors == [] and processes.CHILDREN == {}


def config(folder: Path) -> Path:
    """control-plane; worker with the chained conflist; worker2 whose /opt/cni is an empty folder (no portmap)."""
    conflist = ROOT / "kind" / "cni" / "000-cilium-portmap.conflist"
    (folder / "no-plugins").mkdir()
    chained = (f"  - containerPath: /etc/cni/net.d/000-cilium-portmap.conflist\n    hostPath: {conflist}\n"
               "    readOnly: true\n")
    empty = f"  - containerPath: /opt/cni\n    hostPath: {folder / 'no-plugins'}\n"
    path = folder / "config"
    path.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  podSubnet: 192.168.0.0/16\n"
                    "nodes:\n- role: control-plane\n- role: worker\n  extraMounts:\n" + chained
                    + "- role: worker\n  extraMounts:\n" + empty + chained)
    return path


def pod(name: str, node: str, image: str = "inanimate/echo-server", host_port: int | None = None):
    port = {"containerPort": 8080, **({"hostPort": host_port} if host_port else {})}
    return objects.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                              "spec": {"nodeName": node, "containers": [{"name": "echo", "image": image,
                                                                         "ports": [port]}]}})[0]


def fifty(lab) -> list[objects.PodSpec]:
    worker, worker2 = f"{lab.name}-worker", f"{lab.name}-worker2"
    return ([pod(f"good{i}", worker, host_port=80 if i == 0 else None) for i in range(GOOD)]
            + [pod(f"broken{i}", worker2) for i in range(BROKEN)]               # CNI ADD fails: no portmap
            + [pod(f"noimage{i}", worker, image="nginx:1.25") for i in range(NO_IMAGE)]
            + [pod(f"clash{i}", worker, host_port=80) for i in range(CLASHING)])  # rejected: NodePorts


def settled(lab) -> bool:
    """Every good pod Running, every broken one failed at least once, every clashing one rejected."""
    pods = {p["metadata"]["name"]: p for p in lab.pod_list()}
    def annotations(name: str) -> dict:
        return pods[name]["metadata"].get("annotations") or {}
    return (all("kindlab.io/running-at" in annotations(f"good{i}") for i in range(GOOD))
            and all(json.loads(annotations(f"broken{i}").get("kindlab.io/sandbox-attempts", "[]"))
                    for i in range(BROKEN))
            and all(pods[f"clash{i}"]["status"].get("reason") == "NodePorts" for i in range(CLASHING)))


@pytest.mark.netns
def test_the_agent_lives_through_50_pods_with_failures_20_times(make_lab, tmp_path):
    lab = make_lab(config(tmp_path), backoff=0.2)
    agent = int((lab.state_dir / "agent.pid").read_text())
    for round_ in range(ROUNDS):
        for spec in fifty(lab):
            lab.apply_object(spec)
        lab.wait_for(lambda: settled(lab) or not lab.agent_running(), timeout=60, interval=0.1,
                     what=f"round {round_}: pods settled")
        assert lab.agent_running() and processes.alive(agent), f"round {round_}: the agent died"
        # a broken pod's kept sandbox needs portmap's DEL, as on the real kubelet: put it back for the deletion
        shutil.copy2(portmap_binary(), tmp_path / "no-plugins" / "bin" / "portmap")
        for p in lab.pod_list():
            lab.delete_pod(p["metadata"]["name"], wait=False)
        lab.wait_for(lambda: not lab.pod_list() or not lab.agent_running(), timeout=60, interval=0.1,
                     what=f"round {round_}: pods deleted")
        (tmp_path / "no-plugins" / "bin" / "portmap").unlink()
        assert lab.agent_running(), f"round {round_}: the agent died"
    assert int((lab.state_dir / "agent.pid").read_text()) == agent
    assert "Traceback" not in (lab.state_dir / "agent.log").read_text()


@pytest.mark.netns
@pytest.mark.parametrize(("what", "shows"), [
    ("nodes", lambda out: out.count(" Ready ") == 2 and "NotReady" not in out),
    ("pods", lambda out: re.search(r"^echo\s+1/1\s+Running\b", out, re.M)),
])
def test_the_next_command_starts_a_dead_agent_again(make_lab, tmp_path, what, shows):
    from conftest import small_config

    lab = make_lab(small_config(tmp_path))
    lab.apply_object(pod("echo", f"{lab.name}-worker"))
    lab.wait_for_pod("echo", timeout=15)
    dead = int((lab.state_dir / "agent.pid").read_text())
    os.kill(dead, signal.SIGKILL)
    lab.wait_for(lambda: not lab.agent_running(), timeout=5, what="agent gone")
    result = subprocess.run([sys.executable, "-m", "kindlab.cli", "get", what, "--name", lab.name,
                             "--backend", "netns"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert shows(result.stdout), result.stdout
    assert lab.agent_running() and int((lab.state_dir / "agent.pid").read_text()) != dead
    time.sleep(0.3)
    assert backends.get(lab.name, backend="netns").pod("echo")["status"]["phase"] == "Running"   # adopted
