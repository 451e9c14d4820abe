"""A node's filesystem is its own (issue 12): the machine's files below, the node's writes above.

What a node writes (lab.cp, lab.exec, the CNI provider, sandboxes and workloads) stays in the node,
except through the config's extraMounts; the machine's /etc, /root, /usr/bin and /opt are byte-identical,
with the same mtimes and ctimes, after a lab wrote into its nodes and was deleted; and nothing of the
lab is left: no mount, namespace, process or state.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

from conftest import curl_answer

from kindlab import scenario, walkthrough
from kindlab.backends.netns.names import state_dir
from kindlab.model.pods import is_ready

SMALL = 64 * 1024                                     # files up to this size are hashed, the rest stat'ed
TREES = ("/etc", "/root", "/usr/bin", "/opt")
# /root's toolchains (hundreds of thousands of files): their own entry is compared, not walked;
# the caches that the machine's other tools (pip, jupyter, npm) write while the test runs are left out.
NOT_WALKED = {"/root/.pyenv", "/root/.rustup", "/root/.m2", "/root/.cargo"}
VOLATILE = {"/root/.cache", "/root/.config", "/root/.ipython", "/root/.npm", "/root/.claude", "/root/.local"}


def entry(path: str) -> tuple:
    """(mode, size, mtime_ns, ctime_ns, sha256 of a small file or a symlink's target)."""
    st = os.lstat(path)
    digest = None
    if stat.S_ISREG(st.st_mode) and st.st_size <= SMALL:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        digest = os.readlink(path)
    return st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest


def manifest(trees: tuple[str, ...] = TREES) -> dict[str, tuple]:
    """Every path of `trees` and its entry."""
    out: dict[str, tuple] = {}
    for top in trees:
        for folder, dirs, files in os.walk(top):
            out[folder] = entry(folder)
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in VOLATILE]
            for name in dirs + files:
                path = os.path.join(folder, name)
                out[path] = entry(path)
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in NOT_WALKED]
    return out


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def traces(name: str) -> list[str]:
    """Whatever of lab `name` the machine still shows: mounts, network namespaces, processes, state."""
    def lines(*argv: str) -> list[str]:
        return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()
    found = [f"mount: {m}" for m in lines("findmnt", "-rn", "-o", "TARGET,SOURCE") if f"/labs/{name}/" in m
             or f"kindlab-{name}-" in m]
    found += [f"netns: {n}" for n in lines("ip", "netns", "list") if n.startswith(f"kindlab-{name}-")]
    found += [f"process: {p}" for p in lines("pgrep", "-af", "kindlab") if f"kindlab-lab={name}" in p]
    return found + ([f"state: {state_dir(name)}"] if state_dir(name).exists() else [])


def apply_static(lab) -> None:
    """The seed's three static pods, on this lab's workers; wait until worker's is Running."""
    walkthrough.apply_static(lab)
    lab.wait_for(lambda: scenario.pod_phase(lab, f"echo-{lab.name}-worker") == "Running", timeout=30,
                 interval=0.05, what="echo pod running")


def test_writes_into_nodes_leave_the_machine_unchanged(make_lab, tmp_path):
    before = manifest()
    lab = make_lab()
    worker, other = f"{lab.name}-worker", f"{lab.name}-worker3"
    src = tmp_path / "probe"
    src.write_text("written by cp\n")
    for dest in ("/etc/passwd", "/root/x", "/usr/bin/y"):
        lab.cp(str(src), f"{worker}:{dest}")
    lab.exec(worker, "echo x > /etc/foo; touch /root/bar /var/lib/baz /tmp/q /var/log/l /run/r /opt/o /etc/hosts")
    apply_static(lab)

    seen = lab.exec(worker, "cat /etc/passwd /root/x /usr/bin/y /etc/foo; "
                            "ls /root/bar /var/lib/baz /tmp/q /run/r /var/log/l /opt/o")
    assert seen.splitlines()[:4] == ["written by cp", "written by cp", "written by cp", "x"]
    out = tmp_path / "back"
    lab.cp(f"{worker}:/etc/passwd", str(out))
    assert out.read_text() == "written by cp\n"
    # another node sees the machine's files, not worker's
    assert lab.exec(other, "cat /etc/passwd") == Path("/etc/passwd").read_text()
    assert lab.exec(other, "for f in /etc/foo /root/x /root/bar /usr/bin/y /var/lib/baz /tmp/q /run/r /var/log/l "
                           "/opt/o; "
                           "do [ -e $f ] && echo $f; done; true") == ""
    assert not any(Path(p).exists() for p in ("/etc/foo", "/root/x", "/root/bar", "/usr/bin/y", "/var/lib/baz",
                                              "/var/log/l", "/opt/o"))
    # the node's mount namespace holds no copy of another namespace's file (which would keep it alive)
    init = lab.view(worker).init_pid
    assert " - nsfs " not in Path(f"/proc/{init}/mountinfo").read_text()

    lab.down()
    assert traces(lab.name) == []
    assert changes(before, manifest()) == []


def test_only_extra_mounts_reach_the_machine(make_lab):
    lab = make_lab()
    worker2 = f"{lab.name}-worker2"
    empty = Path(lab.topology.source).parent / "empty"
    lab.exec(worker2, "echo hi > /opt/cni/probe; echo no > /opt/not-mounted")
    assert (empty / "probe").read_text() == "hi\n"              # worker2's /opt/cni is kind/empty
    assert (empty / "bin" / "kindlab-cni").is_file()            # where the provider installed its plugin
    assert not Path("/opt/not-mounted").exists()
    assert lab.exec(worker2, "cat /opt/not-mounted") == "no\n"
    lab.down()
    assert not empty.exists()                                   # made by up (as Docker would), removed by down


def test_a_new_host_path_and_a_new_mount_point(make_lab, tmp_path):
    config = walkthrough.private_config(tmp_path / "kind")
    host = tmp_path / "new" / "deep"
    text = config.read_text().rstrip("\n") + f"\n  extraMounts:\n  - containerPath: /data/x\n    hostPath: {host}\n"
    config.write_text(text)                      # worker3 gets a folder that does not exist, on a new /data
    lab = make_lab(config)
    worker3 = f"{lab.name}-worker3"
    assert host.is_dir() and not Path("/data").exists()          # the mount point is made in the node only
    lab.exec(worker3, "echo hi > /data/x/f; echo no > /data/g")
    assert (host / "f").read_text() == "hi\n" and list(host.iterdir()) == [host / "f"]
    lab.down()
    assert not (tmp_path / "new").exists() and not Path("/data").exists()
    assert traces(lab.name) == []


def test_node_sandboxes_and_workloads_see_the_node_s_files(make_lab):
    lab = make_lab()
    worker = f"{lab.name}-worker"
    lab.exec(worker, "echo from-the-node > /etc/kindlab-probe")
    apply_static(lab)
    lab.wait_for(lambda: is_ready(scenario.find_pod(lab, f"echo-{lab.name}-worker")), timeout=30,
                 interval=0.05, what="echo pod ready")
    assert f"echo-{lab.name}-worker" in curl_answer(lab, f"http://{lab.view(worker).ip}/").body
    pause = next(int(p) for p in subprocess.run(["pgrep", "-f", f"kindlab-pause kindlab-lab={lab.name} "
                                                 f"pod=default/echo-{lab.name}-worker "],
                                                capture_output=True, text=True).stdout.split())
    assert Path(f"/proc/{pause}/root/etc/kindlab-probe").read_text() == "from-the-node\n"
    assert "Kubernetes-managed hosts file" in Path(f"/proc/{pause}/root/etc/hosts").read_text()
    assert not Path("/etc/kindlab-probe").exists()
    other = next(int(p) for p in subprocess.run(["pgrep", "-f", f"kindlab-pause kindlab-lab={lab.name} "
                                                 f"pod=default/echo-{lab.name}-worker3 "],
                                                capture_output=True, text=True).stdout.split())
    assert not Path(f"/proc/{other}/root/etc/kindlab-probe").exists()


def test_root_entries_and_own_folders(tmp_path):
    from kindlab import topology
    from kindlab.backends.netns import mounts, rootfs

    host = tmp_path / "host"
    for d in ("etc", "usr/bin", "proc", "run", "lost+found", "odd,name"):
        (host / d).mkdir(parents=True)
    (host / "bin").symlink_to("usr/bin")
    (host / ".dockerenv").touch()
    kinds = {e.name: (e.kind, e.target) for e in rootfs.entries(host)}
    assert kinds == {"etc": ("overlay", ""), "usr": ("overlay", ""), "proc": ("kernel", ""), "sys": ("kernel", ""),
                     "run": ("tmpfs", ""), "tmp": ("tmpfs", ""), "lost+found": ("empty", ""),
                     "odd,name": ("bind", ""), "bin": ("link", "usr/bin"), ".dockerenv": ("file", "")}
    dirs = mounts.NodeDirs(tmp_path / "nodes" / "n")
    topo = topology.load(walkthrough.private_config(tmp_path / "kind"), name="kind")
    plan, _ = mounts.plan(topo, topo.node("kind-worker3"), dirs, Path("/usr/lib/cni"),
                          own=("/var/lib/containerd", "/etc/cni/net.d"))
    own = [m for m in plan if m.origin == "own"]
    assert [(m.target, m.source) for m in own] == [("/var/lib/containerd", dirs.own("/var/lib/containerd"))]
    assert mounts.host_path(plan, "/var/lib/containerd/x", dirs) == dirs.own("/var/lib/containerd") / "x"
    assert mounts.host_path(plan, "/etc/foo", dirs) == dirs.rootfs.upper("etc") / "foo"
    assert not dirs.rootfs.root.is_relative_to(dirs.root)       # the node does not see its own layers


def test_the_labs_software_is_bound_where_the_nodes_own_tmp_or_run_would_hide_it(monkeypatch, tmp_path):
    """A checkout (and its .venv) under /tmp must be seen inside the nodes: kindlab-cni and the echo
    server run from it there. Elsewhere the node's overlays show it already."""
    from kindlab.backends.netns import mounts

    monkeypatch.setattr(mounts, "PROJECT_ROOT", Path("/tmp/ci-clone"))
    monkeypatch.setattr(mounts.sys, "prefix", "/tmp/ci-clone/.venv")
    monkeypatch.setattr(mounts.sys, "base_prefix", "/usr")
    assert mounts.software() == [Path("/tmp/ci-clone")]
    monkeypatch.setattr(mounts, "PROJECT_ROOT", Path("/work/main"))
    monkeypatch.setattr(mounts.sys, "prefix", "/run/venvs/kindlab")
    assert mounts.software() == [Path("/run/venvs/kindlab")]
    monkeypatch.setattr(mounts.sys, "prefix", "/work/main/.venv")
    assert mounts.software() == []
