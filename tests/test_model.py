"""kindlab.model: the rules stated once (CNI config choice, pods and events, the kubelet's back-off), the
three consumers of the config choice agreeing on a table of net.d folders, and CNI chaining in the
netns runtime against a fake `invoke.Exec` (no root, no namespaces)."""

from __future__ import annotations

import ast
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kindlab import doctor, heal
from kindlab import walkthrough as wt
from kindlab.backends.netns import cni, mounts
from kindlab.backends.netns import tools as commands
from kindlab.capabilities import Capabilities
from kindlab.errors import ExecError
from kindlab.model import backoff, kubelet
from kindlab.model import cni as cni_rules
from kindlab.model import pods as pod_rules

NODE = "kind-worker"


# -- (a) the one config choice ------------------------------------------------------------------
def conflist(name: str = "chain", portmap_caps: bool = True, version: str = "0.4.0") -> bytes:
    pm: dict[str, Any] = {"type": "portmap", "snat": True}
    if portmap_caps:
        pm["capabilities"] = {"portMappings": True}
    return json.dumps({"cniVersion": version, "name": name, "plugins": [{"type": "bridge"}, pm]}).encode()


PRIMARY = json.dumps({"cniVersion": "0.4.0", "name": "primary", "type": "bridge"}).encode()
DIRECTORY = object()  # a folder where a file would be


@dataclass(frozen=True)
class Case:
    files: dict[str, Any]  # name -> bytes, or DIRECTORY
    chosen: str | None
    chains_portmap: bool = False
    rejected: str | None = None  # the first file, when it is invalid: then no network at all


CASES = {
    "valid conflist": Case({"10-chain.conflist": conflist()}, "10-chain.conflist", True),
    # containerd (go-cni) does not skip a broken first file: the load fails and the node has no network.
    "invalid JSON first, then a valid file": Case(
        {"00-broken.conflist": b"{not json", "10-chain.conflist": conflist(), "README": b"not a config"},
        None, False, "00-broken.conflist"),
    "a .conf sorts before a .conflist": Case(
        {"10-net.conflist": conflist(), "10-net.conf": PRIMARY, "Z.json": PRIMARY}, "10-net.conf", False),
    "upper case sorts first (byte order)": Case({"a.conflist": conflist(), "Z.conf": PRIMARY}, "Z.conf"),
    "portmap chained without capabilities": Case({"10-chain.conflist": conflist(portmap_caps=False)},
                                                 "10-chain.conflist", False),
    "an empty folder": Case({}, None),
    "only files the runtime ignores": Case({"README": PRIMARY, "10-a.conf.bak": PRIMARY}, None),
    # libcni reads UTF-8 only (Go's encoding/json): UTF-16 is not JSON to it ...
    "a UTF-16 config first": Case(
        {"00-utf16.conflist": "\ufeff".encode("utf-16-le") + conflist().decode().encode("utf-16-le"),
         "10-chain.conflist": conflist()}, None, False, "00-utf16.conflist"),
    "a byte-order mark first": Case({"01-bom.conflist": b"\xef\xbb\xbf" + conflist(), "10-chain.conflist": conflist()},
                                    None, False, "01-bom.conflist"),
    # ... but a byte that is not UTF-8 inside a JSON string becomes U+FFFD: the file is valid.
    "a Latin-1 byte inside a JSON string": Case(
        {"00-latin1.conflist": conflist().replace(b'"name": "chain"', b'"name": "caf\xe9"'),
         "10-chain.conflist": conflist()}, "00-latin1.conflist", True),
    # libcni lists every entry of the folder (os.ReadDir), hidden ones too, and '.' sorts before digits.
    "a hidden file": Case({".00-hidden.conflist": conflist(name="hidden"), "10-chain.conflist": conflist()},
                          ".00-hidden.conflist", True),
    # ... but not folders: one named like a config is not a candidate at all.
    "a directory named like a config": Case({"00-dir.conflist": DIRECTORY, "10-chain.conflist": conflist()},
                                            "10-chain.conflist", True),
    "every file invalid": Case({"a.conflist": b'{"plugins": [{"type": "x"}]}', "b.conf": b'{"name": "n"}'},
                               None, False, "a.conflist"),
}


def make_net_d(root: Path, files: dict[str, Any]) -> Path:
    """`root`/etc/cni/net.d holding `files`."""
    net_d = root / cni_rules.NET_D.lstrip("/")
    net_d.mkdir(parents=True)
    for name, content in files.items():
        if content is DIRECTORY:
            (net_d / name).mkdir()
            (net_d / name / "inner.conf").write_bytes(PRIMARY)
        else:
            (net_d / name).write_bytes(content)
    return net_d


def decoded(data: bytes) -> str:
    """Command output as both backends' exec returns it (UTF-8, invalid bytes replaced)."""
    return data.decode("utf-8", "replace")


class FolderNode:
    """Just enough of a Cluster for doctor.cni_choice and walkthrough.net_d_table: one node whose root is a
    temp folder; exec runs the real command with the node's paths moved under that folder."""

    name = "kind"

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[list[str]] = []

    def node_names(self) -> list[str]:
        return [NODE]

    def exec(self, node: str, cmd, check: bool = True, input=None, timeout: float | None = 60) -> str:
        assert node == NODE and isinstance(cmd, list), cmd
        self.calls.append(list(cmd))
        argv = [str(self.root) + a if a.startswith(("/etc/", "/opt/")) else a for a in cmd]
        done = subprocess.run(argv, capture_output=True, timeout=10)
        out, err = decoded(done.stdout), decoded(done.stderr)
        if check and done.returncode != 0:
            raise ExecError(f"{node}: `{' '.join(cmd)}` exited with {done.returncode}: {err}", done.returncode,
                            out, err)
        return out


def read_in(net_d: Path):
    def read(name: str) -> bytes | None:
        path = net_d / name
        return None if path.is_dir() else path.read_bytes()
    return read


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_choose_against_a_table_of_folders(case, tmp_path):
    net_d = make_net_d(tmp_path, case.files)
    choice = cni_rules.choose(sorted(case.files), read_in(net_d))
    assert (choice.chosen.file if choice.chosen else None) == case.chosen
    assert choice.chains_portmap is case.chains_portmap
    assert (choice.rejected.file if choice.rejected else None) == case.rejected
    assert sorted(choice.files) == sorted(case.files)
    # the runtime parses the first candidate only; no network means an error that says why
    assert [c.file for c in choice.tried] == [n for n in (case.chosen, case.rejected) if n]
    assert (choice.error is None) == (case.chosen is not None)
    if case.rejected:
        assert f"/etc/cni/net.d/{case.rejected}" in choice.error and "invalid cni config" in choice.error
    assert cni_rules.choose_in(net_d).chosen == choice.chosen


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_doctor_the_book_and_the_runtime_agree(case, tmp_path):
    make_net_d(tmp_path, case.files)
    lab = FolderNode(tmp_path)
    # doctor
    seen = doctor.cni_choice(lab, NODE)
    by_doctor = (seen.chosen.file if seen.chosen else None, seen.chains_portmap, seen.error)
    # the book's table
    (row,) = wt.net_d_table(lab).to_dict(orient="records")
    by_book = (row["chosen"], bool(row["chains portmap"]), row["problem"] or None)
    assert row["/etc/cni/net.d"] == ", ".join(sorted(case.files, key=str.encode))
    # the netns runtime
    if case.chosen is None:
        with pytest.raises(cni.CniError, match="^cni plugin not initialized$"):
            cni.load_network(tmp_path)
        by_runtime = None
    else:
        net = cni.load_network(tmp_path)
        by_runtime = (net.file, net.chains_portmap)
    assert by_doctor == by_book
    assert by_doctor[:2] == (case.chosen, case.chains_portmap)
    assert by_runtime == (None if case.chosen is None else (case.chosen, case.chains_portmap))
    assert [c[0] for c in lab.calls] and {c[0] for c in lab.calls} <= {"ls", "cat"}


@pytest.mark.parametrize(("name", "text", "error"), [
    ("a.conflist", "{", "not valid JSON"),
    ("a.conflist", '{"plugins": [{"type": "x"}]}', "error parsing configuration list: no name"),
    ("a.conflist", '{"name": "n", "plugins": []}', "error parsing configuration list: no plugins in list"),
    ("a.conflist", '{"name": "n", "plugins": [{"name": "x"}]}', "missing 'type'"),
    ("a.conf", '{"name": "n"}', "error parsing configuration: missing 'type'"),
    ("a.json", "[]", "not a JSON object"),
])
def test_invalid_configs_say_why(name, text, error):
    for raw in (text, text.encode()):
        conf = cni_rules.parse_config(name, raw)
        assert not conf.valid and error in conf.error and not conf.chains_portmap


def test_a_conf_is_one_plugin_and_portmap_needs_the_capability():
    conf = cni_rules.parse_config("05-a.conf", PRIMARY)
    assert conf.valid and conf.types == ["bridge"] and conf.name == "primary" and conf.portmap is None
    chained = cni_rules.parse_config("000-x.conflist", conflist())
    assert chained.types == ["bridge", "portmap"] and chained.chains_portmap and chained.cni_version == "0.4.0"
    bare = cni_rules.parse_config("000-x.conflist", conflist(portmap_caps=False))
    assert bare.portmap == {"type": "portmap", "snat": True} and not bare.chains_portmap


def test_config_order_is_byte_order_of_known_extensions():
    names = ["10-b.conf", "05-a.conflist", "000-z.conflist", "Z.json", "a.json", "README", "99.conf.bak"]
    assert cni_rules.config_order(names) == ["000-z.conflist", "05-a.conflist", "10-b.conf", "Z.json", "a.json"]


def test_the_runtimes_words():
    assert cni_rules.NOT_INITIALIZED == "cni plugin not initialized"
    assert cni_rules.missing_plugin_error("portmap") == 'failed to find plugin "portmap" in path [/opt/cni/bin]'
    assert cni_rules.missing_plugin_error("bridge", "/a:/b") == 'failed to find plugin "bridge" in path [/a /b]'


# -- (b) CNI chaining in the netns runtime, against a fake invoke.Exec ------------------------------
@dataclass
class FakeView:
    """What Runtime uses of a NodeView: the node's root, its state folders, and how to enter it."""

    root: Path
    dirs: mounts.NodeDirs

    def enter(self) -> list[str]:
        return ["nsenter-into-the-node", "--"]


@dataclass
class Call:
    plugin: str
    command: str
    conf: dict[str, Any]
    env: dict[str, str]
    argv: list[str]
    timeout: float


class FakeExec:
    """libcni's invoke.Exec: records each plugin call; ADD answers a result naming the plugin, unless told."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answers: dict[tuple[str, str], Any] = {}

    def __call__(self, argv, stdin, env, timeout):
        plugin, command = Path(argv[0]).name, env["CNI_COMMAND"]
        self.calls.append(Call(plugin, command, json.loads(stdin), dict(env), list(argv), timeout))
        answer = self.answers.get((plugin, command))
        if isinstance(answer, BaseException):
            raise answer
        if answer is not None:
            return answer
        out = b""
        if command == "ADD":
            out = json.dumps({"cniVersion": "0.4.0", "ips": [{"address": "192.168.1.5/24"}], "via": plugin}).encode()
        return subprocess.CompletedProcess(argv, 0, out, b"")

    def order(self) -> list[tuple[str, str]]:
        return [(c.plugin, c.command) for c in self.calls]

    def conf(self, plugin: str, command: str) -> dict[str, Any]:
        return next(c.conf for c in self.calls if (c.plugin, c.command) == (plugin, command))


MAPPINGS = [{"HostPort": 80, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}]


@pytest.fixture
def runtime(tmp_path):
    """A Runtime on a node whose root is tmp_path/root (plugins bridge, portmap, loopback), run by FakeExec."""
    root = tmp_path / "root"
    bin_dir = root / "opt" / "cni" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("bridge", "portmap", "loopback"):
        (bin_dir / name).write_text("#!/bin/false\n")
        (bin_dir / name).chmod(0o755)
    net_d = make_net_d(root, {"000-chain.conflist": conflist()})
    run = FakeExec()
    rt = cni.Runtime(FakeView(root, mounts.NodeDirs(tmp_path / "state")), run=run)
    pod = cni.PodNetwork(sandbox_id="abc", netns="/proc/1/ns/net", pod_name="p", pod_namespace="default",
                         pod_uid="u-1", port_mappings=list(MAPPINGS))
    return rt, run, pod, root, net_d


def test_add_runs_loopback_then_the_chain_with_prev_result(runtime):
    rt, run, pod, _, _ = runtime
    result = rt.setup(pod)
    assert run.order() == [("loopback", "ADD"), ("bridge", "ADD"), ("portmap", "ADD")]
    assert [c.argv for c in run.calls] == [["/opt/cni/bin/loopback"], ["/opt/cni/bin/bridge"], ["/opt/cni/bin/portmap"]]
    assert all(c.timeout == cni.PLUGIN_TIMEOUT for c in run.calls)
    lo, bridge, portmap = (c.conf for c in run.calls)
    assert (lo["name"], lo["type"]) == ("cni-loopback", "loopback") and run.calls[0].env["CNI_IFNAME"] == "lo"
    # name and cniVersion come from the list; prevResult chains; capabilities stripped everywhere
    assert bridge["name"] == portmap["name"] == "chain" and bridge["cniVersion"] == portmap["cniVersion"] == "0.4.0"
    assert "prevResult" not in bridge and portmap["prevResult"]["via"] == "bridge"
    assert not any("capabilities" in c.conf for c in run.calls)
    # portMappings only for the plugin that declares the capability
    assert "runtimeConfig" not in bridge and "runtimeConfig" not in lo
    assert portmap["runtimeConfig"] == {"portMappings": MAPPINGS} and portmap["snat"] is True
    env = run.calls[2].env
    assert env["CNI_ARGS"] == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;"
                               "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1")
    assert (env["CNI_CONTAINERID"], env["CNI_NETNS"], env["CNI_IFNAME"], env["CNI_PATH"]) == (
        "abc", "/proc/1/ns/net", "eth0", "/opt/cni/bin")
    # the chain's result is the last plugin's, cached as libcni does
    assert result["via"] == "portmap" and cni.pod_ip(result) == "192.168.1.5"
    cached = json.loads((rt.cache / "chain-abc-eth0").read_text())
    assert cached["result"] == result and cached["capabilityArgs"] == {"portMappings": MAPPINGS}


def test_a_pod_without_host_ports_gets_no_runtime_config(runtime):
    rt, run, pod, _, _ = runtime
    pod.port_mappings = []
    rt.setup(pod)
    assert not any("runtimeConfig" in c.conf for c in run.calls)


def test_del_runs_in_reverse_with_the_cached_result(runtime):
    rt, run, pod, _, _ = runtime
    added = rt.setup(pod)
    run.calls.clear()
    rt.teardown(pod)
    assert run.order() == [("portmap", "DEL"), ("bridge", "DEL"), ("loopback", "DEL")]
    assert run.conf("portmap", "DEL")["prevResult"] == run.conf("bridge", "DEL")["prevResult"] == added
    assert run.conf("portmap", "DEL")["runtimeConfig"] == {"portMappings": MAPPINGS}
    assert "prevResult" not in run.conf("loopback", "DEL")  # loopback's result is not cached
    assert not (rt.cache / "chain-abc-eth0").exists()
    run.calls.clear()
    rt.teardown(pod)  # again, with nothing cached: DEL still runs, without prevResult
    assert run.order()[0] == ("portmap", "DEL") and "prevResult" not in run.conf("portmap", "DEL")


def test_check_runs_in_order_with_the_cached_result(runtime):
    rt, run, pod, _, _ = runtime
    with pytest.raises(cni.CniError, match='failed to get network "chain" cached result'):
        rt.check(pod)
    added = rt.setup(pod)
    run.calls.clear()
    rt.check(pod)
    assert run.order() == [("bridge", "CHECK"), ("portmap", "CHECK")]
    assert run.conf("bridge", "CHECK")["prevResult"] == added


def test_a_missing_plugin_reads_as_libcni(runtime):
    rt, run, pod, root, _ = runtime
    (root / "opt" / "cni" / "bin" / "portmap").unlink()
    with pytest.raises(cni.CniError) as missing:
        rt.setup(pod)
    assert str(missing.value) == ('failed to setup network for sandbox "abc": plugin type="portmap" failed (add): '
                                  'failed to find plugin "portmap" in path [/opt/cni/bin]')
    assert run.order() == [("loopback", "ADD"), ("bridge", "ADD")]  # portmap was never run
    assert not (rt.cache / "chain-abc-eth0").exists()
    # a plugin file that is not executable is not found either
    (root / "opt" / "cni" / "bin" / "portmap").write_text("x")
    with pytest.raises(cni.CniError, match='failed to find plugin "portmap" in path \\[/opt/cni/bin\\]'):
        rt.setup(pod)


def test_no_config_reads_as_containerd(runtime):
    rt, run, pod, _, net_d = runtime
    (net_d / "000-chain.conflist").unlink()
    with pytest.raises(cni.CniError, match='^failed to setup network for sandbox "abc": cni plugin not initialized$'):
        rt.setup(pod)
    assert run.calls == []


def test_a_plugins_json_error_is_surfaced(runtime):
    rt, run, pod, _, _ = runtime
    error = {"cniVersion": "0.4.0", "code": 11, "msg": "no bridge for you", "details": "why"}
    run.answers["bridge", "ADD"] = subprocess.CompletedProcess([], 1, json.dumps(error).encode(), b"")
    with pytest.raises(cni.CniError, match='plugin type="bridge" failed \\(add\\): no bridge for you; why$'):
        rt.setup(pod)
    run.answers["bridge", "ADD"] = subprocess.CompletedProcess([], 1, json.dumps(error | {"details": ""}).encode(), b"")
    with pytest.raises(cni.CniError, match='failed \\(add\\): no bridge for you$'):
        rt.setup(pod)
    run.answers["bridge", "ADD"] = subprocess.CompletedProcess([], 2, b"", b"boom\n")
    with pytest.raises(cni.CniError, match='failed \\(add\\): netplugin failed: "boom"$'):
        rt.setup(pod)
    run.answers["bridge", "ADD"] = subprocess.CompletedProcess([], 0, b"not json", b"")
    with pytest.raises(cni.CniError, match="failed to parse the result of /opt/cni/bin/bridge"):
        rt.setup(pod)
    run.answers["portmap", "DEL"] = subprocess.CompletedProcess([], 1, json.dumps(error).encode(), b"")
    with pytest.raises(cni.CniError, match='^failed to destroy network for sandbox "abc": plugin type="portmap" '
                                           'failed \\(delete\\): no bridge for you; why$'):
        rt.teardown(pod)


def test_a_timeout_becomes_a_cni_error(runtime, monkeypatch):
    rt, run, pod, _, _ = runtime
    run.answers["portmap", "ADD"] = cni.CniError("plugin /opt/cni/bin/portmap timed out after 60s")
    with pytest.raises(cni.CniError, match='^failed to setup network for sandbox "abc": plugin type="portmap" '
                                           'failed \\(add\\): plugin /opt/cni/bin/portmap timed out after 60s$'):
        rt.setup(pod)
    # the backend's own runner maps the command runner's timeout to that CniError, inside the node
    seen = []

    def timed_out(argv, what, **kwargs):
        seen.append((argv, kwargs["timeout"], kwargs["input"]))
        raise commands.TimedOut(f"{what}: did not finish", b"", b"")
    monkeypatch.setattr(commands, "run", timed_out)
    node_run = cni.node_exec(rt.view)
    with pytest.raises(cni.CniError, match="^plugin /opt/cni/bin/bridge timed out after 2s$"):
        node_run(["/opt/cni/bin/bridge"], b"{}", {"CNI_COMMAND": "ADD"}, 2.0)
    assert seen == [(["nsenter-into-the-node", "--", "/opt/cni/bin/bridge"], 2.0, b"{}")]
    with pytest.raises(cni.CniError, match='^failed to setup network for sandbox "abc": plugin type="loopback" '
                                           'name="cni-loopback" failed \\(add\\): '
                                           'plugin /opt/cni/bin/loopback timed out after 60s$'):
        cni.Runtime(rt.view).setup(pod)


# -- (c) pods and events --------------------------------------------------------------------------
def test_epoch_and_rfc3339():
    assert pod_rules.epoch("1970-01-01T00:00:01.5Z") == pytest.approx(1.5)
    assert pod_rules.epoch("1970-01-01T01:00:00+01:00") == 0.0
    assert pod_rules.epoch("1970-01-01T00:00:10") == 10.0  # no zone: UTC
    assert pod_rules.epoch(12) == 12.0 and pod_rules.epoch(2.5) == 2.5
    for nothing in (None, "", "nonsense", "2024-13-01T00:00:00Z"):
        assert pod_rules.epoch(nothing) is None
    assert pod_rules.rfc3339(1.9) == "1970-01-01T00:00:01Z"  # whole seconds, as the API writes them
    assert pod_rules.rfc3339(pod_rules.epoch("2024-05-06T07:08:09Z")) == "2024-05-06T07:08:09Z"


def pod(name: str = "echo", phase: str = "Running", ready: bool | None = True, node: str = NODE,
        host_network: bool = False, ports: list | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "podIP": "192.168.1.5"}
    if ready is not None:
        status["conditions"] = [{"type": "PodScheduled", "status": "True"},
                                {"type": "Ready", "status": "True" if ready else "False"}]
    ports = ports if ports is not None else [{"containerPort": 8080, "hostPort": 80, "protocol": "TCP"}]
    return {"metadata": {"name": name, "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "c", "image": "x", "ports": ports}]},
            "status": status}


def test_running_means_running_and_ready():
    assert pod_rules.is_running(pod()) and pod_rules.is_ready(pod())
    assert not pod_rules.is_running(pod(ready=False)) and not pod_rules.is_ready(pod(ready=False))
    assert not pod_rules.is_running(pod(ready=None))          # started, no Ready condition yet
    assert not pod_rules.is_running(pod(phase="Pending"))     # Ready can't make a Pending pod Running
    assert pod_rules.is_ready(pod(phase="Pending"))
    assert not pod_rules.is_running(None) and not pod_rules.is_ready({})
    assert pod_rules.phase(pod(phase="Pending")) == "Pending" and pod_rules.phase(None) is None
    assert (pod_rules.uid(pod()), pod_rules.node_name(pod()), pod_rules.pod_ip(pod())) == (
        "uid-echo", NODE, "192.168.1.5")


def test_host_ports_of_a_pod():
    ports = [{"containerPort": 8080, "hostPort": 80}, {"containerPort": 9000},
             {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "1.2.3.4"}]
    got = pod_rules.host_ports(pod(ports=ports, phase="Pending"))
    assert got == [pod_rules.HostPort("echo", 80, 8080, "TCP", None, "192.168.1.5", False),
                   pod_rules.HostPort("echo", 5353, 53, "UDP", "1.2.3.4", "192.168.1.5", False)]
    assert pod_rules.host_ports(pod())[0].running
    assert pod_rules.host_ports(pod(host_network=True)) == []  # hostNetwork: no DNAT needed
    pods = [pod("a"), pod("b", node="kind-worker2"), pod("c", host_network=True)]
    assert [hp.pod for hp in pod_rules.node_host_ports(pods, NODE)] == ["a"]
    assert pod_rules.port_mappings(pod(ports=ports)["spec"]) == [
        {"HostPort": 80, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""},
        {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": "1.2.3.4"}]
    # the one reading of a spec's hostPorts that the doctor, the CNI wire and the kubelet's admission all use
    assert pod_rules.declared_host_ports(pod(ports=ports, host_network=True)["spec"]) == [
        (80, 8080, "TCP", ""), (5353, 53, "UDP", "1.2.3.4")]


def event(reason: str = pod_rules.SANDBOX_FAILED, name: str = "echo", uid: str | None = "uid-echo", count: int = 1,
          first: str | None = "2024-01-01T00:00:10Z", last: str | None = None, message: str = "failed") -> dict:
    obj = {"kind": "Pod", "name": name, **({"uid": uid} if uid else {})}
    return {"type": "Warning", "reason": reason, "involvedObject": obj, "count": count, "message": message,
            "firstTimestamp": first, "lastTimestamp": last or first}


def test_sandbox_failures_count_folded_events_and_only_this_pod():
    events = [
        event(count=3, first="2024-01-01T00:00:10Z", last="2024-01-01T00:00:30Z",
              message='Failed to create pod sandbox: plugin type="portmap" failed (add): one'),
        event(count=4, first="2024-01-01T00:00:40Z", last="2024-01-01T00:01:10Z",
              message=f"{pod_rules.COMBINED}Failed to create pod sandbox: two"),
        event(reason="Scheduled", count=1),
        event(name="other", count=7),
        event(uid="uid-of-an-older-echo", count=5),                          # same name, an older pod
        event(uid=None, count=2, first="2024-01-01T00:00:05Z"),              # no uid: kept by time
        event(uid=None, count=9, first="2023-12-31T23:00:00Z"),              # no uid, before the pod
    ]
    assert pod_rules.sandbox_failure_count(events, "echo") == 3 + 4 + 5 + 2 + 9
    assert pod_rules.sandbox_failure_count(events, "echo", "uid-echo") == 3 + 4 + 2 + 9
    since = pod_rules.epoch("2024-01-01T00:00:06Z")
    assert pod_rules.sandbox_failure_count(events, "echo", "uid-echo", since) == 3 + 4 + 2  # 1 s of slack
    assert pod_rules.sandbox_failure_count(events, "nobody") == 0
    mine = pod_rules.sandbox_failure_events(events, "echo", "uid-echo", since)
    assert [pod_rules.count(e) for e in mine] == [3, 4, 2]
    assert pod_rules.message(mine[1]) == "Failed to create pod sandbox: two"
    assert pod_rules.message(mine[0]).endswith("failed (add): one")
    assert pod_rules.last_event(mine) is mine[1] and pod_rules.last_event([]) is None
    assert pod_rules.about(events[0], "echo") and not pod_rules.about(events[3], "echo")


def test_failure_times_and_hidden_attempts():
    folded = event(count=5, first="2024-01-01T00:00:10Z", last="2024-01-01T00:00:50Z")
    single = event(count=1, first="2024-01-01T00:01:00Z")
    pair = event(count=2, first="2024-01-01T00:01:10Z", last="2024-01-01T00:01:20Z")
    t0 = pod_rules.epoch("2024-01-01T00:00:10Z")
    assert pod_rules.failure_times([folded, single, pair]) == [t0, t0 + 40, t0 + 50, t0 + 60, t0 + 70]
    assert pod_rules.hidden_attempts([folded]) == 3    # five attempts, two timestamps shown
    assert pod_rules.hidden_attempts([single, pair]) == 0
    assert pod_rules.hidden_attempts([event(count=3, first=None)]) == 2
    assert pod_rules.failure_times([event(first=None)]) == []


# -- (d) the kubelet's back-off -------------------------------------------------------------------
def test_a_new_pod_waits_for_its_volumes_as_long_as_the_kubelets_poll():
    assert kubelet.volumes_ready_after() == kubelet.VOLUME_POLL == 0.3    # WaitForAttachAndMount's 300 ms
    assert kubelet.volumes_ready_after(1.0) == pytest.approx(0.03)        # scaled with the lab's back-off


@pytest.mark.parametrize(("base", "jitter"),
                         [(kubelet.KUBELET_BACKOFF, kubelet.KUBELET_JITTER), (0.5, 0.5), (2.0, 0.0)])
def test_retry_delay_stays_within_the_window(base, jitter):
    low, high = kubelet.window(base, jitter)
    rng = random.Random(7)
    delays = [kubelet.retry_delay(base, jitter, rng) for _ in range(5000)]
    assert all(low <= d <= high for d in delays)
    if jitter:
        assert min(delays) < low + 0.01 * (high - low) and max(delays) > high - 0.01 * (high - low)
    else:
        assert set(delays) == {base}
    assert low <= kubelet.retry_delay(base, jitter) <= high  # the module's own generator


def test_the_window_in_words_and_on_capabilities():
    assert (kubelet.KUBELET_BACKOFF, kubelet.KUBELET_JITTER) == (10.0, 0.5)
    assert kubelet.window() == (10.0, 15.0) and kubelet.describe_window() == "10-15 s"
    # a failed CNI ADD is retried on each relist (containerd 1.7), whose clock the back-off scales
    assert Capabilities(backend="x").retry_window == "1-1.05 s" and Capabilities(backend="x").retry_bounds == (1, 1.05)
    assert Capabilities(backend="x", sandbox_backoff=2).retry_window == "0.2-0.21 s"
    caps = Capabilities(backend="x", kubelet="model", sandbox_backoff=0.5)
    assert "sandbox retry back-off 0.5 s" in caps.describe() and caps.to_dict()["sandbox_backoff"] == 0.5


def test_the_kubelets_clocks_tick_and_scale_with_the_backoff():
    # retries start on the sync loop's tick at or after they fall due; the model's short back-off shortens it
    assert kubelet.next_tick(12.3, origin=0.5, period=1.0) == 12.5
    assert kubelet.next_tick(12.5, origin=0.5, period=1.0) == 12.5   # a due time on a tick is that tick
    assert kubelet.next_tick(0.2, origin=0.5, period=1.0) == 0.5     # nothing before the clock started
    assert kubelet.scaled(kubelet.SYNC_PERIOD) == 1.0 and kubelet.scaled(kubelet.RELIST_PERIOD, 0.5) == 0.05
    rng = random.Random(3)
    gaps = [kubelet.next_tick(t + kubelet.retry_delay(rng=rng), 0.0, 1.0) - t
            for t in (rng.uniform(0, 100) for _ in range(2000))]
    assert 10.0 <= min(gaps) < 10.2 and 15.8 < max(gaps) <= 16.0   # 10-16 s, as measured on the real kubelet


def test_a_deleted_pod_leaves_on_the_status_sync_tick_after_its_reclaim():
    # relists at 1.4, 2.4, 3.4 find the container, then the sandbox removed; the status manager's next tick
    assert kubelet.removed_at(1.4, origin=0.0) == 10.0
    assert kubelet.removed_at(9.2, origin=0.0) == 20.0    # reclaimed at 11.2, just after a tick: 8.8 s more
    assert kubelet.removed_at(0.14, origin=0.0, backoff=1.0) == 1.0   # scaled: relists 0.1 s, ticks 1 s
    rng = random.Random(5)
    waits = [kubelet.removed_at(t + rng.random(), 0.0) - t for t in (rng.uniform(0, 100) for _ in range(2000))]
    assert 2.0 <= min(waits) < 2.5 and 12.5 < max(waits) <= 13.0   # as measured: 2.2-3.7 s to reclaim, then a tick


def test_a_sandbox_not_yet_stopped_when_a_relist_saw_its_container_exit_waits_for_the_container_gc():
    # measured: the container exited at 25.313, a relist at 25.316, the sandbox stopped at 25.348
    assert kubelet.left_to_gc(25.316, exited=25.313, stopped=25.348)
    assert not kubelet.left_to_gc(26.32, exited=25.313, stopped=25.348)
    # scaled: at a 1 s back-off the kill's 35 ms count as 3.5 ms
    assert kubelet.left_to_gc(25.3155, 25.313, 25.348, backoff=1.0)
    assert not kubelet.left_to_gc(25.317, 25.313, 25.348, backoff=1.0)
    # measured: the status changed at 26.32, the GC's round at 30.94, the relist after it, the status tick at 41.18
    assert kubelet.removed_at(26.32, origin=1.18, gc_origin=-29.06) == pytest.approx(41.18)
    # a round just before the status change finds the pod still running: the next, a minute later
    assert kubelet.removed_at(26.32, origin=1.18, gc_origin=26.0) == pytest.approx(91.18)
    assert kubelet.removed_at(2.65, origin=0.0, backoff=1.0, gc_origin=0.0) == pytest.approx(7.0)  # round at 6, scaled


def test_pull_policy_defaults_as_the_api_server_does():
    assert pod_rules.pull_policy({"image": "inanimate/echo-server"}) == "Always"   # untagged
    assert pod_rules.pull_policy({"image": "localhost:5000/echo:latest"}) == "Always"
    assert pod_rules.pull_policy({"image": "localhost:5000/echo"}) == "Always"      # a port is not a tag
    assert pod_rules.pull_policy({"image": "busybox:1.36"}) == "IfNotPresent"
    assert pod_rules.pull_policy({"image": "busybox@sha256:" + "0" * 64}) == "IfNotPresent"
    assert pod_rules.pull_policy({"image": "busybox", "imagePullPolicy": "Never"}) == "Never"


def test_one_backoff_model():
    m = backoff.backoff_model(0.5, 0.5)
    assert (m.low, m.high) == kubelet.window(0.5, 0.5)
    assert heal.BackoffModel is backoff.BackoffModel and heal.backoff_model is backoff.backoff_model
    assert (heal.KUBELET_BACKOFF, heal.KUBELET_JITTER) == (kubelet.KUBELET_BACKOFF, kubelet.KUBELET_JITTER)


def test_the_model_imports_no_backend_and_no_cluster():
    code = ("import sys, kindlab.model.cni, kindlab.model.pods, kindlab.model.kubelet, kindlab.model.backoff; "
            "print(sorted(m for m in sys.modules if m.startswith('kindlab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}).stdout
    loaded = ast.literal_eval(out)
    assert not [m for m in loaded if m.startswith(("kindlab.backends", "kindlab.cluster", "kindlab.capabilities"))]
    kubelet_only = subprocess.run([sys.executable, "-c", "import sys, kindlab.model.kubelet; "
                                   "print('numpy' in sys.modules, 'pandas' in sys.modules)"],
                                  capture_output=True, text=True, check=True).stdout
    assert kubelet_only.split() == ["False", "False"]  # the agent imports it: stdlib only
