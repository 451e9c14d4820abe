"""The checks of one node's hostPort plumbing, from the binary to the answer: portmap-binary, cni-config,
hostport-dnat and hostport-reach. Each returns one finding (FINDING_COLUMNS)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import iptables
from ..cluster import Cluster
from ..iptables.ports import in_ports
from ..model import cni as cni_rules
from ..model.cni import CNI_BIN, NET_D
from ..model.pods import HostPort
from ..model.portmap import HOSTPORT_PREFIX
from . import fixes
from .nodes import NodeState, connects

FINDING_COLUMNS = ["node", "check", "ok", "message", "evidence", "fix"]
#: How a message names portmap's chains when it counts their rules ("CNI-HOSTPORT rules").
HOSTPORT_CHAINS = HOSTPORT_PREFIX.rstrip("-")
#: portmap's nftables chain hooked at prerouting (dstnat), from which a packet to the node reaches its DNATs.
NFT_HOOK_CHAIN = "prerouting"


def finding(node: str, check: str, ok: bool, message: str, fix: str = "", evidence: str = "") -> dict[str, Any]:
    """One finding: what was checked, whether it is fine, in words, what was read that says so, and the fix."""
    return {"node": node, "check": check, "ok": ok, "message": message, "evidence": evidence,
            "fix": "" if ok else fix}


def column(rules: pd.DataFrame, *names: str) -> pd.Series:
    """The first of `names` that `rules` has as a column, else a column of None."""
    for name in names:
        if name in rules:
            return rules[name]
    return pd.Series([None] * len(rules), index=rules.index, dtype=object)


def _listing(folder: str, files: list[str] | None) -> str:
    return f"ls {folder}: " + ("(no such folder)" if files is None else " ".join(files) or "(empty)")


# -- portmap-binary ------------------------------------------------------------------------
def check_portmap(lab: Cluster, state: NodeState, states: list[NodeState], stuck: str) -> dict[str, Any]:
    """Is portmap in the node's /opt/cni/bin, executable?"""
    evidence = _listing(CNI_BIN, state.bin_files)
    if state.portmap_executable:
        return finding(state.name, "portmap-binary", True, f"{CNI_BIN}/portmap is present and executable.",
                       evidence=evidence)
    files = state.bin_files
    has = "(the folder is missing)" if files is None else f"(it holds: {', '.join(files) or 'nothing'})"
    what = "is not executable" if files and "portmap" in files else "is missing"
    message = f"{CNI_BIN}/portmap {what} {has}; a chained portmap fails every sandbox.{stuck}"
    return finding(state.name, "portmap-binary", False, message, fixes.portmap_fix(lab, states, state.name), evidence)


# -- cni-config ----------------------------------------------------------------------------
def _config_evidence(state: NodeState) -> str:
    chosen = state.chosen
    return _listing(NET_D, state.net_d) + (f"; the runtime's choice: {chosen.file}, plugins "
                                           f"{' -> '.join(chosen.types)}" if chosen else "")


def _no_network(state: NodeState, evidence: str) -> dict[str, Any]:
    """The finding for a node that has no network: its first config is invalid, or there is none."""
    rejected = state.choice.rejected
    if rejected is not None:
        return finding(state.name, "cni-config", False,
                       f"The first config file, {rejected.file}, is invalid ({rejected.error}): the runtime loads "
                       f"no network at all and every new sandbox fails with '{cni_rules.NOT_INITIALIZED}' "
                       "(containerd does not skip to the next file).",
                       f"Fix or remove {state.name}:{NET_D}/{rejected.file}; the runtime reloads the folder "
                       "by itself.", evidence)
    return finding(state.name, "cni-config", False,
                   f"No CNI config in {NET_D} (entries: {', '.join(state.net_d) or 'none'}).",
                   "Install the CNI provider (on kind: Cilium's DaemonSet writes 05-cilium.conflist).", evidence)


def check_config(lab: Cluster, state: NodeState, states: list[NodeState], pods: list[HostPort]) -> dict[str, Any]:
    """Which config does the runtime pick, and does it chain portmap?"""
    evidence = _config_evidence(state)
    chosen = state.chosen
    if chosen is None:  # also when the first file is invalid (state.choice.rejected)
        return _no_network(state, evidence)
    chain = " -> ".join(chosen.types)
    if chosen.chains_portmap:
        return finding(state.name, "cni-config", True,
                       f"The runtime picks {chosen.file} (plugins: {chain}); it chains portmap.", evidence=evidence)
    why = ("chains portmap without capabilities.portMappings, so portmap gets no hostPorts"
           if chosen.portmap else "does not chain portmap, so hostPorts are ignored")
    message = f"The runtime picks {chosen.file} (plugins: {chain}); it {why}."
    return finding(state.name, "cni-config", False, message, fixes.config_fix(lab, states, state.name, pods), evidence)


# -- hostport-dnat -------------------------------------------------------------------------
def trace_hostport(state: NodeState, hp: HostPort) -> pd.DataFrame:
    """The nat PREROUTING path of a packet from outside to nodeIP:hostPort (kindlab.iptables.trace)."""
    if state.nat is None or "PREROUTING" not in set(state.nat.chains["chain"].astype(str)):
        return pd.DataFrame(columns=iptables.STEP_COLUMNS)
    return iptables.trace(state.nat, "nat", "PREROUTING", protocol=hp.protocol.lower(), dst=state.ip,
                          dst_port=hp.host_port, dst_local=True)


def _covers(value: Any, port: int) -> bool:
    """True when a dport / dports value (80, "80", "80,443", "1000:2000", [80]) covers `port` (iptables.ports)."""
    if isinstance(value, list | tuple | set):
        value = ",".join(map(str, value))
    elif pd.isna(value):
        return False
    return in_ports(port, str(value)) is True


def dnat_rule(rules: pd.DataFrame, hp: HostPort) -> pd.DataFrame:
    """The nat rules that DNAT `hp.host_port` to podIP:containerPort."""
    dest = f"{hp.pod_ip}:{hp.container_port}"
    ports = column(rules, "dport").map(lambda v: _covers(v, hp.host_port)).astype(bool)
    ports |= column(rules, "dports").map(lambda v: _covers(v, hp.host_port)).astype(bool)
    mask = (column(rules, "target") == "DNAT") & (column(rules, "to_destination").astype(str) == dest) & ports
    proto = column(rules, "protocol")
    mask &= proto.isna() | (proto.astype(str).str.lower() == hp.protocol.lower())
    return rules[mask]


def _trace_evidence(state: NodeState, hp: HostPort, steps: pd.DataFrame) -> str:
    return (f"iptables -t nat, a packet to {state.ip}:{hp.host_port}/{hp.protocol} from PREROUTING: "
            + (" -> ".join(f"{c}: {t}" for c, t in zip(steps["chain"], steps["target"], strict=True))
               if len(steps) else "no rule matches"))


def _no_dnat(state: NodeState, rules: pd.DataFrame, where: str, recreate: str, evidence: str) -> dict[str, Any]:
    """The finding for a hostPort without a DNAT rule: the config chains portmap too late, or not at all."""
    count = int(column(rules, "chain").astype(str).str.startswith(HOSTPORT_PREFIX).sum()) if len(rules) else 0
    chosen = state.chosen
    if chosen is not None and chosen.chains_portmap:
        message = (f"{where}: no DNAT rule ({count} {HOSTPORT_CHAINS} rules on the node). The chosen config "
                   f"{chosen.file} chains portmap now, but the pod's network was set up before it did: a running "
                   "pod's network is not redone, so the pod must be recreated.")
        fix = f"{fixes.capitalized(recreate)}: its new sandbox runs portmap."
    else:
        message = (f"{where}: no DNAT rule ({count} {HOSTPORT_CHAINS} rules on the node): the chosen CNI config does "
                   "not chain portmap. After fixing the config the pod must still be recreated.")
        fix = f"First fix cni-config on {state.name}; then {recreate}."
    return finding(state.name, "hostport-dnat", False, message, fix, evidence)


def _nft_reached(rules: pd.DataFrame, start: str = NFT_HOOK_CHAIN) -> set[tuple[str, str, str]]:
    """(family, table, chain) of every chain a packet can reach from each table's `start` chain by jump or goto."""
    edges: dict[tuple[str, str, str], set[str]] = {}
    for family, table, chain, target in zip(column(rules, "family").astype(str), column(rules, "table").astype(str),
                                            column(rules, "chain").astype(str), column(rules, "target"), strict=True):
        edges.setdefault((family, table, chain), set()).add(str(target))
    todo = [(f, t, c) for f, t, c in edges if c == start]
    seen: set[tuple[str, str, str]] = set()
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend((node[0], node[1], nxt) for nxt in edges.get(node, ()))
    return seen


def nft_dnat_rule(state: NodeState, hp: HostPort) -> pd.DataFrame:
    """portmap's nftables rules (state.nft) that DNAT a packet to nodeIP:hostPort to podIP:containerPort and that
    such a packet reaches from the table's prerouting chain (a hostIP rule only for the node's IP)."""
    rules = state.nft
    if rules is None or not len(rules):
        return pd.DataFrame(columns=iptables.NFT_RULE_COLUMNS)
    found = dnat_rule(rules, hp)
    reached = _nft_reached(rules)
    keep = [(str(f), str(t), str(c)) in reached and (pd.isna(d) or str(d) == str(state.ip))
            for f, t, c, d in zip(found["family"], found["table"], found["chain"], column(found, "destination"),
                                  strict=True)]
    return found[keep]


def check_dnat(state: NodeState, hp: HostPort, lab: Cluster | None = None) -> dict[str, Any]:
    """Does a packet to nodeIP:hostPort get DNATed to podIP:containerPort, by the node's iptables nat table or by
    portmap's nftables table? The finding says which backend served it."""
    dest = f"{hp.pod_ip}:{hp.container_port}"
    where = f"hostPort {hp.host_port}/{hp.protocol} of pod {hp.pod} (-> {dest})"
    steps = trace_hostport(state, hp)
    last = steps.iloc[-1] if len(steps) else None
    nft = nft_dnat_rule(state, hp)
    evidence = _trace_evidence(state, hp, steps) + "".join(
        f"; nft {r.family} {r.table} {r.chain}: {r.rule}" for r in nft.itertuples())
    if last is not None and last["target"] == "DNAT" and str(last["to_destination"]) == dest:
        return finding(state.name, "hostport-dnat", True,
                       f"{where}: DNAT in iptables chain {last['chain']} (portmap's iptables backend).",
                       evidence=evidence)
    if len(nft) and (last is None or last["target"] != "DNAT"):
        first = nft.iloc[0]
        return finding(state.name, "hostport-dnat", True,
                       f"{where}: DNAT in nftables table {first['family']} {first['table']}, chain {first['chain']} "
                       "(portmap's nftables backend; iptables-save does not show it).", evidence=evidence)
    recreate = f"delete and re-apply pod {hp.pod} ({fixes.reapply(lab, hp.pod)})"
    if last is not None and last["target"] == "DNAT":
        return finding(state.name, "hostport-dnat", False,
                       f"{where}: the node sends it to {last['to_destination']} instead (a stale rule?).",
                       f"Delete the pod that owns {last['to_destination']}, then {recreate}.", evidence)
    rules = state.nat.rules if state.nat is not None else pd.DataFrame()
    found = dnat_rule(rules, hp) if len(rules) else rules
    if len(found):
        return finding(state.name, "hostport-dnat", False,
                       f"{where}: a DNAT rule exists in chain {found['chain'].iloc[0]} but a packet from PREROUTING "
                       "does not reach it.",
                       f"{fixes.capitalized(recreate)} so portmap writes its rules again.", evidence)
    return _no_dnat(state, rules, where, recreate, evidence)


# -- hostport-reach ------------------------------------------------------------------------
def check_reach(lab: Cluster, state: NodeState, hp: HostPort) -> dict[str, Any]:
    """From inside the node: does a TCP connect to hostPort on the node IP, and on 127.0.0.1, succeed?

    The node IP must answer where the DNAT is there; 127.0.0.1 answers only where portmap's OUTPUT jump and
    route_localnet let loopback traffic be DNATed, which many setups do not (it is reported, not failed).
    """
    matrix = {f"{ip}:{hp.host_port}": connects(lab, state.name, ip, hp.host_port)
              for ip in (state.ip, "127.0.0.1") if ip}
    seen = ", ".join(f"{where} {'connects' if ok else 'refused or silent'}" for where, ok in matrix.items())
    ok = bool(matrix.get(f"{state.ip}:{hp.host_port}"))
    return finding(state.name, "hostport-reach", ok,
                   f"From inside {state.name}, pod {hp.pod}'s hostPort {hp.host_port}/TCP: {seen}.",
                   "See hostport-dnat: the DNAT to the pod is missing or the pod does not listen on "
                   f"{hp.container_port}.",
                   " ".join(f"{where}={'open' if ok else 'closed'}" for where, ok in matrix.items()))
