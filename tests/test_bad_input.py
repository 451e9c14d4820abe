"""Bad input gets one clear KindlabError, never a traceback, and nothing is silently wrong (issue 12):
configs and manifests of the wrong type or encoding, long names, bad URLs, addresses outside the lab,
cp paths that would leave the node, system folders as extraMounts, a closed stdout, half-made labs."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import KIND_CONFIG, ROOT, small_config

from kindlab import objects, topology
from kindlab.backends.kind import curl as kind_curl
from kindlab.backends.netns import curl as netns_curl
from kindlab.backends.netns import files, names
from kindlab.backends.netns.state.store import Store
from kindlab.errors import ConfigError, CurlError, ExecError, ManifestError

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo", "namespace": "default", "labels": {"a": "b"}},
       "spec": {"nodeName": "kind-worker", "containers": [{"name": "echo", "image": "inanimate/echo-server",
                                                            "env": [{"name": "PORT", "value": "8080"}],
                                                            "ports": [{"containerPort": 8080, "hostPort": 80,
                                                                       "hostIP": "0.0.0.0", "protocol": "TCP"}]}]}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD["spec"]}}}
LIST = {"apiVersion": "v1", "kind": "List", "items": [POD]}
BAD_VALUES = (5, -1, True, [1, 2], {"x": 1}, "x", "", None, "\x00")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kindlab.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def one_line_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode not in (0, 2), result
    assert "Traceback" not in result.stderr and result.stderr.startswith("kindlab: error: ")
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr


def mutations(doc: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every place in `doc` (a path of keys and indexes)."""
    out = [(path, doc)]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += mutations(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += mutations(value, (*path, i))
    return out


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    new = copy.deepcopy(doc)
    if not path:
        return value
    target = new
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return new


# -- configs -------------------------------------------------------------------------------------
def still_valid(path: tuple, value: Any, valid: dict[Any, list[Any]]) -> bool:
    """True when `valid` (by the whole path, else by the field's name) lists `value`, of the same type."""
    allowed = valid.get(path, valid.get(path[-1] if path else None, []))
    return any(type(value) is type(v) and value == v for v in allowed)


# What kind itself accepts of the sweep's values (anything else must be refused): the optional sections left out
# (null), true where the field is a flag, and a missing hostPath folder where Docker makes one (not read-only).
VALID_CONFIG = {"networking": [None], "nodes": [None], "extraMounts": [None], "kubeadmConfigPatches": [None],
                "kubeProxyMode": [None], "disableDefaultCNI": [True], "readOnly": [True],
                ("nodes", 2, "extraMounts", 0, "hostPath"): ["x"]}


def test_every_wrongly_typed_config_field_is_a_config_error(tmp_path):
    doc = yaml.safe_load(KIND_CONFIG.read_text())
    doc["networking"]["kubeProxyMode"] = "iptables"
    doc["kubeadmConfigPatches"] = ["networking:\n  podSubnet: 10.0.0.0/16\n"]
    refused = 0
    for path, _ in mutations(doc):
        for value in BAD_VALUES:
            bad = replaced(doc, path, value)
            if still_valid(path, value, VALID_CONFIG):
                topology.from_dict(bad, name="kind", source=KIND_CONFIG)
                continue
            with pytest.raises(ConfigError):
                topology.from_dict(bad, name="kind", source=KIND_CONFIG)
                pytest.fail(f"{path} = {value!r} was accepted")
            refused += 1
    assert refused > 300


@pytest.mark.parametrize("text, words", [
    ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking: [1, 2]\n", "networking: must be a mapping"),
    ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nkubeadmConfigPatches: 5\n", "must be a list"),
])
def test_config_sections_of_the_wrong_type(tmp_path, text, words):
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        topology.load(path)


@pytest.mark.parametrize("data", [b"\xff\xfe\x00\x01binary\x80", bytes(range(256))])
def test_configs_and_manifests_that_are_not_utf8(tmp_path, data):
    path = tmp_path / "blob.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match="not UTF-8"):
        topology.load(path)
    with pytest.raises(ManifestError, match="not UTF-8"):
        objects.load(path)
    one_line_error(cli("create", "cluster", "--name", "x", "--config", str(path), "--backend", "netns"), "not UTF-8")


SYSTEM = ("/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/proc", "/sys", "/dev", "/var",
          "/root", "/run", "/etc/", "/usr/../etc", "//")


def mount_config(folder: Path, host_path: str, container: str = "/opt/cni") -> Path:
    path = folder / "config"
    path.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n"
                    f"  extraMounts:\n  - containerPath: {container}\n    hostPath: {host_path}\n")
    return path


@pytest.mark.parametrize("host_path", SYSTEM)
def test_system_folders_are_refused_as_extra_mounts(tmp_path, host_path):
    with pytest.raises(ConfigError, match=r"extraMounts\[0\].hostPath: .* the machine's own files"):
        topology.load(mount_config(tmp_path, host_path))


def test_system_folders_are_refused_through_a_symlink_or_dot_dots(tmp_path):
    (tmp_path / "etc-link").symlink_to("/etc")
    with pytest.raises(ConfigError, match="hostPath"):
        topology.load(mount_config(tmp_path, "etc-link", "/etc/cni/net.d"))
    with pytest.raises(ConfigError, match="hostPath"):
        topology.load(mount_config(tmp_path, "../" * 30))
    (tmp_path / "mine").mkdir()
    assert topology.load(mount_config(tmp_path, "mine")).nodes[0].mounts[0].host_path == tmp_path / "mine"
    assert topology.load(mount_config(tmp_path, "/usr/lib/cni")).nodes[0].mounts[0].host_path == Path("/usr/lib/cni")


# -- manifests --------------------------------------------------------------------------------------
# What the API server accepts of the sweep's values: optional fields left out (null, and "" where it means
# unset), valid names and label values ('x', ''), and small numbers where a port or a count is asked for.
VALID_MANIFEST = {"labels": [None], "env": [None], "ports": [None], "items": [None], "namespace": [None, "", "x"],
                  "nodeName": [None, "", "x"], "hostIP": [None, ""], "hostPort": [None, 5], "containerPort": [5],
                  "replicas": [5], "name": ["x"], "image": ["x"], "value": [None, "", "x"], "a": ["", "x"],
                  ("spec", "template", "metadata", "labels"): []}   # the selector's labels must stay


@pytest.mark.parametrize("doc", [POD, DEPLOYMENT, LIST], ids=["pod", "deployment", "list"])
def test_every_wrongly_typed_manifest_field_is_a_manifest_error(doc):
    refused = 0
    for path, _ in mutations(doc):
        for value in BAD_VALUES:
            bad = replaced(doc, path, value)
            if still_valid(path, value, VALID_MANIFEST):
                objects.from_dict(bad)
                continue
            with pytest.raises(ManifestError):
                objects.from_dict(bad)
                pytest.fail(f"{path} = {value!r} was accepted")
            refused += 1
    assert refused > 100


@pytest.mark.parametrize("path, value, words", [
    (("items",), 5, "items: must be a list"),
    (("items", 0, "spec", "containers", 0, "env"), 5, "env: must be a list"),
    (("items", 0, "spec", "containers", 0, "ports"), 5, "ports: must be a list"),
    (("items", 0, "spec", "containers", 0, "ports", 0, "hostIP"), 5, "hostIP: must be an IP address"),
    (("items", 0, "spec", "containers", 0, "ports", 0, "hostIP"), "local", "hostIP: must be an IP address"),
    (("items", 0, "metadata", "namespace"), "n" * 300, "metadata.namespace"),
    (("items", 0, "metadata", "name"), "p" * 254, "metadata.name"),
])
def test_the_fields_of_issue_12(path, value, words):
    with pytest.raises(ManifestError, match=words):
        objects.from_dict(replaced(LIST, path, value))


@pytest.mark.parametrize("length", [230, 250, 253])
def test_long_pod_names_are_valid_and_fit_the_store(tmp_path, length):
    name = "p" * length
    (spec,) = objects.from_dict(replaced(POD, ("metadata", "name"), name))
    key = names.pod_key("n" * 63, spec.name)
    assert len(key) <= names.MAX_POD_KEY and key != names.pod_key("n" * 63, "q" * length)
    store = Store(tmp_path)
    store.create()
    store.put_desired(key, {"metadata": {"name": name}})
    store.put_status(key, {"uid": "u"})
    assert store.desired_pods() == {key: {"metadata": {"name": name}}}
    assert names.pod_key("default", "echo") == "default_echo"


# -- curl --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["172.18.0.3:99999", "http://[::1", "http://172.18.0.3:x/", "http:///path"])
def test_urls_curl_would_reject(url):
    for call in (lambda: netns_curl.split_url(url), lambda: kind_curl.host_get(url, timeout=1),
                 lambda: kind_curl.curl_argv(url, timeout=1)):
        with pytest.raises(CurlError, match=r"curl: \(3\) URL rejected") as error:
            call()
        assert error.value.exit_code == 3


@pytest.mark.parametrize("address", ["10.1.2.3", "8.8.8.8", "172.19.0.1", "[2001:db8::1]", "169.254.169.254"])
def test_curl_refuses_addresses_outside_the_lab_before_sending(monkeypatch, address):
    def no_sending(*args, **kwargs):
        raise AssertionError(f"curl ran: {args}")
    monkeypatch.setattr(netns_curl.tools.subprocess, "run", no_sending)
    with pytest.raises(CurlError, match="outside the lab"):
        netns_curl.curl("kindlab-x-host", f"http://{address}/", 1, {}, networks=("192.168.0.0/16", "10.96.0.0/12"))


def test_curl_lets_the_labs_own_addresses_through(monkeypatch):
    sent = []

    def answer(argv, **kwargs):
        if "link" in argv:    # the lab host's links: the lab's own only
            return subprocess.CompletedProcess(argv, 0, b"1: lo: <LOOPBACK>\n2: kind: <UP>\n3: veth0@if2: <UP>\n", b"")
        sent.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"HTTP/1.1 200 OK\r\n\r\nhi", b"")
    monkeypatch.setattr(netns_curl, "nsenter", lambda **kw: ["true"])
    monkeypatch.setattr(netns_curl.tools.subprocess, "run", answer)
    for address in ("172.18.0.3", "192.168.1.5", "10.96.0.1", "127.0.0.1", "[::1]"):
        assert netns_curl.curl("kindlab-x-host", f"http://{address}/", 1, {},
                               networks=("192.168.0.0/16", "10.96.0.0/12")).status == 200
    assert len(sent) == 5


# -- cp ---------------------------------------------------------------------------------------------
def test_a_nodes_paths_resolve_inside_its_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_text("the node's")
    (root / "abs").symlink_to("/etc/shadow")                 # absolute: starts again at the node's root
    (root / "etc" / "up").symlink_to("../../../../../../..")  # relative: stops at the node's root
    (root / "loop").symlink_to("loop")
    assert files.resolve(root, "/../../etc/shadow", "n:") == "/etc/shadow"
    assert files.resolve(root, "/abs", "n:") == "/etc/shadow"
    assert files.resolve(root, "etc/up/etc/./shadow", "n:") == "/etc/shadow"
    assert files.in_node(root, "/etc/up/abs", "n:/etc/up/abs") == root / "etc" / "shadow"
    assert files.in_node(root, "/", "n:/") == root
    with pytest.raises(ExecError, match="too many levels"):
        files.resolve(root, "/loop", "n:/loop")
    with pytest.raises(ExecError, match="names no path"):
        files.in_node(root, "", "n:")


def test_a_copy_into_a_node_follows_its_symlinks_inside_it(tmp_path):
    outside = tmp_path / "outside"                  # a host folder that a link in the node names
    outside.mkdir()
    root = tmp_path / "root"
    mirrored = root / outside.relative_to("/")      # the same path inside the node
    mirrored.mkdir(parents=True)
    (root / "opt" / "pkg").mkdir(parents=True)
    (root / "opt" / "pkg" / "x").symlink_to(outside)
    (root / "opt" / "conf").symlink_to(outside / "conf")
    (tmp_path / "pkg" / "x").mkdir(parents=True)
    (tmp_path / "pkg" / "x" / "f").write_text("mine")
    files.copy(tmp_path / "pkg", root / "opt", "pkg", "n:/opt", False, dest_root=root)
    (tmp_path / "conf").write_text("conf")
    files.copy(tmp_path / "conf", root / "opt", "conf", "n:/opt/", True, dest_root=root)
    assert (mirrored / "f").read_text() == "mine"
    assert (mirrored / "conf").read_text() == "conf"
    assert os.listdir(outside) == []


def test_cp_never_copies_kernel_file_systems(tmp_path):
    for src, label in ((Path("/proc/cpuinfo"), "/proc/cpuinfo"), (Path("/sys/kernel"), "/sys/kernel"),
                       (Path("/dev/null"), "/dev/null")):
        with pytest.raises(ExecError, match="kernel file system"):
            files.copy(src, tmp_path, label, "node:/tmp", False)
    with pytest.raises(ExecError, match="kernel file system"):
        files.copy(tmp_path, Path("/proc/sys/net"), str(tmp_path), "node:/proc/sys/net", False)
    root = tmp_path / "root"                     # a node root whose /proc, /sys and /dev are skipped by a folder copy
    for d in ("proc", "sys", "dev", "etc"):
        (root / d).mkdir(parents=True)
        (root / d / "f").write_text(d)
    files.copy(root, tmp_path / "out", "node:/", str(tmp_path / "out"), False, src_root=root)
    assert sorted(os.listdir(tmp_path / "out")) == ["etc"]


# -- the command line ----------------------------------------------------------------------------------
def test_options_may_come_anywhere():
    one_line_error(cli("delete", "pod", "--name", "probe1", "NAME", "--backend", "netns"), "probe1")
    one_line_error(cli("get", "--name", "probe1", "pods", "--backend", "netns"), "probe1")


# -- against a lab ---------------------------------------------------------------------------------
@pytest.fixture
def lab(make_lab, tmp_path):
    return make_lab(small_config(tmp_path))


def lab_cli(lab, *args: str) -> subprocess.CompletedProcess:
    return cli(*args, "--name", lab.name, "--backend", "netns")


@pytest.mark.netns
def test_a_closed_stdout_ends_quietly(lab):
    read, write = os.pipe()
    os.close(read)                     # `| true`: the reader is gone before anything is written
    try:
        done = subprocess.run([sys.executable, "-m", "kindlab.cli", "get", "nodes", "--name", lab.name, "--backend",
                               "netns"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert done.stderr == "" and done.returncode == 141


@pytest.mark.netns
def test_apply_prints_what_was_made_and_what_failed(lab, tmp_path):
    worker = f"{lab.name}-worker"
    good = replaced(POD, ("spec", "nodeName"), worker)
    manifest = tmp_path / "two.yaml"
    manifest.write_text(yaml.safe_dump_all([
        replaced(good, ("metadata", "name"), "first"),
        replaced(good, ("spec", "nodeName"), "no-such-node"),                   # refused by the lab
        replaced(good, ("spec", "containers", 0, "ports"), 5),                  # refused when read
        replaced(replaced(good, ("metadata", "name"), "p" * 250), ("spec", "containers", 0, "ports", 0, "hostPort"),
                 81),
        replaced(good, ("spec", "containers", 0, "ports", 0, "hostIP"), 5),
    ]))
    result = lab_cli(lab, "apply", "-f", str(manifest))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.splitlines() == ["pod/first created", f"pod/{'p' * 250} created"]
    errors = result.stderr.splitlines()
    assert len(errors) == 3 and all(e.startswith("kindlab: error: ") for e in errors)
    assert "spec.nodeName" in errors[0] and "ports: must be a list" in errors[1] and "hostIP" in errors[2]
    lab.wait_for_pod("p" * 250, timeout=20)
    lab.wait_for_pod("first", timeout=20)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n---\n")
    one_line_error(lab_cli(lab, "apply", "-f", str(empty)), "no objects passed to apply")
    one_line_error(lab_cli(lab, "delete", "-f", str(empty)), "no objects passed to delete")


@pytest.mark.netns
def test_curl_errors_are_one_line(lab):
    one_line_error(lab_cli(lab, "curl", "172.18.0.3:99999"), "URL rejected")
    one_line_error(lab_cli(lab, "curl", "http://[::1"), "URL rejected")
    one_line_error(lab_cli(lab, "curl", "10.1.2.3"), "outside the lab")


@pytest.mark.netns
def test_cp_stays_in_the_node(lab, tmp_path):
    worker = f"{lab.name}-worker"
    for spec in (f"{worker}:", f"{worker}:/proc", f"{worker}:/sys/kernel", f"{worker}:/dev/null"):
        with pytest.raises(ExecError):
            lab.cp(spec, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ExecError, match="kernel file system"):
        lab.cp(str(ROOT / "kind" / "config"), f"{worker}:/proc/sys/net/ipv4/")
    lab.cp(f"{worker}:/../../../etc/cni/net.d/05-kindlab.conf", str(tmp_path / "conf"))
    assert json.loads((tmp_path / "conf").read_text())["type"] == "kindlab-cni"
    one_line_error(lab_cli(lab, "cp", f"{worker}:", str(tmp_path / "x")), "names no path")


@pytest.mark.netns
def test_a_half_made_lab_is_marked_broken(lab):
    from kindlab.backends.netns import processes

    record = lab.store.read_lab()
    record.update(phase="creating", creator=[999999999, 1])          # its `create` was killed
    lab.store.write_lab(record)
    processes.kill([int((lab.state_dir / "agent.pid").read_text())])
    listed = cli("get", "clusters", "--backend", "netns")
    assert lab.name in listed.stdout.split()
    assert f"cluster {lab.name!r} is broken" in listed.stderr
    assert f"kindlab delete cluster --name {lab.name}" in listed.stderr
    one_line_error(lab_cli(lab, "get", "nodes"), f"remove it: kindlab delete cluster --name {lab.name}")
    assert not lab.agent_running()
