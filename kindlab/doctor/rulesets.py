"""The checks of a node's rules and ports as a whole: stale-dnat, hostport-conflict and nodeport-range,
iptables-backend and nft-hostport. Each returns findings (checks.FINDING_COLUMNS)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import iptables
from ..model.pods import HostPort
from ..model.portmap import DNAT_CHAIN, NFT_FAMILY, NFT_TABLE, POD_CHAIN_PREFIX, is_portmap_chain
from .checks import column, finding
from .nodes import NodeState

#: kube-apiserver's default --service-node-port-range: kube-proxy's NodePort rules live there.
NODEPORT_RANGE = (30000, 32767)
#: How a message shows the command that lists portmap's nftables table.
NFT_LIST = f"nft list table {NFT_FAMILY} {NFT_TABLE}"


# -- stale-dnat ----------------------------------------------------------------------------
def _stale_chains(dnat: pd.DataFrame, live_ips: set[str]) -> dict[str, list[str]]:
    """portmap's per-pod chains whose DNAT goes to no live pod: chain -> those destinations."""
    stale: dict[str, list[str]] = {}
    for chain, dest in zip(dnat["chain"].astype(str), dnat["to_destination"].astype(str), strict=True):
        if dest.rsplit(":", 1)[0] not in live_ips:
            stale.setdefault(chain, []).append(dest)
    return stale


def _removal(rules: pd.DataFrame, chain: str) -> str:
    """The iptables commands that delete the jumps to a pod's chain, then flush and delete it."""
    jumps = rules[(column(rules, "chain").astype(str) == DNAT_CHAIN) & (column(rules, "target").astype(str) == chain)]
    delete = [f"iptables -t nat {r.replace('-A ', '-D ', 1)}" for r in jumps["rule"].astype(str)]
    return " && ".join([*delete, f"iptables -t nat -F {chain}", f"iptables -t nat -X {chain}"])


def check_stale_dnat(state: NodeState, live_ips: set[str]) -> list[dict[str, Any]]:
    """portmap's per-pod chains (CNI-DN-*) whose DNAT goes to no live pod of the node.

    They are left when a sandbox's CNI DEL never ran (containernetworking/plugins#683): the hostPort is then
    sent to an address that is nobody's, or the next pod that gets it.
    """
    rules = state.nat.rules if state.nat is not None else pd.DataFrame(columns=iptables.RULE_COLUMNS)
    chains = column(rules, "chain").astype(str)
    dnat = rules[chains.str.startswith(POD_CHAIN_PREFIX) & (column(rules, "target") == "DNAT")]
    stale = _stale_chains(dnat, live_ips)
    if not stale:
        return [finding(state.name, "stale-dnat", True, f"Every portmap DNAT rule ({len(dnat)}) goes to a live pod.",
                        evidence=f"live pod IPs on {state.name}: {' '.join(sorted(live_ips)) or 'none'}")]
    return [finding(state.name, "stale-dnat", False,
                    f"Chain {chain} DNATs to {', '.join(dests)}, which is no live pod's IP on {state.name}: a "
                    "sandbox whose CNI DEL never ran left it, and a new pod given that IP would receive this "
                    "hostPort's traffic.", f"Remove it on {state.name}: {_removal(rules, chain)}.",
                    "; ".join(rules[chains == chain]["rule"].astype(str)))
            for chain, dests in sorted(stale.items())]


# -- hostport-conflict, nodeport-range -------------------------------------------------------
def _overlap(a: HostPort, b: HostPort) -> bool:
    """True when two hostPorts cannot both be had on one node (same port and protocol, addresses that meet)."""
    return (a.host_port, a.protocol.upper()) == (b.host_port, b.protocol.upper()) and (
        a.host_ip in (None, "0.0.0.0") or b.host_ip in (None, "0.0.0.0") or a.host_ip == b.host_ip)


def _conflict(node: str, a: HostPort, b: HostPort) -> dict[str, Any]:
    return finding(node, "hostport-conflict", False,
                   f"Pods {a.pod} and {b.pod} both ask hostPort {a.host_port}/{a.protocol} on {node}: "
                   "only one can have it; the other is kept Pending by the scheduler, or rejected by "
                   "the kubelet (NodePorts) when its nodeName is set.",
                   "Give one of them another hostPort, or put it on another node.")


def _in_nodeport_range(node: str, hp: HostPort) -> dict[str, Any]:
    low, high = NODEPORT_RANGE
    return finding(node, "nodeport-range", False,
                   f"hostPort {hp.host_port} of pod {hp.pod} is inside the NodePort range {low}-{high}: a "
                   "Service's NodePort on that port (kube-proxy's KUBE-NODEPORTS) can take the traffic.",
                   f"Use a hostPort outside {low}-{high} (kube-apiserver's --service-node-port-range).")


def check_hostport_use(node: str, ports: list[HostPort]) -> list[dict[str, Any]]:
    """Two pods asking the same hostPort on one node, and hostPorts inside the NodePort range."""
    out: list[dict[str, Any]] = []
    low, high = NODEPORT_RANGE
    for i, a in enumerate(ports):
        out.extend(_conflict(node, a, b) for b in ports[i + 1:] if a.pod != b.pod and _overlap(a, b))
        if low <= a.host_port <= high:
            out.append(_in_nodeport_range(node, a))
    if not out and ports:
        out.append(finding(node, "hostport-conflict", True,
                           f"{len(ports)} hostPort(s) on {node}, no two alike, none in the NodePort range."))
    return out


# -- iptables-backend ----------------------------------------------------------------------
def _holders(rulesets: dict[str, iptables.Ruleset]) -> dict[str, set[str]]:
    """Who keeps rules in which backend: "portmap" and "kube-proxy" -> the backends holding their chains."""
    holders: dict[str, set[str]] = {}
    for name, rules in rulesets.items():
        chains = set(rules.chains["chain"].astype(str)) | set(rules.rules["chain"].astype(str))
        if any(is_portmap_chain(c) for c in chains):
            holders.setdefault("portmap", set()).add(name)
        if any(c.startswith("KUBE-") for c in chains):
            holders.setdefault("kube-proxy", set()).add(name)
    return holders


def check_backends(node: str, rulesets: dict[str, iptables.Ruleset]) -> list[dict[str, Any]]:
    """Are portmap's and kube-proxy's rules in one iptables backend, the one the node's tools read?"""
    holders = _holders(rulesets)
    used = set().union(*holders.values()) if holders else set()
    evidence = "; ".join(f"{name}: {len(rules.rules)} nat rules" for name, rules in sorted(rulesets.items()))
    if len(used) <= 1:
        where = next(iter(used), None)
        return [finding(node, "iptables-backend", True,
                        f"Rules in one iptables backend ({where or 'none with hostPort or kube-proxy rules'}; "
                        f"backends seen: {', '.join(sorted(rulesets)) or 'none'}).", evidence=evidence)]
    said = "; ".join(f"{who} in {', '.join(sorted(b))}" for who, b in sorted(holders.items()))
    return [finding(node, "iptables-backend", False,
                    f"Rules are split between iptables backends ({said}): each backend's rules are evaluated, but "
                    "a tool that reads the other one (iptables-save of the wrong variant) does not show them, and "
                    "their order against each other is not what either tool says (kubernetes/kubernetes#107965).",
                    "Run every component with the same iptables variant (update-alternatives --set iptables ...), "
                    "then flush the other backend's nat table.", evidence)]


# -- nft-hostport --------------------------------------------------------------------------
def nft_dnat(rules: pd.DataFrame) -> pd.DataFrame:
    """The DNAT rules of an nftables rule frame (iptables.parse_nft)."""
    return rules[column(rules, "target").astype(str) == "DNAT"]


def _nft_delete(rule: Any) -> str:
    """The command that deletes one nftables rule, by its handle."""
    return f"nft delete rule {rule.family} {rule.table} {rule.chain} handle {rule.handle}"


def check_nft(node: str, rules: pd.DataFrame | None, live_ips: set[str]) -> dict[str, Any]:
    """portmap's nftables rules (nodes.nft_hostport): reported where they exist (iptables-save does not show them),
    their DNATs checked against the node's live pods as stale-dnat checks portmap's iptables chains."""
    if rules is None:
        return finding(node, "nft-hostport", True, "nft is not installed: portmap uses iptables here.",
                       evidence="command -v nft: not found")
    if not len(rules):
        return finding(node, "nft-hostport", True, f"No nftables table {NFT_TABLE}: portmap's rules, if any, are "
                       "in iptables (see hostport-dnat).", evidence=f"{NFT_LIST}: none")
    dnat = nft_dnat(rules)
    stale = dnat[[str(dest).rsplit(":", 1)[0].strip("[]") not in live_ips for dest in dnat["to_destination"]]]
    evidence = "; ".join(f"{r.family} {r.chain}: {r.rule}" for r in dnat.itertuples()) or \
        f"table {NFT_TABLE} with no dnat rule"
    if len(stale):
        dests = ", ".join(sorted(set(stale["to_destination"].astype(str))))
        return finding(node, "nft-hostport", False,
                       f"portmap's nftables table {NFT_TABLE} DNATs to {dests}, no live pod's IP on {node} "
                       f"({len(stale)} rule(s)): a sandbox whose CNI DEL never ran left them, and a new pod given "
                       "that IP would receive the hostPort's traffic (iptables-save does not show them).",
                       f"Remove them on {node}: {' && '.join(_nft_delete(r) for r in stale.itertuples())}.", evidence)
    return finding(node, "nft-hostport", True,
                   f"portmap keeps its rules in nftables table {NFT_TABLE} ({len(dnat)} dnat rule(s)), every one to "
                   f"a live pod: read them with `{NFT_LIST}`, not iptables-save.", evidence=evidence)
