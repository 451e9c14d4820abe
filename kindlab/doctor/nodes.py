"""What doctor reads, all through ``lab.exec`` and the API: a node's CNI folders and nat table, its iptables
backends and portmap's nftables table, and the pods and events about the node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import iptables
from ..cluster import Cluster
from ..errors import ExecError, KindlabError
from ..model import cni as cni_rules
from ..model import pods as pod_rules
from ..model.cni import CNI_BIN, NET_D, NetworkConfig
from ..model.pods import SANDBOX_FAILED, HostPort
from ..model.portmap import NFT_TABLE

#: Lists the nat table of each iptables backend the node has: legacy only where its tables already exist
#: (reading them must not load the legacy modules), nft where iptables-nft-save is installed.
BACKENDS_SCRIPT = ("if [ -e /proc/net/ip_tables_names ] && command -v iptables-legacy-save >/dev/null; then "
                   "echo '#kindlab legacy'; iptables-legacy-save -t nat 2>/dev/null; fi; "
                   "if command -v iptables-nft-save >/dev/null; then echo '#kindlab nft'; "
                   "iptables-nft-save -t nat 2>/dev/null; fi")
#: Lists portmap's nftables tables (CNI plugins v1.6 and later) as JSON, each family under a `#kindlab FAMILY` line
#: (nothing below it where the table does not exist), which `iptables-save` never shows.
NFT_SCRIPT = ("if command -v nft >/dev/null; then for family in ip ip6; do echo \"#kindlab $family\"; "
              f"nft -j list table $family {NFT_TABLE} 2>/dev/null; echo; done; else echo '#kindlab no nft'; fi")


# -- a node's CNI folders and nat table ---------------------------------------------------------
@dataclass
class NodeState:
    """What doctor read from one node."""

    name: str
    bin_files: list[str] | None  # None: /opt/cni/bin is missing
    portmap_executable: bool
    choice: cni_rules.Choice  # the runtime's choice in /etc/cni/net.d
    nat: iptables.Ruleset | None = None
    ip: str | None = None
    nft: pd.DataFrame | None = None  # portmap's nftables rules (iptables.NFT_RULE_COLUMNS); None: no nft

    @property
    def net_d(self) -> list[str]:
        """The files of /etc/cni/net.d."""
        return self.choice.files

    @property
    def chosen(self) -> NetworkConfig | None:
        """The config the runtime uses: the first file, when it is valid."""
        return self.choice.chosen


def _ls(lab: Cluster, node: str, folder: str) -> list[str] | None:
    try:
        return [line.strip() for line in lab.exec(node, ["ls", "-1A", folder]).splitlines() if line.strip()]
    except ExecError:
        return None


def _executable(lab: Cluster, node: str, path: str) -> bool:
    try:
        lab.exec(node, ["test", "-x", path])
    except ExecError:
        return False
    return True


def cni_choice(lab: Cluster, node: str) -> cni_rules.Choice:
    """The runtime's choice of network config on `node`, read through lab.exec (model.cni's rule)."""
    def read(name: str) -> str | None:
        try:
            return lab.exec(node, ["cat", f"{NET_D}/{name}"])
        except ExecError:
            return None
    return cni_rules.choose(_ls(lab, node, NET_D) or [], read)


def nat_rules(lab: Cluster, node: str) -> iptables.Ruleset:
    """The node's nat table, via `iptables-save -c -t nat` (kindlab.iptables.node_rules)."""
    return iptables.node_rules(lab, node, table="nat")


def read_node(lab: Cluster, node: str, need_nat: bool) -> NodeState:
    """Everything doctor needs from one node, read through lab.exec."""
    files = _ls(lab, node, CNI_BIN)
    executable = files is not None and "portmap" in files and _executable(lab, node, f"{CNI_BIN}/portmap")
    return NodeState(node, files, executable, cni_choice(lab, node),
                     nat_rules(lab, node) if need_nat else None, lab.node_ip(node) if need_nat else None,
                     nft_hostport(lab, node) if need_nat else None)


# -- a node's other rules, and its ports -------------------------------------------------------
def _sections(text: str) -> dict[str, list[str]]:
    """BACKENDS_SCRIPT's output split at its `#kindlab NAME` lines: NAME -> the lines below it."""
    parts: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#kindlab "):
            current = parts.setdefault(line.split(" ", 1)[1], [])
        elif current is not None:
            current.append(line)
    return parts


def iptables_backends(lab: Cluster, node: str) -> dict[str, iptables.Ruleset]:
    """The node's nat table per iptables backend it has ("legacy", "nft"); {} where it cannot tell."""
    try:
        text = lab.exec(node, ["sh", "-c", BACKENDS_SCRIPT], check=False)
    except ExecError:
        return {}
    out = {}
    for name, lines in _sections(text).items():
        try:
            out[name] = iptables.parse("\n".join(lines) + "\n")
        except KindlabError:
            continue
    return out


def nft_hostport(lab: Cluster, node: str) -> pd.DataFrame | None:
    """portmap's nftables rules on the node, both families (iptables.parse_nft's frame; empty where it has no
    table); None where nft is not installed or cannot be run."""
    try:
        text = lab.exec(node, ["sh", "-c", NFT_SCRIPT], check=False)
    except ExecError:
        return None
    sections = _sections(text)
    if "no nft" in sections or not sections:
        return None
    frames = []
    for lines in sections.values():
        body = "\n".join(lines).strip()
        if body:
            try:
                frames.append(iptables.parse_nft(body))
            except KindlabError:
                continue
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else iptables.parse_nft('{"nftables": []}')


def connects(lab: Cluster, node: str, ip: str, port: int) -> bool:
    """A TCP connect from inside the node's network namespace to ip:port (bash's /dev/tcp), within 2 s."""
    try:
        lab.exec(node, ["timeout", "2", "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"], timeout=10)
    except ExecError:
        return False
    return True


# -- the node's pods --------------------------------------------------------------------------
def host_ports(pods: list[dict[str, Any]], node: str) -> list[HostPort]:
    """The hostPorts of the node's pods (model.pods; hostNetwork pods need no DNAT and are left out)."""
    return pod_rules.node_host_ports(pods, node)


def live_ips(pods: list[dict[str, Any]], node: str) -> set[str]:
    """The IPs of the node's pods that still hold a sandbox (not Succeeded or Failed)."""
    return {ip for p in pods if pod_rules.node_name(p) == node and pod_rules.phase(p) not in ("Succeeded", "Failed")
            and (ip := pod_rules.pod_ip(p))}


def _stuck_note(pod: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """' Pod P is Pending: <its last sandbox failure>.' for one pod that is not Running."""
    name, status = pod["metadata"]["name"], pod.get("status") or {}
    last = pod_rules.last_event(pod_rules.sandbox_failure_events(events, name, pod_rules.uid(pod)))
    count = pod_rules.sandbox_failure_count(events, name, pod_rules.uid(pod))
    why = f": {count} failed sandbox attempts, the last {SANDBOX_FAILED}: {pod_rules.message(last)}" if last else ""
    return f" Pod {name} is {status.get('phase') or 'Pending'}{why}."


def stuck(pods: list[dict[str, Any]], events: list[dict[str, Any]], node: str) -> str:
    """' Pod P is Pending: <its last sandbox failure>.' for the node's pods that are not Running."""
    return "".join(_stuck_note(p, events) for p in pods
                   if (p.get("spec") or {}).get("nodeName") == node
                   and (p.get("status") or {}).get("phase") != "Running")
