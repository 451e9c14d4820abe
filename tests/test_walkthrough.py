"""kindlab.walkthrough: the scenario helpers, on a stand-in lab and (as root) on the real netns lab."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from kindlab import measured, topology
from kindlab import walkthrough as wt
from kindlab.capabilities import Capabilities
from kindlab.errors import ConnectionRefused, ExecError, NotFound

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "kind" / "config"  # read only: labs here run from private copies (walkthrough.private_config)
# As in test_notebooks: a cluster name and a copy of kind/ may be given; by default a private copy and name.
LAB_NAME = os.environ.get("KINDLAB_TEST_CLUSTER", f"wt{os.getpid() % 10000}")
LAB_CONFIG = os.environ.get("KINDLAB_TEST_CONFIG")


class FakeLab:
    """Just enough of a Cluster for the helpers that read names, mounts and command output.

    `net_d` gives each node's /etc/cni/net.d (name -> text), answered to `ls -1` and `cat` as a node would.
    """

    def __init__(self, name: str = "kind", outputs: dict[str, str] | None = None,
                 net_d: dict[str, dict[str, str]] | None = None):
        self.name = name
        self.topology = topology.load(CONFIG, name=name)
        self.outputs = outputs or {}
        self.net_d = net_d or {}
        self.commands: list[tuple[str, object]] = []

    def check_node(self, node: str) -> str:
        if node not in [n.name for n in self.topology.nodes]:
            raise NotFound(node)
        return node

    def node_names(self) -> list[str]:
        return [n.name for n in self.topology.nodes]

    def exec(self, node: str, cmd, check: bool = True, **_: object) -> str:
        self.commands.append((node, cmd))
        files = self.net_d.get(self.check_node(node), {})
        match cmd:
            case ["ls", "-1A", "/etc/cni/net.d"]:
                return "".join(f"{name}\n" for name in sorted(files))
            case ["cat", path] if path.startswith("/etc/cni/net.d/"):
                if Path(path).name not in files:
                    raise ExecError(f"cat: {path}: No such file or directory", 1)
                return files[Path(path).name]
        text = cmd if isinstance(cmd, str) else " ".join(cmd)
        return next((out for key, out in self.outputs.items() if key in text), "")


def test_names_follow_kinds_scheme():
    lab = FakeLab("lab6")
    assert wt.node(lab, "worker2") == "lab6-worker2"
    assert wt.pod_name(lab, "worker3") == "echo-lab6-worker3"
    with pytest.raises(NotFound):
        wt.node(lab, "worker9")


def test_static_pods_follow_the_cluster_name():
    assert set(wt.static_pods(FakeLab())) == {"echo-kind-worker", "echo-kind-worker2", "echo-kind-worker3"}
    renamed = wt.static_pods(FakeLab("lab6"))
    assert set(renamed) == {"echo-lab6-worker", "echo-lab6-worker2", "echo-lab6-worker3"}
    assert {p.node_name for p in renamed.values()} == {"lab6-worker", "lab6-worker2", "lab6-worker3"}
    assert all(p.host_ports[0].host_port == 80 for p in renamed.values())


def test_host_cni_bin_is_the_folder_mounted_over_opt_cni():
    assert wt.host_cni_bin(FakeLab()) == ROOT / "kind" / "empty" / "bin"


def test_ls_parses_find_output_like_ls_al():
    out = "bridge\t4028260\t-rwxr-xr-x\t\nportmap\t3551125\t-rwxr-xr-x\t\nkindlab-cni\t52\tlrwxrwxrwx\t/usr/lib/x\n"
    frame = wt.cni_bin(FakeLab(outputs={"find": out}), "kind-worker")
    assert frame.columns.tolist() == ["name", "size", "mode", "target"]
    assert frame["name"].tolist() == ["bridge", "portmap", "kindlab-cni"]
    assert frame.loc[1, "size"] == 3551125 and frame.loc[2, "target"] == "/usr/lib/x"
    assert pd.isna(frame.loc[0, "target"])


def test_ls_of_a_missing_folder_is_empty():
    assert wt.cni_bin(FakeLab(), "kind-worker2").empty


PRIMARY = json.dumps({"cniVersion": "0.3.1", "name": "cilium", "type": "cilium-cni"})
CHAINED = json.dumps({"cniVersion": "0.3.1", "name": "cilium-portmap", "plugins": [
    {"type": "cilium-cni"}, {"type": "portmap", "capabilities": {"portMappings": True}}]})


@pytest.mark.parametrize("files, chosen", [
    (["05-cilium.conf", "000-cilium-portmap.conflist"], "000-cilium-portmap.conflist"),
    (["05-cilium.conf"], "05-cilium.conf"),
    (["README", "10-b.json", "10-a.conf"], "10-a.conf"),
    (["Z.conf", "a.conf"], "Z.conf"),  # byte order: upper case first
    ([], None),
])
def test_chosen_config_is_the_first_in_byte_order(files, chosen):
    net_d = {n: CHAINED if n.endswith(".conflist") else PRIMARY for n in files}
    table = wt.net_d_table(FakeLab(net_d={"kind-worker": net_d})).set_index("node")
    assert list(table.index) == ["kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"]
    row = table.loc["kind-worker"]
    assert (None if pd.isna(row["chosen"]) else row["chosen"]) == chosen
    assert row["problem"] == ("" if chosen else "no network config found in /etc/cni/net.d")
    assert row["/etc/cni/net.d"] == ", ".join(sorted(files, key=str.encode))
    assert row["chains portmap"] == (chosen == "000-cilium-portmap.conflist")
    assert pd.isna(table.loc["kind-worker3", "chosen"]) and not table.loc["kind-worker3", "chains portmap"]


def test_the_books_table_reads_an_invalid_first_file_as_no_network_and_wants_the_capability():
    """What doctor says: an invalid first file leaves no network (containerd does not skip it); portmap
    chained without capabilities.portMappings does not count (the table used to decide by a substring)."""
    no_caps = CHAINED.replace('"capabilities": {"portMappings": true}', '"snat": true')
    lab = FakeLab(net_d={"kind-worker": {"000-broken.conflist": "{", "05-cilium.conf": PRIMARY},
                         "kind-worker2": {"000-cilium-portmap.conflist": no_caps, "05-cilium.conf": PRIMARY}})
    table = wt.net_d_table(lab).set_index("node")
    assert pd.isna(table.loc["kind-worker", "chosen"]) and not table.loc["kind-worker", "chains portmap"]
    problem = table.loc["kind-worker", "problem"]
    assert "failed to load CNI config list file /etc/cni/net.d/000-broken.conflist" in problem
    assert table.loc["kind-worker2", "chosen"] == "000-cilium-portmap.conflist"
    assert not table.loc["kind-worker2", "chains portmap"]


def test_a_conflist_flattens_to_one_column_of_plugins():
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    conf = {"name": "kindlab", "cniVersion": "0.3.1", "plugins": [{"type": "kindlab-cni"}, portmap]}
    flat = wt.flat_conflist(conf)
    assert list(flat) == ["name", "cniVersion", "plugins[0]", "plugins[1]"]
    assert json.loads(flat["plugins[1]"]) == conf["plugins"][1]
    assert pd.DataFrame({"a": flat, "b": wt.flat_conflist({**conf, "plugins": conf["plugins"][:1]})})[
        "b"].isna().tolist() == [False, False, False, True]                  # side by side, the missing plugin shows


def test_a_chapter_opens_in_one_call(monkeypatch, capsys):
    lab, calls = FakeLab(), []

    class Caps:
        def describe(self) -> str:
            return "model of the kubelet"
    monkeypatch.setattr(FakeLab, "capabilities", Caps(), raising=False)

    def ensure(config, **kwargs):
        calls.append((config, kwargs))
        return lab
    monkeypatch.setattr(wt, "ensure_cluster", ensure)
    prepared = []
    got = wt.open_chapter("kind/config", "ch", "netns", 0.5, prepare=prepared.append, kubernetes="model")
    assert got is lab and prepared == [lab]
    assert calls == [("kind/config", {"name": "ch", "backend": "netns", "backoff": 0.5, "kubernetes": "model"})]
    assert capsys.readouterr().out.startswith("Outputs produced on the model of the kubelet: cluster 'kind', 4 nodes")


def test_echo_hostname():
    body = "Welcome to echo-server!  Here's what I know.\n\n-> My hostname is: echo-kind-worker\n\n-> Requesting IP"
    assert wt.echo_hostname(body) == "echo-kind-worker"
    assert wt.echo_hostname("nothing here") is None


def test_cni_versions_reads_portmap_and_the_clusters_package():
    lab = FakeLab(outputs={"[ -x": "yes\n",
                           "/opt/cni/bin/portmap 2>&1": "CNI portmap plugin version unknown\n"
                                                        "CNI protocol versions supported: 0.1.0, 0.4.0, 1.0.0\n"})
    lab.capabilities = Capabilities(backend="fake", cni_plugins="containernetworking-plugins 1.9.1+ds1-1")
    got = wt.cni_versions(lab, "kind-worker")
    assert got == {"package": "containernetworking-plugins 1.9.1+ds1-1",
                   "portmap says": "CNI portmap plugin version unknown",
                   "CNI protocol versions": "0.1.0, 0.4.0, 1.0.0"}


def test_requesting_ip():
    assert wt.requesting_ip("-> Requesting IP: 172.18.0.1:51598\n\n-> Request Headers") == "172.18.0.1"
    assert wt.requesting_ip("-> Requesting IP: [fd00::1]:443\n") == "fd00::1"
    assert wt.requesting_ip("no such line") is None


# -- on the real lab ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from kindlab import backends

    if os.geteuid() != 0:
        pytest.skip("needs root (the netns lab)")
    config = LAB_CONFIG or wt.private_config(tmp_path_factory.mktemp("kind"))
    try:
        yield wt.ensure_cluster(config, name=LAB_NAME, backend="netns", backoff=0.3)
    finally:
        backends.delete(LAB_NAME, backend="netns")


@pytest.mark.netns
def test_break_and_fix_round_trip(lab):
    broken = wt.reset(lab).set_index("node")
    worker, worker2, worker3 = (wt.node(lab, r) for r in wt.WORKERS)
    assert broken.loc[worker, "curl"] == 200
    assert not broken.loc[worker2, "portmap"] and broken.loc[worker2, "pod"] == "Pending"
    assert broken.loc[worker3, "pod"] == "Running" and broken.loc[worker3, "curl"] == "ConnectionRefused"
    assert not broken.loc[worker3, "DNAT to pod"] and pd.isna(broken.loc[worker3, "chained conflist"])

    fixed = wt.fix_all(lab).set_index("node")
    assert (fixed["curl"] == 200).all(), fixed
    assert fixed["portmap"].all() and fixed["chained conflist"].notna().all()

    again = wt.reset(lab).set_index("node")
    pd.testing.assert_frame_equal(again, broken)


@pytest.mark.netns
def test_tables_and_attempts(lab):
    wt.reset(lab)
    worker2 = wt.node(lab, "worker2")
    table = wt.cni_bin_table(lab)
    assert set(table.index[table[worker2].notna()]) == {"loopback", wt.primary_plugin(lab)}
    net_d = wt.net_d_table(lab).set_index("node")
    assert net_d["chains portmap"].tolist() == [True, True, True, False]
    attempts = wt.watch_attempts(lab, wt.pod_name(lab, "worker2"), count=3)
    gaps = pd.Series(attempts).diff().dropna()
    earliest, latest = measured.retry_gap_bounds(0.3)   # upstream's back-off and sync tick, at this back-off
    assert gaps.between(earliest * 0.95, latest + 0.3).all(), gaps.tolist()
    assert isinstance(wt.try_curl(lab, worker2), ConnectionRefused)
