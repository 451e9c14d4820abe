"""Cluster names as kind takes them, state files no name can reach, idempotent delete, and a sweep that
kills only what the lab recorded (issue 12, "Names")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT, small_config

import kindlab
from kindlab import topology
from kindlab.backends.netns import lifecycle, names, processes
from kindlab.errors import ConfigError

GOOD = ("kind", "a", "a-b", "kind2", "x" * topology.MAX_CLUSTER_NAME)
BAD = ("lifecycle.lock", "hostpaths.json", "a.b", "Kind", "a_b", "-a", "a-", "", "x" * (topology.MAX_CLUSTER_NAME + 1),
       "../etc", "a/b", 5, None)


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kindlab.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, **kwargs)


@pytest.mark.parametrize("name", GOOD)
def test_good_names_and_their_node_names_are_dns_labels(name):
    assert topology.check_cluster_name(name) == name
    longest = topology.node_names(name, ["control-plane"] * 999)[-1]
    assert len(longest) <= 63 and topology.DNS_LABEL.fullmatch(longest)


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_refused_by_up_get_delete(name, tmp_path):
    with pytest.raises(ConfigError, match="not a valid cluster name"):
        topology.check_cluster_name(name)
    with pytest.raises(ConfigError, match="not a valid cluster name"):
        kindlab.up(small_config(tmp_path), name=name, backend="netns", progress=False)
    for backend in ("netns", "kind"):
        with pytest.raises(ConfigError, match="not a valid cluster name"):
            kindlab.get(name, backend=backend)
        with pytest.raises(ConfigError, match="not a valid cluster name"):
            kindlab.delete(name, backend=backend)


@pytest.mark.parametrize("verb", [("delete", "cluster"), ("get", "nodes"), ("create", "cluster")])
def test_the_cli_refuses_a_bad_name_in_one_line(verb):
    result = cli(*verb, "--name", "lifecycle.lock", "--backend", "netns")
    assert result.returncode == 1 and "Deleted" not in result.stdout
    assert result.stderr.startswith("kindlab: error: 'lifecycle.lock' is not a valid cluster name")
    assert len(result.stderr.splitlines()) == 1


def test_no_cluster_name_reaches_the_machine_files():
    machine = {lifecycle.LOCK, names.STATE_ROOT / "hostpaths.json", names.STATE_ROOT / "hostpaths.lock",
               names.NODE_LINK, names.LABS_DIR}
    for name in (*GOOD, "node", "labs", "ns"):
        folder = names.state_dir(name)
        assert folder.parent == names.LABS_DIR
        assert not any(folder == m or m.is_relative_to(folder) for m in machine)


@pytest.mark.netns
def test_deleting_a_missing_cluster_is_no_error_and_says_so(netns_ready):
    result = cli("delete", "cluster", "--name", "nosuchlab", "--backend", "netns")
    assert result.returncode == 0 and "Deleted" not in result.stdout + result.stderr
    assert "No cluster 'nosuchlab' to delete." in result.stderr


@pytest.mark.netns
def test_the_sweep_spares_a_process_that_only_carries_the_marker(make_lab, tmp_path):
    lab = make_lab(small_config(tmp_path))
    title = f"kindlab-pause {names.marker(lab.name)} pod=default/decoy sandbox=000000000000"
    decoy = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 60'], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while names.marker(lab.name) not in " ".join(processes.cmdline(decoy.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processes.marked().get(decoy.pid) == lab.name       # it looks like one of the lab's
        lab.ensure_agent()
        assert kindlab.delete(lab.name, backend="netns") is True
        assert decoy.poll() is None, "delete cluster killed a process it never started"
        assert not processes.recorded(lab.name)
    finally:
        decoy.send_signal(signal.SIGKILL)
        decoy.wait()


ISOLATED = textwrap.dedent("""\
    set -e
    awk '{{print $5}}' /proc/self/mountinfo | grep -E '^/run/(netns|kindlab)/' | sort -r | xargs -r -n1 umount -l
    mount -t tmpfs kindlab-test /run                 # this mount namespace's own /run: no other lab is seen
    kindlab() {{ "{python}" -m kindlab.cli "$@" --backend netns; }}
    trap 'kindlab delete clusters --all >/dev/null 2>&1 || true' EXIT
    kindlab delete clusters --all
    echo "empty: [$(ls -A /run)]"
    kindlab create cluster --name node --config "{config}" >/dev/null
    echo "clusters: [$(kindlab get clusters)]"
    kindlab delete clusters --all
    echo "after: [$(ls -A /run | grep kindlab || true)] netns: [$(ip netns)]"
""")


@pytest.mark.netns
def test_delete_all_removes_a_lab_named_node_and_leaves_no_lock(netns_ready, tmp_path):
    """In a mount namespace of its own with an empty /run, so that `--all` sees no one else's lab."""
    # One node: in a nested mount namespace, parallel `unshare --mount=FILE` sometimes fails with EINVAL.
    config = tmp_path / "one-node"
    config.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n")
    script = ISOLATED.format(python=sys.executable, config=config)
    for _ in range(3):  # the kernel now and then refuses the node's `unshare --mount=FILE` there (EINVAL)
        result = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
        if not ("unshare: mount" in result.stderr and "Invalid argument" in result.stderr):
            break
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "empty: []" in lines                                  # nothing to delete leaves nothing, not even a lock
    assert "clusters: [node]" in lines
    assert "Deleted cluster 'node'." in lines
    assert "after: [] netns: []" in lines
    assert not [p for p, owner in processes.marked().items() if owner == "node"]


def test_the_ledger_names_only_live_processes_with_their_start_time(tmp_path, monkeypatch):
    monkeypatch.setattr(names, "LABS_DIR", tmp_path)
    (tmp_path / "x").mkdir()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        processes.keep(proc, "x")
        with open(names.ledger("x"), "a") as f:
            f.write(f"{os.getpid()} 1\n{proc.pid} 1\n999999999 5\nnot a line\n")   # stale and foreign entries
        assert processes.recorded("x") == [proc.pid]
    finally:
        processes.kill([proc.pid])
    assert processes.recorded("x") == []
