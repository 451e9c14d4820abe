"""The seed's walkthrough on the lab's real Kubernetes (kube-apiserver, kubelet, containerd, kube-proxy).

Through the command line, as a user types it: create the cluster from a copy of kind/config, `get nodes`,
`get kubeconfig` and kubectl and the Python client through it, apply the seed's static pods, curl; then
through the API (kindlab.scenario, kindlab.heal): worker2's real event text and its heal within one
real back-off window of the fix, worker3 running with its hostPort dead until the pod is recreated.
Then the faults: a killed kubelet, a killed containerd, a killed creator (a kernel); after each,
`down` or `delete clusters --all` leaves no process, mount, namespace, cgroup or state, and the
machine's own network namespace is as it was.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kindlab.backends.netns.real import binaries

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[1]
KINDLAB = [sys.executable, "-m", "kindlab.cli"]

if binaries.missing():
    pytest.skip(f"real Kubernetes cannot run here: missing {'; '.join(binaries.missing())}", allow_module_level=True)


def cli(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    """`kindlab ARGS...` as a user runs it."""
    done = subprocess.run([*KINDLAB, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "KINDLAB_KUBERNETES": "real"})
    assert not check or done.returncode == 0, f"kindlab {' '.join(args)}: {done.returncode}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done


class Traces:
    """What a real lab made, seen from outside: its namespaces (nodes, pods) and the processes in them."""

    def __init__(self, name: str):
        from kindlab.backends.netns.names import NETNS_DIR, state_dir
        from kindlab.backends.netns.real import teardown

        self.name, self.state = name, state_dir(name)
        self.netns = [p for p in NETNS_DIR.glob(f"kindlab-{name}-*")]
        net = {teardown.ns_id(p) for p in self.netns}
        mnt = {teardown.ns_id(p) for p in (self.state / "ns").glob("*.mnt")}
        for pid in teardown.members(set(), mnt):
            net |= {teardown.ns_id(p) for p in teardown.pod_netns(pid)}
        self.net, self.mnt = {i for i in net if i}, {i for i in mnt if i}
        self.pids = teardown.members(self.net, self.mnt)
        self.cgroups = {g for g in teardown.cgroups_of(self.pids) if "k8s.io" in g.parts}
        self.ticks = teardown.now_ticks()

    def left(self) -> list[str]:
        """Everything of the lab still there (empty after a clean teardown)."""
        from kindlab.backends.netns.processes import alive
        from kindlab.backends.netns.real import teardown

        out = [f"process {p}" for p in self.pids if alive(p)]
        out += [f"process {p} (in the lab's namespaces)" for p in teardown.members(self.net, self.mnt, self.ticks)]
        out += [f"holder {p}" for p in teardown.holders(self.net | self.mnt, self.ticks)]
        out += [f"netns {p.name}" for p in self.netns if p.exists()]
        out += [f"cgroup {g}" for g in self.cgroups if g.exists()]
        mounts = Path("/proc/self/mountinfo").read_text()
        out += [f"mount {line.split()[4]}" for line in mounts.splitlines() if f"/labs/{self.name}/" in line]
        if self.state.exists():
            out.append(f"state {self.state}")
        return out


@pytest.fixture
def real_config(tmp_path) -> Path:
    from kindlab.walkthrough import private_config

    return private_config(tmp_path / "kind")


@pytest.fixture
def lab_name() -> str:
    name = f"r{secrets.token_hex(2)}"
    yield name
    cli("delete", "cluster", "--name", name, check=False)


def manifests(folder: Path, name: str) -> Path:
    """The seed's static pods, renamed for cluster `name` (their nodeNames are kind-worker...)."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted((ROOT / "manifests" / "static").glob("*.yaml")):
        (folder / src.name.replace("kind-", f"{name}-")).write_text(src.read_text().replace("kind-", f"{name}-"))
    return folder


def test_the_seed_walkthrough_on_real_kubernetes(real_config, lab_name, tmp_path, host_network):
    import kindlab
    from kindlab import heal, measured, scenario

    before = host_network()
    started = time.monotonic()
    out = cli("create", "cluster", "--name", lab_name, "--config", str(real_config)).stdout
    assert "the real kubelet v1.20.2 with containerd://1.7.24" in out
    print(f"create cluster (4 nodes, real): {time.monotonic() - started:.1f}s")

    nodes = cli("get", "nodes", "-o", "wide", "--name", lab_name).stdout.splitlines()
    assert len(nodes) == 5 and all(" Ready " in n and "v1.20.2" in n and "containerd://1.7.24" in n
                                   for n in nodes[1:]), nodes
    assert "control-plane,master" in nodes[1]

    kubeconfig = tmp_path / "kubeconfig"   # as `kind get kubeconfig`: a loopback port of the host
    kubeconfig.write_text(cli("get", "kubeconfig", "--name", lab_name).stdout)
    doc = yaml.safe_load(kubeconfig.read_text())
    server = doc["clusters"][0]["cluster"]["server"]
    assert server.startswith("https://127.0.0.1:") and doc["current-context"] == f"kind-{lab_name}@kind-{lab_name}"
    assert "insecure-skip-tls-verify" not in kubeconfig.read_text()
    if shutil.which("kubectl"):
        table = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes", "--no-headers"],
                               capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
        assert len(table) == 4 and all(line.split()[1] == "Ready" for line in table), table
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=str(kubeconfig))
    assert api.configuration.verify_ssl
    assert len(client.CoreV1Api(api).list_node().items) == 4
    api.close()

    applied = cli("apply", "-f", str(manifests(tmp_path / "static", lab_name)), "--name", lab_name).stdout
    assert applied.count("created") == 3, applied

    lab = kindlab.get(lab_name)
    assert lab.capabilities.kubelet == "real" and lab.capabilities.watches_pods
    worker, worker2, worker3 = (scenario.node(lab, r) for r in scenario.WORKERS)
    pod1, pod2, pod3 = (scenario.pod_name(lab, r) for r in scenario.WORKERS)
    for pod in (pod1, pod3):
        lab.wait_for_pod(pod, "Running", timeout=60)
    body = cli("curl", f"http://{lab.node_ip(worker)}/", "--name", lab_name).stdout
    assert f"-> My hostname is: {pod1}" in body

    # worker2: the real kubelet's words, then the heal within about a second of the fix
    scenario.wait_for_failure(lab, pod2, timeout=60)
    events = heal.pod_events(lab, pod2)
    failed = events[events["reason"] == "FailedCreatePodSandBox"]["message"].iloc[0]
    assert 'plugin type="portmap" failed (add): failed to find plugin "portmap" in path [/opt/cni/bin]' in failed
    assert failed.startswith("Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
                             "network for sandbox")
    # containerd 1.7: every attempt is a new sandbox with a FailedCreatePodSandBox of its own (the failed one is
    # stopped without a CNI DEL), each retry after a SandboxChanged, folded into that event's count
    assert scenario.wait_for_failure(lab, pod2, after=2, timeout=60) >= 3
    events = heal.pod_events(lab, pod2)
    failed_events = events[events["reason"] == "FailedCreatePodSandBox"]
    ids = failed_events["message"].str.extract(r'for sandbox "([0-9a-f]{64})"')[0]
    assert len(failed_events) >= 3 and ids.notna().all() and ids.is_unique, failed_events
    counts = events.groupby("reason")["count"].sum().to_dict()
    assert counts.get("SandboxChanged", 0) >= counts["FailedCreatePodSandBox"] - 1 >= 2, counts
    changed = events[events["reason"] == "SandboxChanged"]
    assert len(changed) == 1 and changed["message"].iloc[0] == "Pod sandbox changed, it will be killed and re-created."
    # containerd's own record: each failed RunPodSandbox
    recorded = lab.runtime_times(lab.pod(pod2))
    assert recorded is not None and recorded.running_at is None and len(recorded.attempts) >= 3
    gaps = [b - a for a, b in zip(recorded.attempts, recorded.attempts[1:], strict=False)]
    # upstream's clocks (kindlab.measured, not the model's): the first retry at PLEG's next relist, and every later
    # one too, a relist apart (measured 1.0-1.01 s): never the 10-15 s back-off
    low, high = measured.retry_gap_bounds()
    assert gaps[0] < measured.RELIST.high + 0.2, gaps
    assert all(low - 0.1 <= g <= high + 0.3 for g in gaps[1:]), gaps
    result = heal.measure(lab, pod2, lambda: scenario.fix_worker2(lab), timeout=60)
    print(f"worker2 healed: Running {result.running_after:.1f}s, curl {result.curl_after}s after the fix")
    # no later than the longest heal measured before (a fix just after a failure), with a loaded machine's second
    assert result.running_after <= measured.heal_bound() and result.curl_after is not None
    # containerd's task-start event: stamped by containerd, then pushed to kindlab by `ctr events`
    assert result.stamped_after is not None and 0 < result.stamped_after <= result.started_after

    # worker3: Running, its hostPort refused; the conflist alone does not help; a new pod does
    refused = cli("curl", f"http://{lab.node_ip(worker3)}/", "--timeout", "2", "--name", lab_name, check=False)
    assert refused.returncode != 0 and "Failed to connect" in refused.stderr
    scenario.fix_worker3(lab)
    time.sleep(2)
    assert cli("curl", f"http://{lab.node_ip(worker3)}/", "--timeout", "2", "--name", lab_name,
               check=False).returncode != 0
    scenario.fix_worker3(lab, recreate=True, timeout=60)
    from kindlab import walkthrough as wt  # curl until it answers: Running comes before the server listens
    assert f"-> My hostname is: {pod3}" in wt.wait_for_curl(lab, worker3, timeout=15).body

    traces = Traces(lab_name)
    assert traces.pids and traces.cgroups   # there were containers, in cgroups of their own
    started = time.monotonic()
    cli("delete", "cluster", "--name", lab_name)
    print(f"delete cluster: {time.monotonic() - started:.1f}s")
    assert traces.left() == []
    assert host_network() == before


def _kill(name: str, node: str, component: str) -> None:
    """SIGKILL one component of the lab, as the OOM killer would."""
    from kindlab.backends.netns.names import state_dir
    from kindlab.backends.netns.state.store import Store

    record = Store(state_dir(name)).read_lab()
    comp = next(c for c in record["real"]["components"] if c["node"] == node and c["name"] == component)
    os.kill(comp["pid"], signal.SIGKILL)


@pytest.mark.parametrize("component", ["kubelet", "containerd"])
def test_a_killed_component_leaves_nothing_after_delete(component, real_config, lab_name, tmp_path, host_network):
    before = host_network()
    cli("create", "cluster", "--name", lab_name, "--config", str(real_config))
    cli("apply", "-f", str(manifests(tmp_path / "static", lab_name) / f"echo-{lab_name}-worker.yaml"),
        "--name", lab_name)
    import kindlab

    lab = kindlab.get(lab_name)
    lab.wait_for_pod(f"echo-{lab_name}-worker", "Running", timeout=60)
    traces = Traces(lab_name)
    _kill(lab_name, f"{lab_name}-worker", component)
    time.sleep(1)
    cli("delete", "cluster", "--name", lab_name)
    assert traces.left() == []
    assert host_network() == before


def test_a_killed_kubelet_is_started_again_by_the_next_command(real_config, lab_name, tmp_path):
    cli("create", "cluster", "--name", lab_name, "--config", str(real_config))
    _kill(lab_name, f"{lab_name}-worker", "kubelet")
    time.sleep(0.5)
    nodes = cli("get", "nodes", "--name", lab_name).stdout   # as systemd restarts a kubelet
    assert f"{lab_name}-worker " in nodes
    import kindlab

    assert kindlab.get(lab_name).agent_running()


def test_a_killed_creator_leaves_a_lab_that_delete_all_removes(real_config, lab_name, host_network):
    """The kernel that ran `up` is killed while the components start: `delete clusters --all` takes it all."""
    from kindlab.backends.netns.names import state_dir

    before = host_network()
    proc = subprocess.Popen([*KINDLAB, "create", "cluster", "--name", lab_name, "--config", str(real_config)],
                            cwd=ROOT, env={**os.environ, "KINDLAB_KUBERNETES": "real"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((state_dir(lab_name) / "logs").glob("*kubelet.log")):
        time.sleep(0.1)
    time.sleep(1.5)          # the components run, the apiserver is starting
    traces = Traces(lab_name)
    proc.kill()
    proc.wait()
    assert traces.pids, "the components had not started"
    deleted = cli("delete", "clusters", "--all").stdout
    assert f"Deleted cluster '{lab_name}'." in deleted
    assert traces.left() == []
    assert host_network() == before
