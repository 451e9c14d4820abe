"""kindlab.iptables.parse_nft / node_nft_rules, and doctor's reading of portmap's nftables rules (no root needed).

Fixtures in tests/data/nftables are real `nft -j` output with `nft list` of the same ruleset beside it: portmap
1.9.1's nftables backend run by hand and under the real kubelet, and nft's own load of other forms (its README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import TextLab

from kindlab import doctor, iptables
from kindlab.doctor.nodes import NodeState
from kindlab.errors import KindlabError
from kindlab.iptables import NftParseError
from kindlab.model import cni as cni_rules
from kindlab.model.pods import HostPort

DATA = Path(__file__).parent / "data" / "nftables"
PAIRS = sorted(p.stem for p in DATA.glob("*.json"))
NODE_IP = "172.18.0.3"
POD_A, POD_B = "192.168.1.5", "192.168.1.7"
ID_A = "5f0c3a9e1d2b47c8a6e4f10b9d8c7a6e5f4d3c2b1a09f8e7d6c5b4a392817065"
ID_B = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
EMPTY_NAT = ("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
             "COMMIT\n")


def nft(name: str) -> pd.DataFrame:
    return iptables.parse_nft((DATA / f"{name}.json").read_text())


def listed_rules(name: str) -> list[str]:
    """The rule lines of `nft list table` (not the chains' `type ... hook ...` lines)."""
    return [line.strip() for line in (DATA / f"{name}.txt").read_text().splitlines()
            if line.startswith("\t\t") and not line.strip().startswith("type ")]


# -- the frame ------------------------------------------------------------------------------
def test_the_fixtures_are_there():
    assert PAIRS == ["forms-inet", "lab-worker-ip", "portmap-ip", "portmap-ip6"]


@pytest.mark.parametrize("name", PAIRS)
def test_each_rule_is_written_as_nft_list_prints_it(name):
    rules = nft(name)
    assert list(rules["rule"]) == listed_rules(name)
    assert list(rules.columns) == iptables.NFT_RULE_COLUMNS
    assert iptables.NFT_RULE_COLUMNS[:len(iptables.RULE_COLUMNS)] == iptables.RULE_COLUMNS


def test_the_shared_columns_have_iptables_dtypes():
    ipt = iptables.parse(EMPTY_NAT.replace("COMMIT", "-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT "
                                                      "--to-destination 1.2.3.4:80\nCOMMIT")).rules
    rules = nft("portmap-ip")
    for name in iptables.RULE_COLUMNS:
        assert str(rules[name].dtype) == str(ipt[name].dtype), name
    both = pd.concat([ipt, rules[iptables.RULE_COLUMNS]], ignore_index=True)
    assert list(both.loc[both["target"] == "DNAT", "to_destination"]) == [
        "1.2.3.4:80", f"{POD_A}:8080", f"{POD_B}:8080", f"{POD_B}:53"]


def test_portmaps_rules_as_rows():
    rules = nft("portmap-ip")
    dnat = rules[rules["target"] == "DNAT"]
    assert set(rules["table"]) == {"cni_hostport"} and set(rules["family"]) == {"ip"}
    assert list(dnat["chain"]) == ["hostports"] * 3 and list(dnat["position"]) == [1, 2, 3]
    assert list(dnat["protocol"]) == ["tcp", "tcp", "udp"] and list(dnat["dport"]) == ["80", "8081", "5353"]
    assert list(dnat["destination"]) == [None, NODE_IP, None]   # the hostIP rule, only to that address
    assert list(dnat["to_destination"]) == [f"{POD_A}:8080", f"{POD_B}:8080", f"{POD_B}:53"]
    assert list(dnat["comment"]) == [ID_A, ID_B, ID_B] and list(dnat["handle"]) == [11, 18, 19]
    assert list(dnat["matches"]) == [("tcp dport",), ("ip daddr", "tcp dport"), ("udp dport",)]
    assert dnat["packets"].isna().all() and dnat["dports"].isna().all() and dnat["target_options"].isna().all()
    jumps = rules[rules["chain"].isin(["prerouting", "output", "hostports_all"])]
    assert list(jumps["target"]) == ["hostip_hostports", "hostports", "hostports_all", "hostports_all"]
    assert not jumps["goto"].any() and list(jumps["match_options"].dropna()) == ["fib daddr type local"] * 2
    masq = rules[rules["chain"] == "masquerading"]
    assert (masq["target"] == "MASQUERADE").all() and list(masq["source"]) == [POD_A, "127.0.0.1", POD_B, "127.0.0.1"]
    assert list(masq["destination"]) == [POD_A, POD_A, POD_B, POD_B]


def test_ipv6_destinations_are_bracketed():
    rules = nft("portmap-ip6")
    dnat = rules[rules["target"] == "DNAT"]
    assert list(dnat["to_destination"]) == ["[fd00:10:244:1::5]:8080"] and set(rules["family"]) == {"ip6"}


def test_the_real_kubelets_pod_got_one_dnat():
    rules = nft("lab-worker-ip")
    dnat = rules[rules["target"] == "DNAT"]
    assert list(dnat["to_destination"]) == ["192.168.1.3:8080"] and len(dnat["comment"].iloc[0]) == 64


def test_other_forms_fill_the_same_columns():
    rules = nft("forms-inet").set_index(["chain", "position"])
    dnat = rules.loc[("pre", 1)]
    assert (dnat["in_interface"], dnat["protocol"], dnat["dports"], dnat["dport"]) == ("eth0", "tcp", "80,443", None)
    assert (dnat["packets"], dnat["bytes"], dnat["to_destination"], dnat["target_options"]) == (0, 0, "10.0.0.2:8080",
                                                                                                  "ip")
    ranged = rules.loc[("pre", 2)]
    assert (ranged["source"], ranged["protocol"], ranged["dport"]) == ("!10.0.0.0/8", "udp", "1000:2000")
    assert ranged["to_destination"] == "10.0.0.3"
    assert rules.loc[("pre", 3), "goto"] and rules.loc[("pre", 3), "target"] == "other"
    assert rules.loc[("pre", 4), "match_options"] == "ct state established,related"
    assert rules.loc[("pre", 4), "target"] == "ACCEPT"
    logged = rules.loc[("pre", 5)]
    assert (logged["dport"], logged["target"], logged["target_options"]) == ("!22", "other", 'log prefix "kindlab: "')
    assert (rules.loc[("post", 1), "out_interface"], rules.loc[("post", 1), "target_options"]) == ("eth1", "random")
    assert (rules.loc[("post", 2), "target"], rules.loc[("post", 2), "target_options"]) == ("SNAT", "ip to 172.18.0.3")
    assert pd.isna(rules.loc[("post", 3), "target"]) and rules.loc[("post", 3), "comment"] == "mark it"
    assert rules.loc[("post", 4), "target"] == "DROP" and rules.loc[("other", 1), "target"] == "RETURN"


def test_no_table_no_rules_and_bytes_are_read():
    tables = '{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "x", "handle": 1}}]}'
    empty = iptables.parse_nft(tables)
    assert empty.empty and list(empty.columns) == iptables.NFT_RULE_COLUMNS
    assert iptables.parse_nft((DATA / "portmap-ip.json").read_bytes()).equals(nft("portmap-ip"))


@pytest.mark.parametrize("text, says", [
    ("table ip cni_hostport {\n}", "not JSON (line 1, column 1"),
    ("", "not JSON"),
    ('{"rules": []}', 'no top-level "nftables" array'),
    ('[1, 2]', 'no top-level "nftables" array'),
    ('{"nftables": [3]}', "object 1: not a JSON object but int"),
    ('{"nftables": [{"rule": {"family": "ip", "table": "t", "expr": []}}]}', "object 1: a rule that cannot be read"),
    ('{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": {"accept": null}}}]}',
     "expr is not a list"),
    ('{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": 5, "expr": []}}]}', "chain is 5"),
    ("[" * 100000, "nested too deeply"),
])
def test_bad_input_is_a_clear_error(text, says):
    with pytest.raises(NftParseError, match="nft -j") as err:
        iptables.parse_nft(text)
    assert says in str(err.value) and isinstance(err.value, KindlabError)
    assert "nft -j list table ip cni_hostport" in str(err.value)


def test_an_unknown_statement_is_kept_as_its_json():
    doc = {"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 4,
                                  "expr": [{"quota": {"val": 5, "val_unit": "mbytes"}}, {"accept": None}]}}]}
    row = iptables.parse_nft(json.dumps(doc)).iloc[0]
    assert row["rule"] == 'quota {"val":5,"val_unit":"mbytes"} accept' and row["target"] == "ACCEPT"
    assert row["target_options"] == 'quota {"val":5,"val_unit":"mbytes"}'




def test_node_nft_rules_lists_portmaps_table_in_the_node():
    lab = TextLab((DATA / "lab-worker-ip.json").read_text())
    rules = iptables.node_nft_rules(lab, "kind-worker")
    (node, cmd), = lab.calls
    assert node == "kind-worker" and cmd[:2] == ["sh", "-c"]
    assert "nft -j list table ip cni_hostport 2>/dev/null || nft -j list tables" in cmd[2]
    assert "exit 127" in cmd[2] and rules.equals(nft("lab-worker-ip"))
    iptables.node_nft_rules(lab, "kind-worker2", family="ip6", table="other_table")
    assert "nft -j list table ip6 other_table" in lab.calls[-1][1][2]
    for bad in ({"family": "ip; reboot"}, {"table": "x y"}, {"table": "$(id)"}):
        with pytest.raises(KindlabError):
            iptables.node_nft_rules(lab, "kind-worker", **bad)
    assert len(lab.calls) == 2


# -- doctor -----------------------------------------------------------------------------------
def state(rules: pd.DataFrame | None, ip: str = NODE_IP, nat: str = EMPTY_NAT) -> NodeState:
    choice = cni_rules.choose([], lambda name: None)
    return NodeState("kind-worker", ["portmap"], True, choice, iptables.parse(nat), ip, rules)


def hostport(pod_ip: str, host_port: int = 80, container_port: int = 8080, protocol: str = "TCP") -> HostPort:
    return HostPort("echo", host_port, container_port, protocol, None, pod_ip, True)


def test_check_dnat_finds_the_nftables_dnat_and_names_the_backend():
    rules = nft("portmap-ip")
    ok = doctor.check_dnat(state(rules), hostport(POD_A))
    assert ok["ok"] and "nftables table ip cni_hostport, chain hostports" in ok["message"]
    assert "portmap's nftables backend" in ok["message"] and f"dnat to {POD_A}:8080" in ok["evidence"]
    assert doctor.check_dnat(state(rules), hostport(POD_B, 5353, 53, "UDP"))["ok"]
    assert doctor.check_dnat(state(rules), hostport(POD_B, 8081))["ok"]           # hostIP is the node's
    assert not doctor.check_dnat(state(rules, ip="172.18.0.9"), hostport(POD_B, 8081))["ok"]   # another node's
    assert not doctor.check_dnat(state(rules), hostport(POD_A, 81))["ok"]
    assert not doctor.check_dnat(state(None), hostport(POD_A))["ok"]


def test_an_nftables_dnat_no_packet_reaches_is_not_enough():
    rules = nft("portmap-ip")
    unhooked = rules[rules["chain"] != "prerouting"]
    missed = doctor.check_dnat(state(unhooked), hostport(POD_A))
    assert not missed["ok"] and "no DNAT rule" in missed["message"]


def test_check_dnat_says_iptables_when_iptables_serves_it():
    from test_doctor import portmap_nat

    served = doctor.check_dnat(state(nft("portmap-ip"), nat=portmap_nat(POD_A)), hostport(POD_A))
    assert served["ok"] and "iptables chain CNI-DN-" in served["message"] and "iptables backend" in served["message"]


def test_check_nft_flags_a_stale_dnat_with_the_commands_that_remove_it():
    rules = nft("portmap-ip")
    ok = doctor.check_nft("n", rules, {POD_A, POD_B})
    assert ok["ok"] and "3 dnat rule(s)" in ok["message"] and f"hostports: tcp dport 80 dnat to {POD_A}:8080" in \
        ok["evidence"]
    stale = doctor.check_nft("n", rules, {POD_A})
    assert not stale["ok"] and "2 rule(s)" in stale["message"] and f"{POD_B}:53, {POD_B}:8080" in stale["message"]
    assert stale["fix"] == ("Remove them on n: nft delete rule ip cni_hostport hostports handle 18 && "
                            "nft delete rule ip cni_hostport hostports handle 19.")
    assert doctor.check_nft("n", None, set())["ok"]
    none = doctor.check_nft("n", iptables.parse_nft('{"nftables": []}'), set())
    assert none["ok"] and "No nftables table" in none["message"]
    six = doctor.check_nft("n", nft("portmap-ip6"), {"fd00:10:244:1::5"})
    assert six["ok"], six


def test_nft_hostport_reads_both_families_and_tells_no_nft_apart():
    from kindlab.doctor import nodes

    class Lab:
        def __init__(self, text):
            self.text = text

        def exec(self, node, cmd, check=True):
            assert cmd == ["sh", "-c", nodes.NFT_SCRIPT]
            return self.text

    both = (f"#kindlab ip\n{(DATA / 'portmap-ip.json').read_text()}\n#kindlab ip6\n"
            f"{(DATA / 'portmap-ip6.json').read_text()}\n")
    rules = nodes.nft_hostport(Lab(both), "n")
    assert list(rules["family"].astype(str).value_counts().sort_index()) == [11, 6]
    assert nodes.nft_hostport(Lab("#kindlab no nft\n"), "n") is None
    assert nodes.nft_hostport(Lab("#kindlab ip\n\n#kindlab ip6\n\n"), "n").empty
