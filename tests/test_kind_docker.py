"""The kind backend's Docker half against a real Docker Engine (Debian's docker.io), started by these tests.

The daemon runs in a network namespace and a mount namespace of its own (tests/kind_dockerd.py); its nodes are
made as kind makes them, from an image imported from a local rootfs (no registry). Everything goes through
kindlab's own code: KindCluster with a real docker.DockerClient, lifecycle's topology read-back, the scenario's
portmap install. Only the Kubernetes half is absent (DockerOnlyCluster). Skipped, with the reason, where
dockerd cannot start (not root, docker.io not installed).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import kind_dockerd as kd
import pytest

from kindlab import scenario
from kindlab import topology as topology_mod
from kindlab.backends.kind import lifecycle, state
from kindlab.backends.kind.cluster import KindCluster, is_docker_desktop
from kindlab.backends.kind.nodes import TIMEOUT_EXIT
from kindlab.errors import BackendUnavailable, ClusterError, ExecError, KindlabError, NotFound
from kindlab.walkthrough import private_config

CLUSTER = "kind"
START_ORDER = [3, 1, 2, 0]  # worker3, worker, worker2, control-plane: not the config's order
FAKE_CURL = b'#!/bin/sh\nprintf "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nfrom the node: %s" "$*"\n'


class DockerOnlyCluster(KindCluster):
    """A KindCluster whose Kubernetes half is absent: exec, cp, topology and capabilities only."""

    def node_list(self) -> list[dict[str, Any]]:
        raise BackendUnavailable("no Kubernetes API in the Docker-only tests")


@dataclass
class Nodes:
    """The session's daemon, its client, the cluster's topology and where its host folders are."""

    daemon: kd.Daemon
    client: docker.DockerClient
    topology: topology_mod.Topology
    folder: Path


# -- fixtures ----------------------------------------------------------------------------------------
def skip_unless_possible() -> None:
    """Skip, saying why, where dockerd cannot run (not root, a tool missing)."""
    reason = kd.missing()
    if reason:
        pytest.skip(f"a real dockerd cannot start here: {reason}")


def start_daemon() -> kd.Daemon:
    """A daemon in a short-named temporary folder (unix socket paths are short); skip when it cannot start."""
    skip_unless_possible()
    swept = kd.sweep()
    if swept:
        warnings.warn(f"removed what killed test sessions' dockerd left: {', '.join(swept)}", stacklevel=2)
    folder = Path(tempfile.mkdtemp(prefix="kdock-"))
    try:
        return kd.start(folder)
    except kd.Unavailable as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"a real dockerd cannot start here: {exc}")


@pytest.fixture(scope="session")
def dockerd() -> Iterator[kd.Daemon]:
    """The session's dockerd; stopped, with every process, namespace, cgroup and folder gone, at the end."""
    daemon = start_daemon()
    try:
        yield daemon
    finally:
        left = kd.stop(daemon)
        assert not left, f"the test dockerd left behind: {left}"


@pytest.fixture(scope="session")
def nodes(dockerd: kd.Daemon, tmp_path_factory: pytest.TempPathFactory) -> Nodes:
    """kind's four nodes of a private copy of kind/config, plus containers kindlab must not take for nodes."""
    folder = tmp_path_factory.mktemp("kind-docker")
    topology = topology_mod.load(private_config(folder), name=CLUSTER)
    lifecycle.make_missing_mount_dirs(topology)  # kindlab's own: the empty folder over worker2's /opt/cni
    client = dockerd.client()
    kd.import_node_image(client)
    kd.kind_network(client)
    kd.run_nodes(client, topology, folder, START_ORDER)
    decoys = {"kind-external-load-balancer": {"io.x-k8s.kind.cluster": CLUSTER,
                                              "io.x-k8s.kind.role": "external-load-balancer"},
              "other-control-plane": {"io.x-k8s.kind.cluster": "other", "io.x-k8s.kind.role": "control-plane"},
              "unlabelled": {}}
    for name, labels in decoys.items():
        client.containers.run(kd.NODE_IMAGE, ["sleep", "86400"], name=name, labels=labels, detach=True,
                              network="kind")
    return Nodes(dockerd, client, topology, folder)


@pytest.fixture
def lab(nodes: Nodes) -> DockerOnlyCluster:
    """kindlab's KindCluster on the real daemon."""
    return DockerOnlyCluster(CLUSTER, nodes.topology, docker_client=nodes.client)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mode(lab: KindCluster, node: str, path: str) -> str:
    """The octal mode of a path in a node."""
    return lab.exec(node, ["stat", "-c", "%a", path]).strip()


# -- the daemon itself -------------------------------------------------------------------------------
def test_daemon_leaves_the_host_network_and_machine_as_they_were(host_network: Callable[[], dict[str, str]],
                                                                 tmp_path: Path):
    skip_unless_possible()
    before = host_network()
    daemon = start_daemon()
    try:
        client = daemon.client()
        kd.import_node_image(client)
        kd.kind_network(client)
        client.containers.run(kd.NODE_IMAGE, ["sleep", "60"], name="probe", detach=True, network="kind")
        client.containers.create(kd.NODE_IMAGE, ["true"], name="gone-control-plane")  # made, never started
        gone = DockerOnlyCluster("gone", topology_mod.load(private_config(tmp_path), name="gone"), docker_client=client)
        with pytest.raises(ClusterError, match="Docker refused: .*is not running"):
            gone.exec("gone-control-plane", "true")
        inside = kd.netns_exec(daemon.netns, "ip", "-br", "link") + kd.netns_exec(daemon.netns, "iptables-save")
        assert "br-" in inside and "DOCKER" in inside, inside  # its bridge and rules exist, in its namespace
        assert kd.netns_pids(daemon) and kd.cgroup_pids(daemon.netns)
    finally:
        left = kd.stop(daemon)
    assert left == []
    assert host_network() == before
    assert not kd.netns_pids(daemon) and not Path("/etc/docker/key.json").exists()
    stopped = DockerOnlyCluster("gone", gone.topology,
                                docker_client=docker.DockerClient(base_url=daemon.url, version="1.41"))
    with pytest.raises(BackendUnavailable, match="Docker"):
        stopped.exec("gone-control-plane", "true")


ORPHAN = """
import pathlib, sys, tempfile
import kind_dockerd as kd
daemon = kd.start(pathlib.Path(tempfile.mkdtemp(prefix="kdock-")))
client = daemon.client()
kd.import_node_image(client)
client.containers.run(kd.NODE_IMAGE, ["sleep", "600"], name="orphan", detach=True)
print(daemon.folder, daemon.netns, daemon.netns_inode, daemon.pid())
"""  # a test session that dies with its dockerd and a container running: its teardown never runs


def test_a_dead_sessions_daemon_is_swept_and_a_live_one_kept(dockerd: kd.Daemon):
    out = subprocess.run([sys.executable, "-c", ORPHAN], cwd=Path(__file__).parent, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    folder, netns, inode, pid = Path(out[0]), out[1], int(out[2]), int(out[3])
    assert Path(f"/proc/{pid}").exists() and kd.cgroup_pids(netns), "the orphaned dockerd and container run"
    removed = kd.sweep(min_age=0)
    assert f"network namespace {netns} (of dead test session" in " ".join(removed), removed
    assert not Path(f"/proc/{pid}").exists() and not kd.pids_in_netns(inode) and not kd.cgroup_pids(netns)
    assert not Path(f"/run/netns/{netns}").exists() and not kd.cgroup_dirs(netns) and not folder.exists()
    assert not kd.host_mounts_under(folder)
    assert dockerd.client().ping() and dockerd.folder.exists(), "the live session's daemon is left alone"
    assert Path(f"/run/netns/{dockerd.netns}").exists()


# -- finding nodes: kind's labels, container inspection ------------------------------------------------
def labelled(client: docker.DockerClient, cluster: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{lifecycle.KIND_CLUSTER_LABEL}={cluster}"})


def test_nodes_are_found_by_kinds_labels_in_kinds_order(nodes: Nodes):
    found = labelled(nodes.client, CLUSTER)
    assert {c.name for c in found} == {n.name for n in nodes.topology.nodes} | {"kind-external-load-balancer"}
    read = lifecycle.topology_from_containers(CLUSTER, found)
    assert [(n.name, n.role, n.index) for n in read.nodes] == \
        [(n.name, n.role, n.index) for n in nodes.topology.nodes]


def test_topology_for_reads_the_containers_when_there_is_no_state(nodes: Nodes, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", nodes.daemon.url)
    monkeypatch.setenv("KINDLAB_STATE_DIR", str(tmp_path))
    read = lifecycle.topology_for(CLUSTER)
    assert [n.name for n in read.nodes] == [n.name for n in nodes.topology.nodes]
    assert read.nodes == tuple(lifecycle.topology_from_containers(CLUSTER, labelled(nodes.client, CLUSTER)).nodes)


def test_mounts_read_back_are_the_configs_extra_mounts_in_order(nodes: Nodes):
    for _ in range(5):  # Docker lists a container's mounts from a map: its order changes from call to call
        read = lifecycle.topology_from_containers(CLUSTER, labelled(nodes.client, CLUSTER))
        for want, got in zip(nodes.topology.nodes, read.nodes, strict=True):
            assert got.mounts == want.mounts, got.name
    worker2 = read.node("kind-worker2")
    assert [m.container_path for m in worker2.mounts] == ["/opt/cni", "/etc/cni/net.d/000-cilium-portmap.conflist"]
    assert [m.read_only for m in worker2.mounts] == [False, True]
    last = nodes.client.containers.get("kind-worker3").attrs["Mounts"]
    assert {"/lib/modules", "/dev/mapper", "/var"} <= {m["Destination"] for m in last}  # filtered above
    assert read.node("kind-worker3").mounts == ()


# -- exec ------------------------------------------------------------------------------------------------
def test_exec_returns_stdout_and_reports_exit_codes(lab: DockerOnlyCluster):
    assert lab.exec("kind-worker", "echo out; echo err >&2") == "out\n"
    assert lab.exec("kind-worker", ["hostname"]) == "kind-worker\n"
    result = lab.exec_result("kind-worker", "echo partial; echo why >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "partial\n", "why\n")
    assert lab.exec("kind-worker", "echo partial; exit 3", check=False) == "partial\n"
    with pytest.raises(ExecError, match="exited 3: why") as info:
        lab.exec("kind-worker", "echo why >&2; exit 3")
    assert (info.value.returncode, info.value.stderr) == (3, "why\n")


def test_exec_feeds_stdin_and_leaves_nothing_staged(lab: DockerOnlyCluster):
    assert lab.exec("kind-worker2", "cat", input="hello\nworld\n") == "hello\nworld\n"
    assert lab.exec("kind-worker2", ["wc", "-c"], input=bytes(range(256)) * 4).strip() == "1024"
    assert lab.exec("kind-worker2", "read a; echo got $a; exit 4", input="x\n", check=False) == "got x\n"
    assert lab.exec("kind-worker2", "ls -a /tmp /var/tmp | grep -c kindlab-stdin", check=False).strip() == "0"


def test_exec_times_out_with_coreutils_exit_code(lab: DockerOnlyCluster):
    with pytest.raises(ExecError, match="timed out after 1s") as info:
        lab.exec("kind-worker3", "sleep 30", timeout=1)
    assert info.value.returncode == TIMEOUT_EXIT
    assert lab.exec_result("kind-worker3", ["sleep", "5"], timeout=0.5).returncode == TIMEOUT_EXIT
    assert "sleep 30" not in lab.exec("kind-worker3", "ps -o args")


def test_missing_nodes_and_paths_are_kindlab_errors(lab: DockerOnlyCluster, nodes: Nodes):
    with pytest.raises(NotFound, match="kind-nope"):
        lab.exec("kind-nope", "true")
    with pytest.raises(NotFound, match="no such node container or path"):
        lab.cp("kind-worker:/no/such/file", str(nodes.folder))


# -- cp, both directions -----------------------------------------------------------------------------------
def test_cp_a_binary_keeps_its_bytes_and_mode(lab: DockerOnlyCluster, tmp_path: Path):
    source = tmp_path / "busybox"
    shutil.copy(shutil.which("busybox"), source)
    source.chmod(0o751)
    lab.cp(str(source), "kind-worker:/usr/local/bin/")
    assert mode(lab, "kind-worker", "/usr/local/bin/busybox") == "751"
    assert lab.exec("kind-worker", ["/usr/local/bin/busybox", "echo", "runs"]) == "runs\n"
    assert lab.exec("kind-worker", ["sha256sum", "/usr/local/bin/busybox"]).split()[0] == sha256(source.read_bytes())
    lab.cp("kind-worker:/opt/cni/bin/portmap", str(tmp_path / "portmap"))
    back = tmp_path / "portmap"
    assert oct(back.stat().st_mode & 0o777) == "0o755" and b"stand-in: portmap" in back.read_bytes()


def test_cp_a_folder_both_ways(lab: DockerOnlyCluster, tmp_path: Path):
    tree = tmp_path / "conf"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.conf").write_text("a\n")
    (tree / "sub" / "b.sh").write_text("#!/bin/sh\n")
    (tree / "sub" / "b.sh").chmod(0o700)
    lab.cp(str(tree), "kind-control-plane:/etc/cni")  # an existing folder: lands inside it
    lab.cp(str(tree), "kind-control-plane:/root/copied")  # a new path: the folder renamed
    listing = lab.exec("kind-control-plane", "cd /etc/cni/conf && find . | sort; cd /root/copied && find . | sort")
    assert listing.split() == [".", "./a.conf", "./sub", "./sub/b.sh"] * 2
    assert mode(lab, "kind-control-plane", "/root/copied/sub/b.sh") == "700"
    lab.cp("kind-worker:/etc/cni/net.d", str(tmp_path))  # with the conflist bind-mounted into it
    conflist = tmp_path / "net.d" / "000-cilium-portmap.conflist"
    assert conflist.read_text() == (nodes_folder(lab) / "cni" / "000-cilium-portmap.conflist").read_text()
    lab.cp("kind-control-plane:/root/copied", str(tmp_path / "again"))
    assert (tmp_path / "again" / "sub" / "b.sh").read_text() == "#!/bin/sh\n"


def nodes_folder(lab: KindCluster) -> Path:
    """The folder of the lab's private config (its kind/ copy)."""
    assert lab.topology.source is not None
    return Path(lab.topology.source).parent


def test_cp_onto_an_existing_file_replaces_it(lab: DockerOnlyCluster, tmp_path: Path):
    lab.exec("kind-worker3", "echo old > /etc/cni/net.d/05-x.conf")
    new = tmp_path / "new.conf"
    new.write_text("new\n")
    lab.cp(str(new), "kind-worker3:/etc/cni/net.d/05-x.conf")
    assert lab.exec("kind-worker3", "ls /etc/cni/net.d; cat /etc/cni/net.d/05-x.conf").split() == \
        ["05-x.conf", "new"]
    host = tmp_path / "host.conf"
    host.write_text("stale\n")
    lab.cp("kind-worker3:/etc/cni/net.d/05-x.conf", str(host))
    assert host.read_text() == "new\n"


def test_cp_onto_a_read_only_mount_is_refused(lab: DockerOnlyCluster, tmp_path: Path):
    other = tmp_path / "000-cilium-portmap.conflist"
    other.write_text("{}")
    with pytest.raises(ClusterError, match="Docker refused"):
        lab.cp(str(other), "kind-worker:/etc/cni/net.d/000-cilium-portmap.conflist")


def test_cp_under_a_tmpfs_says_docker_cannot_see_it(lab: DockerOnlyCluster, tmp_path: Path):
    note = tmp_path / "note"
    note.write_text("x")
    with pytest.raises(KindlabError, match="tmpfs"):
        lab.cp(str(note), "kind-worker:/tmp/")
    lab.exec("kind-worker", "echo in-tmpfs > /run/x")
    with pytest.raises(KindlabError, match="tmpfs"):
        lab.cp("kind-worker:/run/x", str(tmp_path))


# -- the scenario's portmap, through lab.cp and lab.exec ---------------------------------------------------
def test_fix_and_break_portmap_in_a_root_owned_mounted_folder(lab: DockerOnlyCluster, nodes: Nodes):
    worker2 = "kind-worker2"
    host_bin = scenario.cni_bin_folder(lab, worker2)
    lab.exec(worker2, "mkdir -p /opt/cni/bin && chmod 0755 /opt/cni/bin")  # as Cilium's hostPath does, as root
    assert host_bin.is_dir() and host_bin.stat().st_uid == 0 and not scenario.has_portmap(lab, worker2)
    as_runner = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "touch", str(host_bin / "x")]
    assert subprocess.run(as_runner, capture_output=True).returncode != 0  # a non-root runner cannot write there
    assert scenario.fix_portmap(lab, worker2) == scenario.PORTMAP
    assert scenario.has_portmap(lab, worker2)
    assert (host_bin / "portmap").read_bytes() == lab.exec("kind-control-plane", "cat /opt/cni/bin/portmap").encode()
    assert oct((host_bin / "portmap").stat().st_mode & 0o777) == "0o755"
    assert sorted(p.name for p in host_bin.iterdir()) == ["portmap"]  # the staged copy was renamed into place
    scenario.break_portmap(lab, worker2)
    assert not scenario.has_portmap(lab, worker2) and not (host_bin / "portmap").exists()


def test_delete_empties_a_mounted_folder_from_inside_its_node(lab: DockerOnlyCluster, nodes: Nodes, monkeypatch):
    lab.exec("kind-worker2", "mkdir -p /opt/cni/bin/sub && echo x > /opt/cni/bin/sub/f && chmod 0700 /opt/cni/bin")
    monkeypatch.setenv("DOCKER_HOST", nodes.daemon.url)
    state._empty_from_node("kind-worker2", "/opt/cni")  # what `delete` does before kindlab removes the folder
    assert list((nodes.folder / "empty").iterdir()) == []


def test_install_portmap_renames_over_the_old_binary(lab: DockerOnlyCluster, tmp_path: Path):
    node = "kind-worker3"
    before = lab.exec(node, "stat -c %i /opt/cni/bin/portmap").strip()
    reader = lab.exec(node, "sleep 30 < /opt/cni/bin/portmap > /dev/null 2>&1 & echo $!").strip()
    fresh = tmp_path / "portmap"
    fresh.write_bytes(b"#!/bin/sh\necho fresh\n")
    fresh.chmod(0o644)
    assert scenario.install_portmap(lab, node, str(fresh)) == scenario.PORTMAP
    assert lab.exec(node, "stat -c %i /opt/cni/bin/portmap").strip() != before
    assert lab.exec(node, ["/opt/cni/bin/portmap"]) == "fresh\n" and mode(lab, node, scenario.PORTMAP) == "755"
    assert b"stand-in: portmap" in lab.exec(node, f"cat /proc/{reader}/fd/0").encode()  # the old file, intact
    lab.exec(node, f"kill {reader}")
    assert lab.exec(node, "ls -a /opt/cni/bin").split() == [".", "..", "host-local", "loopback", "portmap", "ptp"]


def test_capabilities_without_the_kubernetes_half(lab: DockerOnlyCluster):
    caps = lab.capabilities
    assert (caps.backend, caps.portmap_source, caps.kubernetes_version) == ("kind", None, "unknown")
    assert "bridge" not in caps.node_plugins


# -- curl: from the host, or from a node where the host cannot route ----------------------------------------
def test_this_daemon_is_not_docker_desktop_nor_rootless(nodes: Nodes):
    info = nodes.client.info()
    assert info["OperatingSystem"] and info["SecurityOptions"], info
    assert all(o.startswith("name=") for o in info["SecurityOptions"])
    assert not is_docker_desktop(info)
    rootless = dict(info, SecurityOptions=[*info["SecurityOptions"], "name=rootless"])
    assert is_docker_desktop(rootless)
    assert is_docker_desktop(dict(info, OperatingSystem="Docker Desktop"))
    assert is_docker_desktop(info, platform="darwin")


def test_curl_goes_from_the_host_on_this_daemon(lab: DockerOnlyCluster):
    with pytest.raises(KindlabError, match="Connection refused"):
        lab.curl("http://127.0.0.1:9/")
    assert lab.curl_from_node is False


def test_curl_goes_from_a_node_on_rootless_docker(nodes: Nodes):
    class Rootless(docker.DockerClient):
        def info(self, *args, **kwargs):
            real = super().info(*args, **kwargs)
            return dict(real, SecurityOptions=[*real["SecurityOptions"], "name=rootless"])

    lab = DockerOnlyCluster(CLUSTER, nodes.topology, docker_client=Rootless(base_url=nodes.daemon.url))
    lab.cp(str(fake_curl(nodes.folder)), "kind-control-plane:/usr/local/bin/curl")
    response = lab.curl("http://172.18.0.9/", timeout=2)
    assert lab.curl_from_node is True
    assert (response.status, response.headers["Content-Type"]) == (200, "text/plain")
    assert response.body == "from the node: -s -S -i --max-time 2 http://172.18.0.9/"


def fake_curl(folder: Path) -> Path:
    """A stand-in curl for the node image (which has none): answers 200 with its arguments."""
    path = folder / "curl"
    path.write_bytes(FAKE_CURL)
    path.chmod(0o755)
    return path


def test_privileged_nodes_get_what_the_machine_can_give(nodes: Nodes):
    """kind's nodes are privileged: the engine's runtime leaves out of their spec, and of `docker exec
    --privileged`, only the capabilities this machine's bounding set lacks."""
    host = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("CapBnd:")), 16)
    out = nodes.client.containers.run(kd.NODE_IMAGE, ["grep", "CapBnd", "/proc/self/status"], privileged=True,
                                      remove=True, cgroupns="private").decode()
    mask = int(out.split()[1], 16)
    assert mask & ~host == 0, f"{mask:x} has what the machine lacks ({host:x})"
    assert mask >> 21 & 1 and mask >> 12 & 1, "CAP_SYS_ADMIN and CAP_NET_ADMIN, as a privileged node needs"
    node = nodes.client.containers.run(kd.NODE_IMAGE, ["sleep", "60"], privileged=True, detach=True,
                                       cgroupns="private", name="privileged-probe")
    try:
        code, out = node.exec_run(["grep", "CapEff", "/proc/self/status"], privileged=True)
        assert code == 0 and int(out.split()[1], 16) == mask
    finally:
        node.remove(force=True)
