"""The netns backend (registered in its `__init__`): up, get, delete, clusters, delete_all, broken; and which
Kubernetes a lab runs.

A lab runs its pods one of two ways, chosen at create and kept in its record:
  real   the real kube-apiserver, kubelet, containerd and kube-proxy in its nodes (real/), where set-up
         built them: the default wherever `binaries.missing()` is empty
  model  kindlab's node agent, the model of the kubelet (agent.py): starts at once, its back-off can be shortened
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ...errors import ClusterError, ConfigError, NotFound
from ...progress import Reporter, quiet
from ...topology import Topology
from . import preflight
from .cluster import ModelLab, NetnsLab, _topology, wait_for_agent
from .lifecycle import all_traces, being_made, create, fingerprint, lab_names, locked, problems, teardown
from .lifecycle import broken as broken
from .names import SUBNET, check_lab_name, host_netns, state_dir
from .real import binaries
from .real.cluster import RealLab
from .state.store import Store

KUBERNETES = ("real", "model")


def select_kubernetes(kubernetes: str | None = None) -> str:
    """`kubernetes`, else $KINDLAB_KUBERNETES, else real where its binaries are built, else model."""
    choice = kubernetes or os.environ.get("KINDLAB_KUBERNETES") or ""
    if choice:
        if choice not in KUBERNETES:
            raise ConfigError(f"unknown kubernetes {choice!r}; choose one of {', '.join(KUBERNETES)} "
                              "(--kubernetes, kubernetes= or KINDLAB_KUBERNETES)")
        return choice
    return "model" if binaries.missing() else "real"


def build(what: str, report: Reporter = quiet) -> str:
    """The netns lab builds nothing with `kindlab build` (set-up builds its Kubernetes)."""
    raise ClusterError(f"the netns backend builds nothing ({what!r}); its Kubernetes is built by `make setup`")


def available() -> bool:
    """Always: the netns lab is where auto-detection ends (its preflight says what a machine lacks)."""
    return True


def missing(kubernetes: str) -> list[str]:
    """What this machine lacks to run a lab with `kubernetes` (real: the built components; model: the preflight)."""
    from ...errors import EnvironmentProblem

    try:
        preflight.check()
    except EnvironmentProblem as exc:
        return [str(exc)]
    return binaries.missing() if kubernetes == "real" else []


def describe(kubernetes: str | None = None) -> str:
    """In words, what `up` would run here: real Kubernetes or the model."""
    real = select_kubernetes(kubernetes) == "real"
    return "the netns backend with " + ("real Kubernetes (the kubelet, containerd and the API server)" if real
                                        else "kindlab's model of the kubelet")


def _cluster(record: dict[str, Any], topology: Topology) -> NetnsLab:
    """The lab's Cluster: RealLab when its record says real Kubernetes runs it, ModelLab otherwise."""
    return (RealLab if record.get("kubernetes") == "real" else ModelLab)(record, topology)


def up(topology: Topology, backoff: float | None = None, report: Reporter = quiet,
       kubernetes: str | None = None, cni: str | None = None) -> NetnsLab:
    """Get-or-create the lab `topology.name`: the same config gives the same lab; another config, ClusterError.
    Its CNI is always kindlab-cni (`cni` may say so, nothing else)."""
    if cni not in (None, "kindlab"):
        raise ConfigError(f"the netns lab's primary CNI plugin is kindlab-cni, not {cni!r}; Cilium runs on kind "
                          "(--backend kind --cni cilium)")
    preflight.check()
    name = check_lab_name(topology.name)
    if backoff is not None and not (isinstance(backoff, int | float) and math.isfinite(backoff) and backoff >= 0):
        raise ConfigError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
    wanted = select_kubernetes(kubernetes)
    if wanted == "real":
        backoff = None   # the real kubelet's back-off is its own (10 s), as on kind
    if wanted == "real" and (lack := binaries.missing()):
        raise ClusterError("real Kubernetes cannot run here: missing " + "; ".join(lack)
                           + "; run `make setup`, or use --kubernetes model")
    with locked(report):
        store = Store(state_dir(name))
        record = store.read_lab()
        if record is not None:
            issues = problems(record)
            if not issues:
                if record["fingerprint"] != fingerprint(topology):
                    raise ClusterError(f"cluster {name!r} already exists with another config "
                                       f"({record.get('source') or 'unknown'}); delete it first: "
                                       f"kindlab delete cluster --name {name}")
                has = record.get("kubernetes", "model")
                if kubernetes is not None and has != wanted:
                    raise ClusterError(f"cluster {name!r} already exists running {has} Kubernetes; delete it "
                                       f"first to make it with {wanted}: kindlab delete cluster --name {name}")
                if backoff is not None and float(backoff) != record["backoff"]:
                    record["backoff"] = float(backoff)
                    store.write_lab(record)
                    with store.lock():
                        store.bump()
                lab = _cluster(record, topology)
                lab.ensure_agent()
                report(f"netns: cluster {name!r} is already up ({len(record['nodes'])} nodes, {has} Kubernetes)")
                return lab
            report(f"netns: cluster {name!r} is broken ({issues[0]}): making it again")
            teardown(name)
        elif name in all_traces():
            teardown(name)
        started = time.monotonic()
        try:
            record, _ = create(topology, backoff, wanted, report)
        except BaseException:
            teardown(name)
            raise
        lab = _cluster(record, topology)
        lab.ensure_agent()
    for line in record["substitutions"]:
        report(line)
    report(f"netns: cluster {name!r} is up in {time.monotonic() - started:.2f}s: "
           f"{len(record['nodes'])} nodes on {SUBNET} (bridge 'kind' in netns {host_netns(name)}), "
           f"{lab.capabilities.describe()}")
    return lab


def get(name: str) -> NetnsLab:
    """The lab called `name`; NotFound if there is none."""
    check_lab_name(name)
    record = Store(state_dir(name)).read_lab()
    if record is None:
        known = ", ".join(lab_names()) or "none"
        raise NotFound(f"no netns cluster named {name!r} (clusters: {known}); create it: "
                       f"kindlab create cluster --name {name} --config kind/config")
    if record.get("phase") != "ready":
        fix = "wait until it is made" if being_made(record) else f"remove it: kindlab delete cluster --name {name}"
        raise ClusterError(f"cluster {name!r} cannot be used: {problems(record)[0]}; {fix}")
    lab = _cluster(record, _topology(record))
    if not lab.agent_running():     # as systemd restarts a kubelet: the next command starts a dead one again
        lab.ensure_agent()
        wait_for_agent(lab)
    return lab


def delete(name: str) -> bool:
    """Delete the lab `name` and everything it made; False if there was nothing."""
    preflight.check()
    check_lab_name(name)
    with locked():
        return teardown(name)


def clusters() -> list[str]:
    """Names of the labs on this machine."""
    return lab_names()


def delete_all() -> list[str]:
    """Delete every lab, including labs whose agent died and half-made ones; returns their names."""
    preflight.check()
    with locked():
        names = all_traces()
        for name in names:
            teardown(name)
    return names
