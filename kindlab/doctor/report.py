"""doctor's report: every check on every node, one row per finding (FINDING_COLUMNS), and its problems."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from .. import scenario
from ..cluster import Cluster
from ..model.pods import HostPort
from .checks import FINDING_COLUMNS, check_config, check_dnat, check_portmap, check_reach
from .cni_cache import check_cni_cache
from .nodes import NodeState, host_ports, iptables_backends, live_ips, read_node, stuck
from .rulesets import check_backends, check_hostport_use, check_nft, check_stale_dnat


def node_findings(lab: Cluster, state: NodeState, states: list[NodeState], ports: list[HostPort],
                  pods: list[dict[str, Any]], events: list[dict[str, Any]], reach: bool) -> list[dict[str, Any]]:
    """One node's findings, in the report's order: its plumbing first, then its rules as a whole."""
    node, live = state.name, live_ips(pods, state.name)
    rows = [check_portmap(lab, state, states, stuck(pods, events, node)), check_config(lab, state, states, ports)]
    rows.extend(check_cni_cache(lab, state, pods))
    rows.extend(check_dnat(state, hp, lab) for hp in ports if hp.running and hp.pod_ip)
    rows.extend(check_reach(lab, state, hp) for hp in ports
                if hp.running and hp.pod_ip and hp.protocol.upper() == "TCP" and reach)
    rows.extend(check_stale_dnat(state, live))
    rows.extend(check_hostport_use(node, ports))
    rows.extend(check_backends(node, iptables_backends(lab, node)))
    rows.append(check_nft(node, state.nft, live))
    return rows


def doctor(lab: Cluster, reach: bool = True) -> pd.DataFrame:
    """Check every node's hostPort plumbing; one row per finding (FINDING_COLUMNS). With `reach`, also
    connect to each TCP hostPort from inside its node."""
    pods = lab.pod_list()
    events = lab.event_list()
    ports = {n: host_ports(pods, n) for n in lab.node_names()}
    states = [read_node(lab, n, need_nat=True) for n in lab.node_names()]
    rows = [row for state in states
            for row in node_findings(lab, state, states, ports[state.name], pods, events, reach)]
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def problems(findings: pd.DataFrame) -> pd.DataFrame:
    """Only the failed findings."""
    return findings[~findings["ok"]].reset_index(drop=True)


# kindlab's own verbs -> the commands a reader types on kind (kindlab cp/delete/apply take the same arguments).
_TYPED = ((re.compile(r"\bkindlab cp\b"), "docker cp"),
          (re.compile(r"kindlab delete pod (\S+) && kindlab apply -f (\S+)"),
           r"kubectl delete pod \1; kubectl apply -f \2"),
          (re.compile(r"\bkindlab (delete|apply|get)\b"), r"kubectl \1"))


_ABSOLUTE = re.compile(r"(?<![\w.:-])/[\w.+-]+(?:/[\w.+-]*)*")


def typed(text: str, root: Path) -> str:
    """A finding's text as a reader would type it in the repository `root`: paths below `root` relative to it,
    and kindlab's cp, delete and apply as `docker cp` and `kubectl`."""
    def relative(match: re.Match) -> str:
        path = match.group(0).rstrip("/.")
        return scenario.shown_path(None, path, root) + match.group(0)[len(path):]

    text = _ABSOLUTE.sub(relative, text)
    for pattern, words in _TYPED:
        text = pattern.sub(words, text)
    return text


def for_reader(findings: pd.DataFrame, root: Path) -> pd.DataFrame:
    """The problems among `findings`, one row each: node, check, what is wrong, and the fix as typed."""
    rows = problems(findings)
    return pd.DataFrame({"node": rows["node"], "check": rows["check"],
                         "problem": [typed(str(m), root) for m in rows["message"]],
                         "fix": [typed(str(f), root) for f in rows["fix"]]})


def tally(findings: pd.DataFrame) -> pd.DataFrame:
    """Per node: how many checks doctor ran and how many found a problem."""
    counts = findings.groupby("node", sort=False)["ok"].agg(checks="size", problems=lambda ok: int((~ok).sum()))
    return counts.reset_index()
