"""kindlab.walkthrough: the scenario helpers, on a stand-in lab and (as root) on the real netns lab."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from kindlab import topology
from kindlab import walkthrough as wt
from kindlab.errors import ConnectionRefused, NotFound

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "kind" / "config"
# As in test_notebooks: a cluster name and a copy of kind/ may be given, to run beside another lab.
LAB_NAME = os.environ.get("KINDLAB_TEST_CLUSTER", "kind")
LAB_CONFIG = os.environ.get("KINDLAB_TEST_CONFIG", str(CONFIG))


class FakeLab:
    """Just enough of a Cluster for the helpers that read names, mounts and command output."""

    backend = "netns"

    def __init__(self, name: str = "kind", outputs: dict[str, str] | None = None):
        self.name = name
        self.topology = topology.load(CONFIG, name=name)
        self.outputs = outputs or {}
        self.commands: list[tuple[str, object]] = []

    def check_node(self, node: str) -> str:
        if node not in [n.name for n in self.topology.nodes]:
            raise NotFound(node)
        return node

    def node_names(self) -> list[str]:
        return [n.name for n in self.topology.nodes]

    def exec(self, node: str, cmd, check: bool = True, **_: object) -> str:
        self.commands.append((node, cmd))
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


@pytest.mark.parametrize("files, chosen", [
    (["05-cilium.conf", "000-cilium-portmap.conflist"], "000-cilium-portmap.conflist"),
    (["05-cilium.conf"], "05-cilium.conf"),
    (["README", "10-b.json", "10-a.conf"], "10-a.conf"),
    (["Z.conf", "a.conf"], "Z.conf"),  # byte order: upper case first
    ([], None),
])
def test_chosen_config_is_the_first_in_byte_order(files, chosen):
    assert wt.chosen_config(files) == chosen


def test_echo_hostname():
    body = "Welcome to echo-server!  Here's what I know.\n\n-> My hostname is: echo-kind-worker\n\n-> Requesting IP"
    assert wt.echo_hostname(body) == "echo-kind-worker"
    assert wt.echo_hostname("nothing here") is None


def test_cni_versions_reads_portmap_and_dpkg():
    lab = FakeLab(outputs={"dpkg-query": "containernetworking-plugins 1.1.1+ds1-3+b5\n", "[ -x": "yes\n",
                           "/opt/cni/bin/portmap 2>&1": "CNI portmap plugin version unknown\n"
                                                        "CNI protocol versions supported: 0.1.0, 0.4.0, 1.0.0\n"})
    got = wt.cni_versions(lab, "kind-worker")
    assert got == {"package": "containernetworking-plugins 1.1.1+ds1-3+b5",
                   "portmap says": "CNI portmap plugin version unknown",
                   "CNI protocol versions": "0.1.0, 0.4.0, 1.0.0"}


def test_requesting_ip():
    assert wt.requesting_ip("-> Requesting IP: 172.18.0.1:51598\n\n-> Request Headers") == "172.18.0.1"
    assert wt.requesting_ip("-> Requesting IP: [fd00::1]:443\n") == "fd00::1"
    assert wt.requesting_ip("no such line") is None


# -- on the real lab ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab():
    from kindlab import backends

    if backends.select_backend() != "netns" or os.geteuid() != 0:
        pytest.skip("needs root and the netns backend")
    lab = wt.ensure_cluster(LAB_CONFIG, name=LAB_NAME, backend="netns", backoff=0.3)
    yield lab
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
    assert gaps.between(0.3 * 0.95, 0.3 * 1.5 + 0.3).all(), gaps.tolist()
    assert isinstance(wt.try_curl(lab, worker2), ConnectionRefused)
