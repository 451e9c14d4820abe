"""Diagnose hostPort on every node, as the seed's walkthrough does by hand.

Per node, through ``lab.exec`` only (so both backends work the same), three checks:

``portmap-binary``
    Is ``portmap`` in the node's ``/opt/cni/bin``, and executable?
``cni-config``
    Which file of ``/etc/cni/net.d`` the runtime picks (byte order of ``.conf``/``.conflist``/``.json``,
    first valid wins), and does it chain portmap with ``capabilities.portMappings``?
``hostport-dnat``
    For each Running pod of the node with a hostPort: does the node's nat table DNAT that hostPort
    to podIP:containerPort, reachable from PREROUTING?

Each finding has node, check, ok, message and fix; the fix says what to copy where, and whether
the pod must be recreated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from . import iptables
from .cluster import Cluster
from .errors import ExecError, KindlabError

FINDING_COLUMNS = ["node", "check", "ok", "message", "fix"]
CNI_BIN = "/opt/cni/bin"
NET_D = "/etc/cni/net.d"
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
PACKAGE_PORTMAP = "/usr/lib/cni/portmap"
SANDBOX_FAILED = "FailedCreatePodSandBox"


# -- CNI config, as libcni and containerd read it ------------------------------------------
@dataclass
class CniConfig:
    """One file of /etc/cni/net.d, parsed as libcni does; `error` says why it is not valid."""

    file: str
    name: str = ""
    plugins: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def valid(self) -> bool:
        """True when libcni would load it."""
        return self.error is None

    @property
    def types(self) -> list[str]:
        """The plugin types in chain order."""
        return [str(p.get("type")) for p in self.plugins]

    @property
    def portmap(self) -> dict[str, Any] | None:
        """The chained portmap plugin's config, if any."""
        return next((p for p in self.plugins if p.get("type") == "portmap"), None)

    @property
    def chains_portmap(self) -> bool:
        """True when portmap is chained with capabilities.portMappings, so it gets the pod's hostPorts."""
        pm = self.portmap
        return bool(pm and (pm.get("capabilities") or {}).get("portMappings") is True)


def parse_cni_config(file: str, text: str) -> CniConfig:
    """Parse one config file: a .conflist needs name and plugins; a .conf/.json is one plugin with a type."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return CniConfig(file, error=f"not valid JSON ({exc.msg} at line {exc.lineno})")
    if not isinstance(doc, dict):
        return CniConfig(file, error="not a JSON object")
    if file.endswith(".conflist"):
        plugins = doc.get("plugins")
        if not doc.get("name"):
            return CniConfig(file, error="error parsing configuration list: no name")
        if not isinstance(plugins, list) or not plugins:
            return CniConfig(file, str(doc["name"]), error="error parsing configuration list: no 'plugins' key")
        if not all(isinstance(p, dict) and p.get("type") for p in plugins):
            return CniConfig(file, str(doc["name"]), error="a plugin of the list has no 'type'")
        return CniConfig(file, str(doc["name"]), plugins)
    if not doc.get("type"):
        return CniConfig(file, str(doc.get("name", "")), error="error parsing configuration: missing 'type'")
    return CniConfig(file, str(doc.get("name", "")), [doc])


def config_order(names: list[str]) -> list[str]:
    """The config files the runtime considers, in the order it tries them (byte order)."""
    return sorted((n for n in names if n.endswith(CONF_EXTENSIONS)), key=lambda n: n.encode())


# -- what a node has ------------------------------------------------------------------------
@dataclass
class NodeState:
    """What doctor read from one node."""

    name: str
    bin_files: list[str] | None  # None: /opt/cni/bin is missing
    portmap_executable: bool
    net_d: list[str]
    tried: list[CniConfig]  # invalid files skipped, then the chosen one (if any)
    nat: iptables.Ruleset | None = None
    ip: str | None = None

    @property
    def chosen(self) -> CniConfig | None:
        """The config the runtime picks: the first valid file."""
        return next((c for c in self.tried if c.valid), None)


def _ls(lab: Cluster, node: str, folder: str) -> list[str] | None:
    try:
        return [line.strip() for line in lab.exec(node, ["ls", "-1", folder]).splitlines() if line.strip()]
    except ExecError:
        return None


def _executable(lab: Cluster, node: str, path: str) -> bool:
    try:
        lab.exec(node, ["test", "-x", path])
    except ExecError:
        return False
    return True


def _configs(lab: Cluster, node: str, names: list[str]) -> list[CniConfig]:
    """Read the node's config files in order up to and including the first valid one."""
    tried = []
    for name in config_order(names):
        try:
            conf = parse_cni_config(name, lab.exec(node, ["cat", f"{NET_D}/{name}"]))
        except ExecError as exc:
            conf = CniConfig(name, error=f"cannot read: {(exc.stderr or str(exc)).strip()}")
        tried.append(conf)
        if conf.valid:
            break
    return tried


def nat_rules(lab: Cluster, node: str) -> iptables.Ruleset:
    """The node's nat table, via `iptables-save -c -t nat` (kindlab.iptables.node_rules)."""
    return iptables.node_rules(lab, node, table="nat")


def read_node(lab: Cluster, node: str, need_nat: bool) -> NodeState:
    """Everything doctor needs from one node, read through lab.exec."""
    files = _ls(lab, node, CNI_BIN)
    executable = files is not None and "portmap" in files and _executable(lab, node, f"{CNI_BIN}/portmap")
    net_d = _ls(lab, node, NET_D) or []
    return NodeState(node, files, executable, net_d, _configs(lab, node, net_d),
                     nat_rules(lab, node) if need_nat else None, lab.node_ip(node) if need_nat else None)


# -- pods -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostPort:
    """One hostPort of a pod: what the DNAT rule should send where."""

    pod: str
    host_port: int
    container_port: int
    protocol: str
    pod_ip: str | None
    running: bool


def host_ports(pods: list[dict[str, Any]], node: str) -> list[HostPort]:
    """The hostPorts of the node's pods (hostNetwork pods need no DNAT and are left out)."""
    out = []
    for p in pods:
        spec, status = p.get("spec") or {}, p.get("status") or {}
        if spec.get("nodeName") != node or spec.get("hostNetwork"):
            continue
        for c in spec.get("containers") or []:
            for port in c.get("ports") or []:
                if port.get("hostPort"):
                    out.append(HostPort(p["metadata"]["name"], int(port["hostPort"]), int(port["containerPort"]),
                                        str(port.get("protocol") or "TCP"), status.get("podIP"),
                                        status.get("phase") == "Running"))
    return out


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
def _finding(node: str, check: str, ok: bool, message: str, fix: str = "") -> dict[str, Any]:
    return {"node": node, "check": check, "ok": ok, "message": message, "fix": "" if ok else fix}


def _host_bin_folder(lab: Cluster, node: str) -> Path | None:
    from .heal import cni_bin_folder

    try:
        return cni_bin_folder(lab, node).absolute()
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
        failures = [e for e in events if e.get("reason") == SANDBOX_FAILED
                    and (e.get("involvedObject") or {}).get("name") == name]
        last = max(failures, key=lambda e: str(e.get("lastTimestamp") or ""), default=None)
        count = sum(int(e.get("count") or 1) for e in failures)
        why = f": {SANDBOX_FAILED} x{count}, {last.get('message')}" if last else ""
        notes.append(f" Pod {name} is {status.get('phase') or 'Pending'}{why}.")
    return "".join(notes)


def _portmap_copy(lab: Cluster, states: list[NodeState], node: str) -> tuple[str, str]:
    """(the portmap to copy, the command that copies it to `node`): the host's CNI package or a healthy node's."""
    folder = _host_bin_folder(lab, node)
    if lab.backend == "netns":
        src = PACKAGE_PORTMAP
        return src, (f"cp {src} {folder}/" if folder else f"kindlab cp {src} {node}:{CNI_BIN}/portmap")
    donor = next((s.name for s in states if s.name != node and s.portmap_executable), None)
    src = f"{donor}:{CNI_BIN}/portmap" if donor else "a portmap binary of the CNI package"
    if folder:
        return src, f"kindlab cp {src} {folder}/portmap"
    return src, f"kindlab cp {src} ./portmap && kindlab cp ./portmap {node}:{CNI_BIN}/portmap"


def _backoff_window(lab: Cluster) -> str:
    from .heal import KUBELET_JITTER, lab_backoff

    b = lab_backoff(lab)
    return f"{b:g}-{b * (1 + KUBELET_JITTER):g} s"


def _reapply(pod: str) -> str:
    """How to recreate a pod: its manifest under manifests/static/ when there is one, else generic words."""
    path = Path("manifests/static") / f"{pod}.yaml"
    manifest = str(path) if path.exists() else "its manifest"
    return f"kindlab delete pod {pod} && kindlab apply -f {manifest}"


def check_portmap(lab: Cluster, st: NodeState, states: list[NodeState], stuck: str) -> dict[str, Any]:
    """Is portmap in the node's /opt/cni/bin, executable?"""
    if st.portmap_executable:
        return _finding(st.name, "portmap-binary", True, f"{CNI_BIN}/portmap is present and executable.")
    has = "(the folder is missing)" if st.bin_files is None else f"(it holds: {', '.join(st.bin_files) or 'nothing'})"
    what = "is not executable" if st.bin_files and "portmap" in st.bin_files else "is missing"
    message = f"{CNI_BIN}/portmap {what} {has}; a chained portmap fails every sandbox.{stuck}"
    src, command = _portmap_copy(lab, states, st.name)
    folder = _host_bin_folder(lab, st.name)
    where = (f"on the host into {folder}/, the host folder mounted over the node's {CNI_BIN}" if folder
             else f"into {st.name}:{CNI_BIN}/")
    fix = (f"Copy {src} {where}: {command}. No need to recreate pods: the kubelet retries the sandbox "
           f"every back-off period ({_backoff_window(lab)}) and the pod heals by itself.")
    return _finding(st.name, "portmap-binary", False, message, fix)


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


def check_config(lab: Cluster, st: NodeState, states: list[NodeState], pods: list[HostPort]) -> dict[str, Any]:
    """Which config does the runtime pick, and does it chain portmap?"""
    skipped = "".join(f" Skipped {c.file}: {c.error}." for c in st.tried if not c.valid)
    chosen = st.chosen
    if chosen is None:
        return _finding(st.name, "cni-config", False,
                        f"No valid CNI config in {NET_D} (files: {', '.join(st.net_d) or 'none'}).{skipped}",
                        "Install the CNI provider (on kind: Cilium's DaemonSet writes 05-cilium.conflist).")
    chain = " -> ".join(chosen.types)
    if chosen.chains_portmap:
        return _finding(st.name, "cni-config", True,
                        f"The runtime picks {chosen.file} (plugins: {chain}); it chains portmap.{skipped}")
    why = ("chains portmap without capabilities.portMappings, so portmap gets no hostPorts"
           if chosen.portmap else "does not chain portmap, so hostPorts are ignored")
    message = f"The runtime picks {chosen.file} (plugins: {chain}); it {why}.{skipped}"
    source = _config_source(lab, states, st.name)
    name = PurePosixPath(source).name if source else "000-<provider>-portmap.conflist"
    if source and ":" in source:
        copy = (f"kindlab cp {source} ./{name} && kindlab cp ./{name} {st.name}:{NET_D}/{name}")
    elif source:
        copy = f"kindlab cp {source} {st.name}:{NET_D}/{name}"
    else:
        copy = f"write a .conflist that chains the primary plugin then portmap into {st.name}:{NET_D}/"
    fix = (f"Copy the chained conflist into {NET_D} so that it sorts first: {copy}.")
    running = sorted({hp.pod for hp in pods if hp.running})
    if running:
        fix += (f" Then delete and re-apply {', '.join(running)}: a running pod's network is not redone "
                "when the config changes.")
    return _finding(st.name, "cni-config", False, message, fix)


def trace_hostport(st: NodeState, hp: HostPort) -> pd.DataFrame:
    """The nat PREROUTING path of a packet from outside to nodeIP:hostPort (kindlab.iptables.trace)."""
    if st.nat is None or "PREROUTING" not in set(st.nat.chains["chain"].astype(str)):
        return pd.DataFrame(columns=iptables.STEP_COLUMNS)
    return iptables.trace(st.nat, "nat", "PREROUTING", protocol=hp.protocol.lower(), dst=st.ip,
                          dst_port=hp.host_port, dst_local=True)


def check_dnat(st: NodeState, hp: HostPort) -> dict[str, Any]:
    """Does a packet to nodeIP:hostPort get DNATed to podIP:containerPort in the node's nat table?"""
    dest = f"{hp.pod_ip}:{hp.container_port}"
    where = f"hostPort {hp.host_port}/{hp.protocol} of pod {hp.pod} (-> {dest})"
    steps = trace_hostport(st, hp)
    last = steps.iloc[-1] if len(steps) else None
    if last is not None and last["target"] == "DNAT" and str(last["to_destination"]) == dest:
        return _finding(st.name, "hostport-dnat", True, f"{where}: DNAT in chain {last['chain']}.")
    recreate = f"delete and re-apply pod {hp.pod} ({_reapply(hp.pod)})"
    if last is not None and last["target"] == "DNAT":
        return _finding(st.name, "hostport-dnat", False,
                        f"{where}: the node sends it to {last['to_destination']} instead (a stale rule?).",
                        f"Delete the pod that owns {last['to_destination']}, then {recreate}.")
    rules = st.nat.rules if st.nat is not None else pd.DataFrame()
    if len(rules) and len(dnat_rule(rules, hp)):
        chain = dnat_rule(rules, hp)["chain"].iloc[0]
        return _finding(st.name, "hostport-dnat", False,
                        f"{where}: a DNAT rule exists in chain {chain} but a packet from PREROUTING "
                        "does not reach it.", f"{recreate[0].upper()}{recreate[1:]} so portmap writes its rules again.")
    count = int(_column(rules, "chain").astype(str).str.startswith("CNI-HOSTPORT").sum()) if len(rules) else 0
    chosen = st.chosen
    if chosen is not None and chosen.chains_portmap:
        message = (f"{where}: no DNAT rule ({count} CNI-HOSTPORT rules on the node). The chosen config "
                   f"{chosen.file} chains portmap now, but the pod's network was set up before it did: a running "
                   "pod's network is not redone, so the pod must be recreated.")
        fix = f"{recreate[0].upper()}{recreate[1:]}: its new sandbox runs portmap."
    else:
        message = (f"{where}: no DNAT rule ({count} CNI-HOSTPORT rules on the node): the chosen CNI config does "
                   "not chain portmap. After fixing the config the pod must still be recreated.")
        fix = f"First fix cni-config on {st.name}; then {recreate}."
    return _finding(st.name, "hostport-dnat", False, message, fix)


def doctor(lab: Cluster) -> pd.DataFrame:
    """Check every node's hostPort plumbing; one row per finding (FINDING_COLUMNS)."""
    pods = lab.pod_list()
    events = lab.event_list()
    ports = {n: host_ports(pods, n) for n in lab.node_names()}
    states = [read_node(lab, n, need_nat=any(hp.running and hp.pod_ip for hp in ports[n]))
              for n in lab.node_names()]
    rows = []
    for st in states:
        rows.append(check_portmap(lab, st, states, _stuck(pods, events, st.name)))
        rows.append(check_config(lab, st, states, ports[st.name]))
        rows.extend(check_dnat(st, hp) for hp in ports[st.name] if hp.running and hp.pod_ip)
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def problems(findings: pd.DataFrame) -> pd.DataFrame:
    """Only the failed findings."""
    return findings[~findings["ok"]].reset_index(drop=True)
