"""Helpers for the notebooks: a chapter's set-up in one call, and the views each step shows.

The scenario itself (the three workers, their pods, breaking and fixing them) is :mod:`kindlab.scenario`;
its names are available here too. The views read the nodes as the walkthrough does by hand (``ls``,
``iptables-save``, curl) and give DataFrames; every helper works on every backend, through
:class:`kindlab.Cluster`'s API, asking the backend what it can do (``lab.capabilities``).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from . import backends, heal, iptables, progress, scenario
from .cluster import Cluster, HttpResponse
from .doctor import cni_choice
from .errors import CurlError, KindlabError, WaitTimeout
from .model import kubelet
from .model import pods as pod_rules
from .model.cni import CNI_BIN, NET_D
from .model.portmap import GREP_WORD, POD_CHAIN_PREFIX, is_portmap_chain
from .scenario import (
    ROOT,
    WORKERS,
    break_worker2,
    break_worker3,
    chained_conflist_source,
    chained_conflists,
    fix_worker2,
    fix_worker3,
    has_portmap,
    node,
    pod_name,
    pod_phase,
    sandbox_failure_count,
    static_pods,
    timeout_for,
    wait_for_failure,
)
from .waiting import Deadline

# The scenario's own verbs, here too, so that a notebook needs one import (documented in kindlab.scenario).
apply_pod, recreate_pod, host_cni_bin = scenario.apply_pod, scenario.recreate_pod, scenario.host_cni_bin


# -- the cluster ------------------------------------------------------------------------
def ensure_cluster(config: str | Path = "../kind/config", name: str = "kind", backend: str | None = None,
                   backoff: float | None = None, show: bool = False, kubernetes: str | None = None) -> Cluster:
    """Get or create cluster ``name`` from ``config``, with the sandbox retry back-off ``backoff`` (model)."""
    return backends.up(config, name=name, backend=backend, backoff=backoff, progress=show, kubernetes=kubernetes)


def fresh_cluster(config: str | Path = "../kind/config", name: str = "kind", backend: str | None = None,
                  backoff: float | None = None, show: bool = True,
                  kubernetes: str | None = None) -> tuple[Cluster, float]:
    """Delete cluster ``name`` if it exists, create it again, and return it with the seconds ``up`` took."""
    backends.delete(name, backend=backend)
    start = time.perf_counter()
    lab = backends.up(config, name=name, backend=backend, backoff=backoff, progress=show, kubernetes=kubernetes)
    return lab, time.perf_counter() - start


def open_chapter(config: str | Path, name: str = "kind", backend: str | None = None, backoff: float | None = None,
                 prepare: Callable[[Cluster], Any] | None = None, kubernetes: str | None = None) -> Cluster:
    """A chapter's set-up in one call: get or create the cluster, say what runs it, and ``prepare(lab)``
    (e.g. :func:`reset`, :func:`break_worker2`) so that the chapter starts from the state it describes."""
    lab = ensure_cluster(config, name=name, backend=backend, backoff=backoff, kubernetes=kubernetes)
    print(describe(lab))
    if prepare is not None:
        prepare(lab)
    return lab


def broken(role: str) -> Callable[[Cluster], pd.DataFrame]:
    """A chapter's ``prepare``: put one worker back into its broken state, then make sure the pods are there."""
    breakers = {"worker2": break_worker2, "worker3": break_worker3}

    def prepare(lab: Cluster) -> pd.DataFrame:
        breakers[role](lab)
        return ensure_pods(lab)
    return prepare


def lab_backoff(lab: Cluster) -> float:
    """The cluster's sandbox retry back-off in seconds (the kubelet's: 10 s)."""
    return lab.capabilities.sandbox_backoff


def describe(lab: Cluster) -> str:
    """One line saying which backend and which kubelet produced the outputs that follow."""
    return (f"Outputs produced on the {lab.capabilities.describe()}: cluster {lab.name!r}, "
            f"{len(lab.node_names())} nodes.")


def wait_time(lab: Cluster, timeout: float | None = None) -> float:
    """``timeout``, or how long a pod may take on this backend to get where it is going."""
    return timeout_for(lab, timeout)


def private_config(folder: str | Path, source: str | Path | None = None) -> Path:
    """Copy ``kind/config`` and ``kind/cni`` into ``folder``; returns the copied config.

    A lab built from the copy mounts ``folder/empty`` over worker2's ``/opt/cni``, not the repository's
    ``kind/empty``, so it can run beside a lab built from ``kind/config``.
    """
    folder, kind_dir = Path(folder), Path(source) if source else ROOT / "kind"
    shutil.copytree(kind_dir / "cni", folder / "cni", dirs_exist_ok=True)
    shutil.copy(kind_dir / "config", folder / "config")
    return folder / "config"


def apply_static(lab: Cluster, manifests: str | Path | None = None) -> list[str]:
    """``kubectl apply -f manifests/static/``: create the three echo pods; returns kubectl's lines."""
    return [lab.apply_object(spec) for spec in static_pods(lab, manifests).values()]


def delete_static_pods(lab: Cluster) -> list[str]:
    """Delete whichever of the static pods exist, waiting until they are gone."""
    return [scenario.delete_pod(lab, name) for name in static_pods(lab) if pod_phase(lab, name) is not None]


def pod_events(lab: Cluster, pod: str, current: bool = True) -> pd.DataFrame:
    """The events of a pod, oldest first; with ``current``, only those of the pod that exists now (by uid)."""
    return heal.pod_events(lab, pod, current=current)


def watch_attempts(lab: Cluster, pod: str, count: int = 3, timeout: float | None = None,
                   interval: float = 0.02) -> list[float]:
    """Watch a failing pod's next ``count`` failed sandbox attempts; their times (epoch seconds).

    Where the runtime records its attempts (``Cluster.runtime_times``), their times are the runtime's own;
    elsewhere each attempt is timed when its event appears or its count goes up (events carry whole seconds
    only), to within ``interval`` plus one read of the events. A progress bar shows the wait.
    """
    deadline = Deadline(timeout or lab.capabilities.retry_bounds[1] * (count + 1) + 30)
    recorded = lab.runtime_times(lab.pod(pod))
    seen = len(recorded.attempts) if recorded is not None else sandbox_failure_count(lab, pod)
    times: list[float] = []
    with progress.bar(count, f"failed attempts of {pod}") as bar:
        while len(times) < count:
            if deadline.passed:
                raise WaitTimeout(f"only {len(times)} failed attempts of {pod} seen; expected {count}"
                                  f"{'' if recorded is not None else _hidden_attempts(seen, lab)}")
            before = time.time()
            if recorded is not None:
                recorded = lab.runtime_times(lab.pod(pod)) or recorded
                new = recorded.attempts[seen:seen + count - len(times)]
                seen += len(new)
            else:
                now_seen = sandbox_failure_count(lab, pod)
                new = [before] if now_seen > seen else []
                seen = max(seen, now_seen)
            times += new
            bar.update(len(new))
            deadline.sleep(interval)
    return times


def _hidden_attempts(seen: int, lab: Cluster) -> str:
    """Why fewer attempts than expected were seen, when the events are past the kubelet's spam filter."""
    if seen < pod_rules.SPAM_BURST:
        return ""
    refill = kubelet.scaled(pod_rules.SPAM_REFILL, lab.capabilities.sandbox_backoff)
    return (f"; the pod has {seen} failures in events, past the kubelet's spam filter "
            f"({pod_rules.SPAM_BURST} events per object, then one per {refill:g} s), "
            "which drops further attempts: recreate the pod to see them")


def ensure_pods(lab: Cluster, timeout: float | None = None) -> pd.DataFrame:
    """Apply the static pods that are missing and wait until each shows its node's state.

    A pod on a node with ``portmap`` must be Running, and answer curl if portmap mapped its hostPort
    (a container is Running from its process's start, a moment before its server listens); on a node
    without ``portmap``, it must have failed once. Returns :meth:`Cluster.pods`.
    """
    pods = static_pods(lab)
    for name in pods:
        if pod_phase(lab, name) is None:
            lab.apply_object(pods[name])
    for name, spec in pods.items():
        if spec.node_name and not has_portmap(lab, spec.node_name):
            if pod_phase(lab, name) != "Running":
                wait_for_failure(lab, name, timeout=timeout)
        else:
            lab.wait_for_pod(name, "Running", timeout=wait_time(lab, timeout))
            if spec.node_name and not pod_dnat(lab, name).empty:
                wait_for_curl(lab, spec.node_name, timeout=timeout)
    return lab.pods()


# -- what a node has -------------------------------------------------------------------------
def ls(lab: Cluster, node_name: str, folder: str = CNI_BIN) -> pd.DataFrame:
    """A node's folder as ``ls -al`` shows it: name, size (bytes), mode, and the target of a symlink.

    An absent folder gives an empty frame.
    """
    script = (f'[ -d {folder} ] || exit 0; cd {folder} && '
              "find . -mindepth 1 -maxdepth 1 -printf '%P\\t%s\\t%M\\t%l\\n' | sort")
    rows = []
    for line in lab.exec(node_name, script).splitlines():
        if not line.strip():
            continue
        name, size, mode, target = (line.split("\t") + ["", "", ""])[:4]
        rows.append({"name": name, "size": int(size), "mode": mode, "target": target or None})
    return pd.DataFrame(rows, columns=["name", "size", "mode", "target"])


def cni_bin(lab: Cluster, node_name: str) -> pd.DataFrame:
    """``ls -al /opt/cni/bin`` of a node as a DataFrame (name, size, mode, target)."""
    return ls(lab, node_name, CNI_BIN)


def cni_bin_table(lab: Cluster) -> pd.DataFrame:
    """Every node's ``/opt/cni/bin`` side by side: one row per plugin, one column per node (size in bytes)."""
    sizes = {}
    for n in lab.node_names():
        frame = cni_bin(lab, n)
        sizes[n] = frame.set_index("name")["size"]
    table = pd.DataFrame(sizes)
    return table.sort_index().astype("Int64")


def cni_files(lab: Cluster, node_name: str) -> dict[str, list[str]]:
    """The walkthrough's ``ls /opt/cni/bin /etc/cni/net.d``: file names per folder."""
    return {folder: ls(lab, node_name, folder)["name"].tolist() for folder in (CNI_BIN, NET_D)}


def net_d_table(lab: Cluster) -> pd.DataFrame:
    """One row per node: the files of ``/etc/cni/net.d``, the one the runtime picks (model.cni, as doctor
    reads it), whether it chains portmap with ``capabilities.portMappings``, and why there is no network
    when there is none."""
    rows = []
    for n in lab.node_names():
        choice = cni_choice(lab, n)
        chosen = choice.chosen
        rows.append({"node": n, "/etc/cni/net.d": ", ".join(sorted(choice.files, key=str.encode)),
                     "chosen": chosen.file if chosen else None, "chains portmap": choice.chains_portmap,
                     "problem": choice.error or ""})
    return pd.DataFrame(rows)


def primary_plugin(lab: Cluster) -> str:
    """The first plugin of the lab's chained conflist: ``cilium-cni`` on kind, ``kindlab-cni`` on netns."""
    return str(json.loads(chained_conflist_source(lab).read_text())["plugins"][0]["type"])


def cni_versions(lab: Cluster, node_name: str) -> dict[str, str]:
    """What a node runs of CNI: the plugins' package and version (the cluster's own reading of it) and what
    ``portmap`` itself says (Debian's builds print "version unknown", so the package is the version to go by)."""
    plugin = (lab.exec(node_name, f"{CNI_BIN}/portmap 2>&1 || true", check=False).strip().splitlines()
              if has_portmap(lab, node_name) else [])
    protocols = next((line.split(":", 1)[1].strip() for line in plugin if "versions supported" in line), "")
    return {"package": lab.capabilities.cni_plugins,
            "portmap says": plugin[0] if plugin else "(no portmap in /opt/cni/bin)",
            "CNI protocol versions": protocols}


def dnat_rules(lab: Cluster, node_name: str) -> pd.DataFrame:
    """The node's DNAT rules (``nat`` table) as :mod:`kindlab.iptables` rows."""
    rules = iptables.node_rules(lab, node_name).rules
    return rules[rules["target"] == "DNAT"].reset_index(drop=True)


def pod_dnat(lab: Cluster, pod: str) -> pd.DataFrame:
    """The DNAT rules on the pod's node that lead to the pod's IP: what portmap wrote for its hostPorts."""
    p = lab.pod(pod)
    node = pod_rules.node_name(p)
    if node is None:
        raise KindlabError(f"pod {pod!r} has no node yet, so no hostPort rules; wait until it is scheduled")
    return dnat_to(dnat_rules(lab, node), pod_rules.pod_ip(p))


def dnat_to(rules: pd.DataFrame, ip: str | None) -> pd.DataFrame:
    """The DNAT rules among ``rules`` whose destination is ``ip`` (any port)."""
    if not ip:
        return rules.iloc[0:0]
    dnat = rules[rules["target"] == "DNAT"]
    return dnat[dnat["to_destination"].astype(str).str.startswith(f"{ip}:")].reset_index(drop=True)


def hostport_chain(chain: str) -> bool:
    """True for the chains portmap writes: ``CNI-HOSTPORT-*`` and the per-pod ``CNI-DN-*`` (model.portmap)."""
    return is_portmap_chain(chain)


def portmap_rows(rules: pd.DataFrame) -> pd.DataFrame:
    """The rules of portmap's hostPort plumbing: in its chains, or jumping to them."""
    mentions = f"{re.escape(GREP_WORD)}|{re.escape(POD_CHAIN_PREFIX)}"
    return rules[rules["rule"].astype(str).str.contains(mentions, regex=True)]


def portmap_dnat(rules: pd.DataFrame) -> pd.DataFrame:
    """portmap's DNAT rules (in ``CNI-DN-*`` chains); kube-proxy's ``KUBE-SEP-*`` DNATs are not counted."""
    dnat = rules[rules["target"] == "DNAT"]
    return dnat[dnat["chain"].astype(str).str.startswith(POD_CHAIN_PREFIX)]


def rule_owner(chain: str, target: str | None = None) -> str:
    """Who writes a nat rule on a node, from its chain (or, in a built-in chain, the chain it jumps to):
    portmap (``CNI-HOSTPORT-*``, ``CNI-DN-*``), kube-proxy (``KUBE-*``) or the primary plugin."""
    for name in (chain, str(target or "")):
        if hostport_chain(name):
            return "portmap"
        if name.startswith("KUBE-"):
            return "kube-proxy"
    return "primary plugin"


def label_changes(changes: pd.DataFrame) -> pd.DataFrame:
    """:func:`kindlab.iptables.diff`'s rows with a ``by`` column: which component made each change."""
    owners = [rule_owner(str(c), None if pd.isna(t) else str(t)) for c, t in zip(changes["chain"], changes["target"],
                                                                               strict=True)]
    return changes.assign(by=owners)


def flat_conflist(conf: dict) -> dict:
    """A conflist as one column: name, cniVersion, and each plugin as JSON (to compare two side by side)."""
    plugins = {f"plugins[{i}]": json.dumps(p) for i, p in enumerate(conf["plugins"])}
    return {"name": conf["name"], "cniVersion": conf["cniVersion"], **plugins}


def hostport_rules(lab: Cluster, node_name: str) -> list[str]:
    """The lines of the node's ``iptables-save`` that mention HOSTPORT (the walkthrough's grep)."""
    return [line for line in lab.exec(node_name, "iptables-save").splitlines() if GREP_WORD in line]


# -- portmap's two backends ------------------------------------------------------------------
#: The values of portmap's ``backend`` field (CNI plugins 1.6 and later).
PORTMAP_BACKENDS = ("iptables", "nftables")


def backend_conflist(lab: Cluster, backend: str = "nftables") -> tuple[str, str]:
    """(file name, text): the lab's chained conflist with ``"backend": backend`` in its portmap, named so that
    it sorts before the mounted one (``000-kindlab-portmap.conflist`` -> ``000-kindlab-nftables.conflist``):
    the runtime picks the first file of ``/etc/cni/net.d`` in byte order."""
    src = chained_conflist_source(lab)
    conf = json.loads(src.read_text())
    for plugin in conf["plugins"]:
        if plugin.get("type") == "portmap":
            plugin["backend"] = backend
    name = src.name.replace("portmap", backend, 1)
    if name >= src.name:
        raise KindlabError(f"{name} would not sort before {src.name}: the runtime would keep using {src.name}")
    return name, json.dumps(conf, indent=2) + "\n"


def use_portmap_backend(lab: Cluster, node_name: str, backend: str | None, pod: str | None = None,
                        timeout: float | None = None) -> str | None:
    """Make ``node_name``'s chained portmap write its rules with ``backend`` ("nftables", "iptables"), or, with
    None, go back to the lab's own conflist; returns the file written (None when going back).

    ``pod`` (default the node's echo pod) is deleted first, so that its CNI DEL runs with the config that wrote its
    rules (portmap's DEL clears only the backend it is configured with), then applied again and awaited.
    """
    pod = pod or f"echo-{node_name}"
    if pod_phase(lab, pod) is not None:
        scenario.delete_pod(lab, pod)
    source = chained_conflist_source(lab).name
    switched = {source.replace("portmap", b, 1) for b in PORTMAP_BACKENDS}
    for name in set(lab.exec(node_name, ["ls", "-1A", NET_D]).split()) & switched:
        lab.exec(node_name, ["rm", "-f", f"{NET_D}/{name}"])   # an earlier switch's file
    written = None
    if backend is not None:
        written, text = backend_conflist(lab, backend)
        lab.exec(node_name, ["sh", "-c", f"cat > {NET_D}/{written}"], input=text)
    apply_pod(lab, pod)
    lab.wait_for_pod(pod, "Running", timeout=wait_time(lab, timeout))
    return written


def nft_rules(lab: Cluster, node_name: str) -> pd.DataFrame:
    """portmap's nftables rules on a node (``nft -j list table ip cni_hostport``, :func:`kindlab.iptables.parse_nft`);
    empty where the node has no such table."""
    return iptables.node_nft_rules(lab, node_name)


def portmap_backends(lab: Cluster, node_name: str) -> pd.DataFrame:
    """Which backend holds portmap's rules on a node: iptables (its chain ``CNI-HOSTPORT-DNAT`` in the nat table)
    and nftables (its table ``ip cni_hostport``): whether each exists, and its DNAT rules to a pod."""
    nat = iptables.node_rules(lab, node_name, table="nat")
    nft = nft_rules(lab, node_name)
    tables = lab.exec(node_name, ["nft", "list", "tables"]).split("\n")
    return pd.DataFrame([
        {"backend": "iptables", "where": "nat chain CNI-HOSTPORT-DNAT",
         "exists": "CNI-HOSTPORT-DNAT" in set(nat.chains["chain"].astype(str)),
         "DNAT rules": len(portmap_dnat(nat.rules)), "how to look": "iptables-save -t nat"},
        {"backend": "nftables", "where": "table ip cni_hostport", "exists": "table ip cni_hostport" in tables,
         "DNAT rules": int((nft["target"] == "DNAT").sum()), "how to look": "nft list table ip cni_hostport"},
    ])


# -- curl -----------------------------------------------------------------------------------
def curl_node(lab: Cluster, node_name: str, timeout: float = 3.0) -> HttpResponse:
    """curl http://NODE_IP/ (hostPort 80) from the host side; raises CurlError when refused."""
    return lab.curl(f"http://{lab.node_ip(node_name)}/", timeout=timeout)


def try_curl(lab: Cluster, node_name: str, timeout: float = 3.0) -> HttpResponse | CurlError:
    """Like :func:`curl_node`, but returns the error instead of raising it."""
    try:
        return curl_node(lab, node_name, timeout)
    except CurlError as exc:
        return exc


def echo_hostname(body: str) -> str | None:
    """The hostname line of an echo-server answer: ``-> My hostname is: NAME``."""
    m = re.search(r"My hostname is:\s*(\S+)", body)
    return m.group(1) if m else None


def requesting_ip(body: str) -> str | None:
    """The client address of an echo-server answer (``-> Requesting IP: 172.18.0.1:51598`` → ``172.18.0.1``)."""
    m = re.search(r"Requesting IP:\s*\[?([0-9a-fA-F.:]+?)\]?:\d+\s", body)
    return m.group(1) if m else None


def wait_for_curl(lab: Cluster, node_name: str, timeout: float | None = None) -> HttpResponse:
    """Poll curl on the node's hostPort until it answers 200."""
    def attempt():
        got = try_curl(lab, node_name, timeout=1.0)
        return got if isinstance(got, HttpResponse) and got.status == 200 else None
    return lab.wait_for(attempt, timeout=wait_time(lab, timeout), interval=0.05, what=f"curl 200 from {node_name}")


def portmap_source(lab: Cluster) -> str:
    """Where the fix's ``portmap`` comes from: the backend's healthy copy, or a healthy node's."""
    return lab.capabilities.portmap_source or f"{node(lab, 'worker')}:{CNI_BIN}/portmap"


def sleep_with_bar(seconds: float, desc: str = "waiting") -> None:
    """Sleep ``seconds``, drawing a progress bar."""
    steps = max(1, int(seconds / 0.1))
    with progress.bar(steps, desc) as bar:
        for _ in range(steps):
            time.sleep(seconds / steps)
            bar.update(1)


def heal_experiment(lab: Cluster, delays: list[float], repeats: int = 1, role: str = "worker2") -> pd.DataFrame:
    """:func:`kindlab.heal.experiment` on a worker's pod, one run at a time under one progress bar."""
    pod = pod_name(lab, role)
    plan = [d for _ in range(repeats) for d in delays]
    frames = []
    with progress.bar(len(plan), f"break, fix and heal {pod}") as bar:
        for delay in plan:
            frames.append(heal.experiment(lab, delays=[delay], repeats=1, pod=pod))
            bar.update(1)
    return pd.concat(frames, ignore_index=True).assign(run=range(len(plan)))


# -- whole-cluster states ---------------------------------------------------------------------
def reset(lab: Cluster, pods: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """The cluster as the walkthrough creates it: worker2 and worker3 broken; the static pods applied, or none."""
    if not pods:
        delete_static_pods(lab)
    break_worker2(lab, timeout=timeout)
    break_worker3(lab, timeout=timeout)
    if pods:
        ensure_pods(lab, timeout=timeout)
    return state(lab)


def fix_all(lab: Cluster, timeout: float | None = None) -> pd.DataFrame:
    """Apply both fixes and wait until every static pod answers curl with 200."""
    ensure_pods(lab, timeout=timeout)
    fix_worker2(lab)
    lab.wait_for_pod(pod_name(lab, "worker2"), "Running", timeout=wait_time(lab, timeout))
    if pod_dnat(lab, pod_name(lab, "worker3")).empty:
        fix_worker3(lab, recreate=True, timeout=timeout)
    for role in WORKERS:
        wait_for_curl(lab, node(lab, role), timeout=timeout)
    return state(lab)


def state(lab: Cluster) -> pd.DataFrame:
    """One row per worker: portmap present, chained conflist, pod phase, a DNAT rule to the pod, curl's result."""
    rows = []
    for role in WORKERS:
        n, pod = node(lab, role), pod_name(lab, role)
        got = try_curl(lab, n, timeout=1.0)
        phase = pod_phase(lab, pod)
        rows.append({
            "node": n,
            "portmap": has_portmap(lab, n),
            "chained conflist": ", ".join(chained_conflists(lab, n)) or None,
            "pod": phase,
            "DNAT to pod": phase is not None and not pod_dnat(lab, pod).empty,
            "curl": got.status if isinstance(got, HttpResponse) else type(got).__name__,
        })
    return pd.DataFrame(rows)
