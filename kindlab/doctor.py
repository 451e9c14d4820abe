"""Diagnose hostPort on every node, as the seed's walkthrough does by hand.

Per node, through ``lab.exec`` only (so every backend works the same), these checks:

``portmap-binary``
    Is ``portmap`` in the node's ``/opt/cni/bin``, and executable?
``cni-config``
    Which file of ``/etc/cni/net.d`` the runtime picks (the first ``.conf``/``.conflist``/``.json`` in byte
    order; an invalid first file leaves the node without a network), and does it chain portmap with
    ``capabilities.portMappings``?
``hostport-dnat``
    For each Running pod of the node with a hostPort: does the node's nat table DNAT that hostPort
    to podIP:containerPort, reachable from PREROUTING?

``stale-dnat``
    Does every portmap ``CNI-DN-*`` DNAT go to a live pod of the node?
``hostport-conflict``, ``nodeport-range``
    Do two pods ask the same hostPort on a node; is a hostPort inside the NodePort range?
``iptables-backend``
    Are portmap's and kube-proxy's rules in one iptables backend (legacy or nft)?
``nft-hostport``
    Does portmap keep rules in nftables (its ``cni_hostport`` tables, plugins v1.6 and later), which
    ``iptables-save`` never shows, and do they DNAT to live pods only?
``hostport-reach``
    From inside the node, does a TCP connect to each hostPort on the node IP succeed (and, reported
    alongside, on 127.0.0.1)?

Each finding has node, check, ok, message and fix; the fix says what to copy where, and whether
the pod must be recreated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from . import iptables, scenario
from .cluster import Cluster
from .errors import ExecError, KindlabError
from .model import cni as cni_rules
from .model import pods as pod_rules
from .model.cni import CNI_BIN, NET_D, NetworkConfig
from .model.pods import SANDBOX_FAILED, HostPort

FINDING_COLUMNS = ["node", "check", "ok", "message", "evidence", "fix"]
#: kube-apiserver's default --service-node-port-range: kube-proxy's NodePort rules live there.
NODEPORT_RANGE = (30000, 32767)
#: Lists the nat table of each iptables backend the node has: legacy only where its tables already exist
#: (reading them must not load the legacy modules), nft where iptables-nft-save is installed.
BACKENDS_SCRIPT = ("if [ -e /proc/net/ip_tables_names ] && command -v iptables-legacy-save >/dev/null; then "
                   "echo '#kindlab legacy'; iptables-legacy-save -t nat 2>/dev/null; fi; "
                   "if command -v iptables-nft-save >/dev/null; then echo '#kindlab nft'; "
                   "iptables-nft-save -t nat 2>/dev/null; fi")


# -- what a node has ------------------------------------------------------------------------
@dataclass
class NodeState:
    """What doctor read from one node."""

    name: str
    bin_files: list[str] | None  # None: /opt/cni/bin is missing
    portmap_executable: bool
    choice: cni_rules.Choice  # the runtime's choice in /etc/cni/net.d
    nat: iptables.Ruleset | None = None
    ip: str | None = None

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
                     nat_rules(lab, node) if need_nat else None, lab.node_ip(node) if need_nat else None)


# -- pods -----------------------------------------------------------------------------------
def host_ports(pods: list[dict[str, Any]], node: str) -> list[HostPort]:
    """The hostPorts of the node's pods (model.pods; hostNetwork pods need no DNAT and are left out)."""
    return pod_rules.node_host_ports(pods, node)


def _column(rules: pd.DataFrame, *names: str) -> pd.Series:
    for name in names:
        if name in rules:
            return rules[name]
    return pd.Series([None] * len(rules), index=rules.index, dtype=object)


def _port_matches(value: Any, port: int) -> bool:
    """True when a dport / dports value (80, "80", "80,443", "1000:2000", [80]) covers `port`."""
    if not isinstance(value, list | tuple | set) and pd.isna(value):
        return False
    items = value if isinstance(value, list | tuple | set) else str(value).split(",")
    for item in items:
        text = str(item).strip()
        if ":" in text:
            lo, hi = text.split(":", 1)
            if lo.isdigit() and hi.isdigit() and int(lo) <= port <= int(hi):
                return True
        elif text.isdigit() and int(text) == port:
            return True
    return False


def dnat_rule(rules: pd.DataFrame, hp: HostPort) -> pd.DataFrame:
    """The nat rules that DNAT `hp.host_port` to podIP:containerPort."""
    dest = f"{hp.pod_ip}:{hp.container_port}"
    ports = _column(rules, "dport").map(lambda v: _port_matches(v, hp.host_port)).astype(bool)
    ports |= _column(rules, "dports").map(lambda v: _port_matches(v, hp.host_port)).astype(bool)
    mask = (_column(rules, "target") == "DNAT") & (_column(rules, "to_destination").astype(str) == dest) & ports
    proto = _column(rules, "protocol")
    mask &= proto.isna() | (proto.astype(str).str.lower() == hp.protocol.lower())
    return rules[mask]


# -- findings -------------------------------------------------------------------------------
def _finding(node: str, check: str, ok: bool, message: str, fix: str = "", evidence: str = "") -> dict[str, Any]:
    """One finding: what was checked, whether it is fine, in words, what was read that says so, and the fix."""
    return {"node": node, "check": check, "ok": ok, "message": message, "evidence": evidence,
            "fix": "" if ok else fix}


def _listing(folder: str, files: list[str] | None) -> str:
    return f"ls {folder}: " + ("(no such folder)" if files is None else " ".join(files) or "(empty)")


def _host_bin_folder(lab: Cluster, node: str) -> Path | None:
    try:
        return scenario.cni_bin_folder(lab, node).absolute()
    except KindlabError:
        return None


def _stuck(pods: list[dict[str, Any]], events: list[dict[str, Any]], node: str) -> str:
    """' Pod P is Pending: <its last sandbox failure>.' for the node's pods that are not Running."""
    notes = []
    for p in pods:
        spec, status = p.get("spec") or {}, p.get("status") or {}
        if spec.get("nodeName") != node or status.get("phase") == "Running":
            continue
        name = p["metadata"]["name"]
        failures = pod_rules.sandbox_failure_events(events, name, pod_rules.uid(p))
        last = pod_rules.last_event(failures)
        count = pod_rules.sandbox_failure_count(events, name, pod_rules.uid(p))
        why = f": {count} failed sandbox attempts, the last {SANDBOX_FAILED}: {pod_rules.message(last)}" if last else ""
        notes.append(f" Pod {name} is {status.get('phase') or 'Pending'}{why}.")
    return "".join(notes)


def _portmap_copy(lab: Cluster, states: list[NodeState], node: str) -> tuple[str, str]:
    """(the portmap to copy, the command that copies it to `node`): the host's CNI package or a healthy node's."""
    folder = _host_bin_folder(lab, node)
    src = lab.capabilities.portmap_source
    if src:
        return src, (f"cp {src} {folder}/" if folder else f"kindlab cp {src} {node}:{CNI_BIN}/portmap")
    donor = next((s.name for s in states if s.name != node and s.portmap_executable), None)
    src = f"{donor}:{CNI_BIN}/portmap" if donor else "a portmap binary of the CNI package"
    if folder:
        return src, f"kindlab cp {src} {folder}/portmap"
    return src, f"kindlab cp {src} ./portmap && kindlab cp ./portmap {node}:{CNI_BIN}/portmap"


def _reapply(lab: Cluster | None, pod: str) -> str:
    """How to recreate a pod: its manifest under manifests/static/ when there is one, else generic words."""
    path = scenario.static_manifest(lab, pod)
    manifest = _shown(path) if path else "its manifest"
    return f"kindlab delete pod {pod} && kindlab apply -f {manifest}"


def _shown(path: Path) -> str:
    """A path as a user would type it: relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_portmap(lab: Cluster, state: NodeState, states: list[NodeState], stuck: str) -> dict[str, Any]:
    """Is portmap in the node's /opt/cni/bin, executable?"""
    evidence = _listing(CNI_BIN, state.bin_files)
    if state.portmap_executable:
        return _finding(state.name, "portmap-binary", True, f"{CNI_BIN}/portmap is present and executable.",
                        evidence=evidence)
    files = state.bin_files
    has = "(the folder is missing)" if files is None else f"(it holds: {', '.join(files) or 'nothing'})"
    what = "is not executable" if state.bin_files and "portmap" in state.bin_files else "is missing"
    message = f"{CNI_BIN}/portmap {what} {has}; a chained portmap fails every sandbox.{stuck}"
    src, command = _portmap_copy(lab, states, state.name)
    folder = _host_bin_folder(lab, state.name)
    where = (f"on the host into {folder}/, the host folder mounted over the node's {CNI_BIN}" if folder
             else f"into {state.name}:{CNI_BIN}/")
    fix = (f"Copy {src} {where}: {command}. No need to recreate pods: the kubelet retries the sandbox "
           f"every back-off period ({lab.capabilities.retry_window}) and the pod heals by itself.")
    return _finding(state.name, "portmap-binary", False, message, fix, evidence)


def _config_source(lab: Cluster, states: list[NodeState], node: str) -> str | None:
    """Where to copy a chained config from: a host file mounted into a healthy node, else that node's file."""
    for other in states:
        chosen = other.chosen
        if other.name == node or not chosen or not chosen.chains_portmap:
            continue
        want = PurePosixPath(NET_D) / chosen.file
        for m in lab.topology.node(other.name).mounts:
            if PurePosixPath(m.container_path) == want and Path(m.host_path).is_file():
                return str(Path(m.host_path).resolve())
        return f"{other.name}:{want}"
    return None


def check_config(lab: Cluster, state: NodeState, states: list[NodeState], pods: list[HostPort]) -> dict[str, Any]:
    """Which config does the runtime pick, and does it chain portmap?"""
    chosen, rejected = state.chosen, state.choice.rejected
    evidence = _listing(NET_D, state.net_d) + (f"; the runtime's choice: {chosen.file}, plugins "
                                               f"{' -> '.join(chosen.types)}" if chosen else "")
    if rejected is not None:
        return _finding(state.name, "cni-config", False,
                        f"The first config file, {rejected.file}, is invalid ({rejected.error}): the runtime loads "
                        f"no network at all and every new sandbox fails with '{cni_rules.NOT_INITIALIZED}' "
                        "(containerd does not skip to the next file).",
                        f"Fix or remove {state.name}:{NET_D}/{rejected.file}; the runtime reloads the folder "
                        "by itself.", evidence)
    if chosen is None:
        return _finding(state.name, "cni-config", False,
                        f"No CNI config in {NET_D} (entries: {', '.join(state.net_d) or 'none'}).",
                        "Install the CNI provider (on kind: Cilium's DaemonSet writes 05-cilium.conflist).", evidence)
    chain = " -> ".join(chosen.types)
    if chosen.chains_portmap:
        return _finding(state.name, "cni-config", True,
                        f"The runtime picks {chosen.file} (plugins: {chain}); it chains portmap.", evidence=evidence)
    why = ("chains portmap without capabilities.portMappings, so portmap gets no hostPorts"
           if chosen.portmap else "does not chain portmap, so hostPorts are ignored")
    message = f"The runtime picks {chosen.file} (plugins: {chain}); it {why}."
    source = _config_source(lab, states, state.name)
    name = PurePosixPath(source).name if source else "000-<provider>-portmap.conflist"
    if source and ":" in source:
        copy = (f"kindlab cp {source} ./{name} && kindlab cp ./{name} {state.name}:{NET_D}/{name}")
    elif source:
        copy = f"kindlab cp {source} {state.name}:{NET_D}/{name}"
    else:
        copy = f"write a .conflist that chains the primary plugin then portmap into {state.name}:{NET_D}/"
    fix = (f"Copy the chained conflist into {NET_D} so that it sorts first: {copy}.")
    running = sorted({hp.pod for hp in pods if hp.running})
    if running:
        fix += (f" Then delete and re-apply {', '.join(running)}: a running pod's network is not redone "
                "when the config changes.")
    return _finding(state.name, "cni-config", False, message, fix, evidence)


def trace_hostport(state: NodeState, hp: HostPort) -> pd.DataFrame:
    """The nat PREROUTING path of a packet from outside to nodeIP:hostPort (kindlab.iptables.trace)."""
    if state.nat is None or "PREROUTING" not in set(state.nat.chains["chain"].astype(str)):
        return pd.DataFrame(columns=iptables.STEP_COLUMNS)
    return iptables.trace(state.nat, "nat", "PREROUTING", protocol=hp.protocol.lower(), dst=state.ip,
                          dst_port=hp.host_port, dst_local=True)


def check_dnat(state: NodeState, hp: HostPort, lab: Cluster | None = None) -> dict[str, Any]:
    """Does a packet to nodeIP:hostPort get DNATed to podIP:containerPort in the node's nat table?"""
    dest = f"{hp.pod_ip}:{hp.container_port}"
    where = f"hostPort {hp.host_port}/{hp.protocol} of pod {hp.pod} (-> {dest})"
    steps = trace_hostport(state, hp)
    last = steps.iloc[-1] if len(steps) else None
    evidence = (f"iptables -t nat, a packet to {state.ip}:{hp.host_port}/{hp.protocol} from PREROUTING: "
                + (" -> ".join(f"{c}: {t}" for c, t in zip(steps["chain"], steps["target"], strict=True))
                   if len(steps) else "no rule matches"))
    if last is not None and last["target"] == "DNAT" and str(last["to_destination"]) == dest:
        return _finding(state.name, "hostport-dnat", True, f"{where}: DNAT in chain {last['chain']}.",
                        evidence=evidence)
    recreate = f"delete and re-apply pod {hp.pod} ({_reapply(lab, hp.pod)})"
    if last is not None and last["target"] == "DNAT":
        return _finding(state.name, "hostport-dnat", False,
                        f"{where}: the node sends it to {last['to_destination']} instead (a stale rule?).",
                        f"Delete the pod that owns {last['to_destination']}, then {recreate}.", evidence)
    rules = state.nat.rules if state.nat is not None else pd.DataFrame()
    if len(rules) and len(dnat_rule(rules, hp)):
        chain = dnat_rule(rules, hp)["chain"].iloc[0]
        return _finding(state.name, "hostport-dnat", False,
                        f"{where}: a DNAT rule exists in chain {chain} but a packet from PREROUTING "
                        "does not reach it.",
                        f"{recreate[0].upper()}{recreate[1:]} so portmap writes its rules again.", evidence)
    count = int(_column(rules, "chain").astype(str).str.startswith("CNI-HOSTPORT").sum()) if len(rules) else 0
    chosen = state.chosen
    if chosen is not None and chosen.chains_portmap:
        message = (f"{where}: no DNAT rule ({count} CNI-HOSTPORT rules on the node). The chosen config "
                   f"{chosen.file} chains portmap now, but the pod's network was set up before it did: a running "
                   "pod's network is not redone, so the pod must be recreated.")
        fix = f"{recreate[0].upper()}{recreate[1:]}: its new sandbox runs portmap."
    else:
        message = (f"{where}: no DNAT rule ({count} CNI-HOSTPORT rules on the node): the chosen CNI config does "
                   "not chain portmap. After fixing the config the pod must still be recreated.")
        fix = f"First fix cni-config on {state.name}; then {recreate}."
    return _finding(state.name, "hostport-dnat", False, message, fix, evidence)


def _live_ips(pods: list[dict[str, Any]], node: str) -> set[str]:
    """The IPs of the node's pods that still hold a sandbox (not Succeeded or Failed)."""
    return {ip for p in pods if pod_rules.node_name(p) == node and pod_rules.phase(p) not in ("Succeeded", "Failed")
            and (ip := pod_rules.pod_ip(p))}


def check_stale_dnat(state: NodeState, live_ips: set[str]) -> list[dict[str, Any]]:
    """portmap's per-pod chains (CNI-DN-*) whose DNAT goes to no live pod of the node.

    They are left when a sandbox's CNI DEL never ran (containernetworking/plugins#683): the hostPort is then
    sent to an address that is nobody's, or the next pod that gets it.
    """
    rules = state.nat.rules if state.nat is not None else pd.DataFrame(columns=iptables.RULE_COLUMNS)
    chains = _column(rules, "chain").astype(str)
    dnat = rules[chains.str.startswith("CNI-DN-") & (_column(rules, "target") == "DNAT")]
    stale: dict[str, list[str]] = {}
    for chain, dest in zip(dnat["chain"].astype(str), dnat["to_destination"].astype(str), strict=True):
        if dest.rsplit(":", 1)[0] not in live_ips:
            stale.setdefault(chain, []).append(dest)
    if not stale:
        return [_finding(state.name, "stale-dnat", True, f"Every portmap DNAT rule ({len(dnat)}) goes to a live pod.",
                         evidence=f"live pod IPs on {state.name}: {' '.join(sorted(live_ips)) or 'none'}")]
    out = []
    for chain, dests in sorted(stale.items()):
        jumps = rules[(chains == "CNI-HOSTPORT-DNAT") & (_column(rules, "target").astype(str) == chain)]
        delete = [f"iptables -t nat {r.replace('-A ', '-D ', 1)}" for r in jumps["rule"].astype(str)]
        fix = " && ".join([*delete, f"iptables -t nat -F {chain}", f"iptables -t nat -X {chain}"])
        out.append(_finding(state.name, "stale-dnat", False,
                            f"Chain {chain} DNATs to {', '.join(dests)}, which is no live pod's IP on {state.name}: a "
                            "sandbox whose CNI DEL never ran left it, and a new pod given that IP would receive this "
                            "hostPort's traffic.", f"Remove it on {state.name}: {fix}.",
                            "; ".join(rules[chains == chain]["rule"].astype(str))))
    return out


def _overlap(a: HostPort, b: HostPort) -> bool:
    """True when two hostPorts cannot both be had on one node (same port and protocol, addresses that meet)."""
    return (a.host_port, a.protocol.upper()) == (b.host_port, b.protocol.upper()) and (
        a.host_ip in (None, "0.0.0.0") or b.host_ip in (None, "0.0.0.0") or a.host_ip == b.host_ip)


def check_hostport_use(node: str, ports: list[HostPort]) -> list[dict[str, Any]]:
    """Two pods asking the same hostPort on one node, and hostPorts inside the NodePort range."""
    out = []
    for i, a in enumerate(ports):
        for b in ports[i + 1:]:
            if a.pod != b.pod and _overlap(a, b):
                out.append(_finding(node, "hostport-conflict", False,
                                    f"Pods {a.pod} and {b.pod} both ask hostPort {a.host_port}/{a.protocol} on {node}: "
                                    "only one can have it; the other is kept Pending by the scheduler, or rejected by "
                                    "the kubelet (NodePorts) when its nodeName is set.",
                                    "Give one of them another hostPort, or put it on another node."))
        low, high = NODEPORT_RANGE
        if low <= a.host_port <= high:
            out.append(_finding(node, "nodeport-range", False,
                                f"hostPort {a.host_port} of pod {a.pod} is inside the NodePort range {low}-{high}: a "
                                "Service's NodePort on that port (kube-proxy's KUBE-NODEPORTS) can take the traffic.",
                                f"Use a hostPort outside {low}-{high} (kube-apiserver's --service-node-port-range)."))
    if not out and ports:
        out.append(_finding(node, "hostport-conflict", True,
                            f"{len(ports)} hostPort(s) on {node}, no two alike, none in the NodePort range."))
    return out


def iptables_backends(lab: Cluster, node: str) -> dict[str, iptables.Ruleset]:
    """The node's nat table per iptables backend it has ("legacy", "nft"); {} where it cannot tell."""
    try:
        text = lab.exec(node, ["sh", "-c", BACKENDS_SCRIPT], check=False)
    except ExecError:
        return {}
    parts: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("#kindlab "):
            current = parts.setdefault(line.split(" ", 1)[1], [])
        elif current is not None:
            current.append(line)
    out = {}
    for name, lines in parts.items():
        try:
            out[name] = iptables.parse("\n".join(lines) + "\n")
        except KindlabError:
            continue
    return out


def check_backends(node: str, rulesets: dict[str, iptables.Ruleset]) -> list[dict[str, Any]]:
    """Are portmap's and kube-proxy's rules in one iptables backend, the one the node's tools read?"""
    holders: dict[str, set[str]] = {}
    for name, rules in rulesets.items():
        chains = set(rules.chains["chain"].astype(str)) | set(rules.rules["chain"].astype(str))
        if any(c.startswith("CNI-HOSTPORT") or c.startswith("CNI-DN-") for c in chains):
            holders.setdefault("portmap", set()).add(name)
        if any(c.startswith("KUBE-") for c in chains):
            holders.setdefault("kube-proxy", set()).add(name)
    used = set().union(*holders.values()) if holders else set()
    evidence = "; ".join(f"{name}: {len(rules.rules)} nat rules" for name, rules in sorted(rulesets.items()))
    if len(used) <= 1:
        where = next(iter(used), None)
        return [_finding(node, "iptables-backend", True,
                         f"Rules in one iptables backend ({where or 'none with hostPort or kube-proxy rules'}; "
                         f"backends seen: {', '.join(sorted(rulesets)) or 'none'}).", evidence=evidence)]
    said = "; ".join(f"{who} in {', '.join(sorted(b))}" for who, b in sorted(holders.items()))
    return [_finding(node, "iptables-backend", False,
                     f"Rules are split between iptables backends ({said}): each backend's rules are evaluated, but "
                     "a tool that reads the other one (iptables-save of the wrong variant) does not show them, and "
                     "their order against each other is not what either tool says (kubernetes/kubernetes#107965).",
                     "Run every component with the same iptables variant (update-alternatives --set iptables ...), "
                     "then flush the other backend's nat table.", evidence)]


#: portmap's nftables backend (CNI plugins v1.6 and later) keeps its rules in tables of this name, which
#: `iptables-save` never shows.
NFT_TABLE = "cni_hostport"
NFT_SCRIPT = ("if command -v nft >/dev/null; then for family in ip ip6; do "
              f"nft list table $family {NFT_TABLE} 2>/dev/null; done; else echo '#kindlab no nft'; fi")


def nft_hostport(lab: Cluster, node: str) -> str | None:
    """portmap's nftables tables on the node, as `nft list table` prints them; None where nft is not installed."""
    try:
        text = lab.exec(node, ["sh", "-c", NFT_SCRIPT], check=False)
    except ExecError:
        return None
    return None if text.startswith("#kindlab no nft") else text


def check_nft(node: str, text: str | None, live_ips: set[str]) -> dict[str, Any]:
    """portmap's nftables rules: reported where they exist (iptables-save does not show them), their DNATs
    checked against the node's live pods as stale-dnat checks portmap's iptables chains."""
    if text is None:
        return _finding(node, "nft-hostport", True, "nft is not installed: portmap uses iptables here.",
                        evidence="command -v nft: not found")
    if NFT_TABLE not in text:
        return _finding(node, "nft-hostport", True, f"No nftables table {NFT_TABLE}: portmap's rules, if any, are "
                        "in iptables (see hostport-dnat).", evidence=f"nft list table ip {NFT_TABLE}: none")
    dnat = [line.strip() for line in text.splitlines() if " dnat " in f" {line.strip()} "]
    stale = [rule for rule in dnat if not any(f"{ip}:" in rule or f"{ip} " in f"{rule} " for ip in live_ips)]
    evidence = "; ".join(dnat) or f"table {NFT_TABLE} with no dnat rule"
    if stale:
        return _finding(node, "nft-hostport", False,
                        f"portmap's nftables table {NFT_TABLE} DNATs to no live pod's IP ({len(stale)} rule(s)): a "
                        "sandbox whose CNI DEL never ran left them (iptables-save does not show them).",
                        f"Remove the rules on {node} (nft -a list table ip {NFT_TABLE}, then nft delete rule ... "
                        "handle N).", evidence)
    return _finding(node, "nft-hostport", True,
                    f"portmap keeps its rules in nftables table {NFT_TABLE} ({len(dnat)} dnat rule(s)), every one to "
                    "a live pod: read them with `nft list table ip cni_hostport`, not iptables-save.",
                    evidence=evidence)


def _connects(lab: Cluster, node: str, ip: str, port: int) -> bool:
    """A TCP connect from inside the node's network namespace to ip:port (bash's /dev/tcp), within 2 s."""
    try:
        lab.exec(node, ["timeout", "2", "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"], timeout=10)
    except ExecError:
        return False
    return True


def check_reach(lab: Cluster, state: NodeState, hp: HostPort) -> dict[str, Any]:
    """From inside the node: does a TCP connect to hostPort on the node IP, and on 127.0.0.1, succeed?

    The node IP must answer where the DNAT is there; 127.0.0.1 answers only where portmap's OUTPUT jump and
    route_localnet let loopback traffic be DNATed, which many setups do not (it is reported, not failed).
    """
    matrix = {f"{ip}:{hp.host_port}": _connects(lab, state.name, ip, hp.host_port)
              for ip in (state.ip, "127.0.0.1") if ip}
    seen = ", ".join(f"{where} {'connects' if ok else 'refused or silent'}" for where, ok in matrix.items())
    ok = bool(matrix.get(f"{state.ip}:{hp.host_port}"))
    return _finding(state.name, "hostport-reach", ok,
                    f"From inside {state.name}, pod {hp.pod}'s hostPort {hp.host_port}/TCP: {seen}.",
                    "See hostport-dnat: the DNAT to the pod is missing or the pod does not listen on "
                    f"{hp.container_port}.",
                    " ".join(f"{where}={'open' if ok else 'closed'}" for where, ok in matrix.items()))


def doctor(lab: Cluster, reach: bool = True) -> pd.DataFrame:
    """Check every node's hostPort plumbing; one row per finding (FINDING_COLUMNS). With `reach`, also
    connect to each TCP hostPort from inside its node."""
    pods = lab.pod_list()
    events = lab.event_list()
    ports = {n: host_ports(pods, n) for n in lab.node_names()}
    states = [read_node(lab, n, need_nat=True) for n in lab.node_names()]
    rows = []
    for state in states:
        rows.append(check_portmap(lab, state, states, _stuck(pods, events, state.name)))
        rows.append(check_config(lab, state, states, ports[state.name]))
        rows.extend(check_dnat(state, hp, lab) for hp in ports[state.name] if hp.running and hp.pod_ip)
        rows.extend(check_reach(lab, state, hp) for hp in ports[state.name]
                    if hp.running and hp.pod_ip and hp.protocol.upper() == "TCP" and reach)
        rows.extend(check_stale_dnat(state, _live_ips(pods, state.name)))
        rows.extend(check_hostport_use(state.name, ports[state.name]))
        rows.extend(check_backends(state.name, iptables_backends(lab, state.name)))
        rows.append(check_nft(state.name, nft_hostport(lab, state.name), _live_ips(pods, state.name)))
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def problems(findings: pd.DataFrame) -> pd.DataFrame:
    """Only the failed findings."""
    return findings[~findings["ok"]].reset_index(drop=True)
