"""Scenario helpers for the notebooks: bring a lab to the state a step of the walkthrough needs, in a line.

The walkthrough's cluster has three workers:

- ``worker``: healthy; the chained conflist is mounted in and the CNI package is there;
- ``worker2``: an empty host folder is mounted over ``/opt/cni``, so ``portmap`` is missing;
- ``worker3``: the CNI package is there, the chained conflist is not.

``break_*`` puts a worker back into its broken state (recreating its pod when the pod was healthy, so the
pod shows the failure again) and ``fix_*`` applies the walkthrough's fix. Every helper works on both
backends, through :class:`kindlab.Cluster`'s API and the topology's mounts.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from . import backends, heal, iptables, objects
from .cluster import Cluster, HttpResponse
from .errors import CurlError, KindlabError, NotFound, WaitTimeout

ROOT = Path(__file__).resolve().parents[1]
CNI_BIN = "/opt/cni/bin"
NET_D = "/etc/cni/net.d"
WORKERS = ("worker", "worker2", "worker3")
FAILED_SANDBOX = "FailedCreatePodSandBox"


# -- progress -------------------------------------------------------------------------------
def progress(total: int, desc: str):
    """A tqdm bar on stdout, live in a terminal.

    Elsewhere (a notebook executed for the book) it prints its final state only, once: the book would
    otherwise show every refresh on a line of its own.
    """
    from tqdm import tqdm

    live = sys.stdout.isatty()
    return tqdm(total=total, desc=desc, file=sys.stdout, ncols=80, bar_format="{desc}: {n}/{total} {bar} {elapsed}",
                mininterval=0.2 if live else 1e9, delay=0 if live else 1e-3)


# -- the cluster ------------------------------------------------------------------------
def ensure_cluster(config: str | Path = "../kind/config", name: str = "kind", backend: str | None = None,
                   backoff: float | None = None, progress: bool = False) -> Cluster:
    """Get or create cluster ``name`` from ``config``, with the sandbox retry back-off ``backoff`` (netns)."""
    return backends.up(config, name=name, backend=backend, backoff=backoff, progress=progress)


def fresh_cluster(config: str | Path = "../kind/config", name: str = "kind", backend: str | None = None,
                  backoff: float | None = None, progress: bool = True) -> tuple[Cluster, float]:
    """Delete cluster ``name`` if it exists, create it again, and return it with the seconds ``up`` took."""
    backends.delete(name, backend=backend)
    start = time.perf_counter()
    lab = backends.up(config, name=name, backend=backend, backoff=backoff, progress=progress)
    return lab, time.perf_counter() - start


def lab_backoff(lab: Cluster) -> float:
    """The lab's sandbox retry back-off in seconds (the kubelet's 10 s on kind)."""
    return heal.lab_backoff(lab)


def describe(lab: Cluster) -> str:
    """One line saying which backend produced the outputs that follow."""
    return (f"Outputs produced on the {lab.backend} backend: cluster {lab.name!r}, {len(lab.node_names())} nodes, "
            f"sandbox retry back-off {lab_backoff(lab):g} s.")


def wait_time(lab: Cluster, timeout: float | None = None) -> float:
    """``timeout``, or how long a pod may take to get where it is going: 60 s on netns, 300 s on kind."""
    return timeout if timeout is not None else (300.0 if lab.backend == "kind" else 60.0)


# -- names, manifests, pods ----------------------------------------------------------------
def node(lab: Cluster, role: str) -> str:
    """The node name for a role suffix as kind names it: ``node(lab, "worker2") == "kind-worker2"``."""
    return lab.check_node(f"{lab.name}-{role}")


def pod_name(lab: Cluster, role: str) -> str:
    """The walkthrough's echo pod pinned to a worker: ``echo-kind-worker2``."""
    return f"echo-{node(lab, role)}"


def repo_root(lab: Cluster | None = None) -> Path:
    """The repository the lab's config comes from (``kind/config`` → its grandparent)."""
    source = getattr(getattr(lab, "topology", None), "source", None)
    if source is not None and (Path(source).resolve().parents[1] / "manifests").is_dir():
        return Path(source).resolve().parents[1]
    return ROOT


def static_pods(lab: Cluster, manifests: str | Path | None = None) -> dict[str, objects.PodSpec]:
    """The static pods of ``manifests/static``, renamed for the lab's cluster name, by pod name."""
    path = Path(manifests) if manifests else repo_root(lab) / "manifests" / "static"
    out = {}
    for spec in objects.load(path):
        if not isinstance(spec, objects.PodSpec):
            continue
        if lab.name != "kind" and spec.node_name and spec.node_name.startswith("kind-"):
            node_name = lab.name + spec.node_name[len("kind"):]
            spec = dataclasses.replace(spec, name=spec.name.replace(spec.node_name, node_name), node_name=node_name)
        out[spec.name] = spec
    return out


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
    return [lab.delete_pod(name, wait=True) for name in static_pods(lab) if pod_phase(lab, name) is not None]


def pod_phase(lab: Cluster, pod: str) -> str | None:
    """The pod's phase, or None when there is no such pod."""
    try:
        return lab.pod(pod).get("status", {}).get("phase")
    except NotFound:
        return None


def sandbox_failures(lab: Cluster, pod: str) -> int:
    """How many times the current pod's sandbox failed, summed over its FailedCreatePodSandBox events."""
    ev = pod_events(lab, pod)
    return int(ev.loc[ev["reason"] == FAILED_SANDBOX, "count"].sum()) if len(ev) else 0


def pod_events(lab: Cluster, pod: str, current: bool = True) -> pd.DataFrame:
    """The events of a pod, oldest first; with ``current``, only those of the pod that exists now (by uid)."""
    return heal.pod_events(lab, pod, current=current)


def apply_pod(lab: Cluster, pod: str, manifests: str | Path | None = None) -> str:
    """Create one of the walkthrough's static pods; returns kubectl's line."""
    return lab.apply_object(static_pods(lab, manifests)[pod])


def recreate_pod(lab: Cluster, pod: str, manifests: str | Path | None = None) -> list[str]:
    """``kubectl delete`` then ``kubectl apply`` one static pod, as the walkthrough does for worker3."""
    lines = []
    if pod_phase(lab, pod) is not None:
        lines.append(lab.delete_pod(pod, wait=True))
    lines.append(apply_pod(lab, pod, manifests))
    return lines


def wait_for_failure(lab: Cluster, pod: str, after: int = 0, timeout: float | None = None) -> int:
    """Wait until the pod's sandbox has failed more than ``after`` times; returns the count."""
    return lab.wait_for(lambda: (n := sandbox_failures(lab, pod)) > after and n, timeout=wait_time(lab, timeout),
                        what=f"a {FAILED_SANDBOX} event for {pod}")


def watch_attempts(lab: Cluster, pod: str, count: int = 3, timeout: float | None = None,
                   interval: float = 0.02) -> list[float]:
    """Watch a failing pod's next ``count`` failed sandbox attempts; their times (epoch seconds).

    Each attempt is timed when its event's count goes up (events carry whole seconds only), to within
    ``interval`` plus one read of the events. A progress bar shows the wait.
    """
    backoff = lab_backoff(lab)
    deadline = time.time() + (timeout or backoff * 1.5 * (count + 1) + 30)
    seen = sandbox_failures(lab, pod)
    times: list[float] = []
    with progress(count, f"failed attempts of {pod}") as bar:
        while len(times) < count:
            if time.time() > deadline:
                raise WaitTimeout(f"only {len(times)} failed attempts of {pod} seen; expected {count}")
            before = time.time()
            now_seen = sandbox_failures(lab, pod)
            if now_seen > seen:
                times.append(before)
                seen = now_seen
                bar.update(1)
            time.sleep(interval)
    return times


def ensure_pods(lab: Cluster, timeout: float | None = None) -> pd.DataFrame:
    """Apply the static pods that are missing and wait until each shows its node's state.

    A pod on a node with ``portmap`` must be Running; on a node without, it must have failed once.
    Returns :meth:`Cluster.pods`.
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


def has_portmap(lab: Cluster, node_name: str) -> bool:
    """True when the node's ``/opt/cni/bin`` holds an executable ``portmap``."""
    return lab.exec(node_name, f"[ -x {CNI_BIN}/portmap ] && echo yes || echo no").strip() == "yes"


def chained_conflists(lab: Cluster, node_name: str) -> list[str]:
    """The ``*-portmap.conflist`` files in a node's ``/etc/cni/net.d``."""
    return [n for n in ls(lab, node_name, NET_D)["name"] if n.endswith("-portmap.conflist")]


def chosen_config(files: list[str]) -> str | None:
    """The config the runtime picks from ``/etc/cni/net.d``: the first .conf/.conflist/.json in byte order."""
    candidates = sorted((f for f in files if f.endswith((".conf", ".conflist", ".json"))), key=lambda f: f.encode())
    return candidates[0] if candidates else None


def net_d_table(lab: Cluster) -> pd.DataFrame:
    """One row per node: the files of ``/etc/cni/net.d``, the one the runtime picks, and whether it chains portmap."""
    rows = []
    for n in lab.node_names():
        files = ls(lab, n, NET_D)["name"].tolist()
        chosen = chosen_config(files)
        chains = False
        if chosen:
            text = lab.exec(n, ["cat", f"{NET_D}/{chosen}"])
            chains = '"portmap"' in text.replace(" ", "")
        rows.append({"node": n, "/etc/cni/net.d": ", ".join(files), "chosen": chosen, "chains portmap": chains})
    return pd.DataFrame(rows)


def primary_plugin(lab: Cluster) -> str:
    """The first plugin of the lab's chained conflist: ``cilium-cni`` on kind, ``kindlab-cni`` on netns."""
    return str(json.loads(chained_conflist_source(lab).read_text())["plugins"][0]["type"])


def cni_versions(lab: Cluster, node_name: str) -> dict[str, str]:
    """What a node says about its CNI plugins: the package (if dpkg knows it) and ``portmap``'s own version lines."""
    pkg = lab.exec(node_name, "dpkg-query -W -f '${Package} ${Version}\\n' containernetworking-plugins kubernetes-cni "
                   "2>/dev/null || true", check=False).strip()
    plugin = (lab.exec(node_name, f"{CNI_BIN}/portmap 2>&1 || true", check=False).strip().splitlines()
              if has_portmap(lab, node_name) else [])
    protocols = next((line.split(":", 1)[1].strip() for line in plugin if "versions supported" in line), "")
    return {"package": pkg or "(not a dpkg package on this node)",
            "portmap says": plugin[0] if plugin else "(no portmap in /opt/cni/bin)",
            "CNI protocol versions": protocols}


def dnat_rules(lab: Cluster, node_name: str) -> pd.DataFrame:
    """The node's DNAT rules (``nat`` table) as :mod:`kindlab.iptables` rows."""
    rules = iptables.node_rules(lab, node_name).rules
    return rules[rules["target"] == "DNAT"].reset_index(drop=True)


def pod_dnat(lab: Cluster, pod: str) -> pd.DataFrame:
    """The DNAT rules on the pod's node that lead to the pod's IP: what portmap wrote for its hostPorts."""
    p = lab.pod(pod)
    ip, node_name = p.get("status", {}).get("podIP"), p.get("spec", {}).get("nodeName")
    rules = dnat_rules(lab, node_name)
    if not ip:
        return rules.iloc[0:0]
    return rules[rules["to_destination"].astype(str).str.startswith(f"{ip}:")].reset_index(drop=True)


def hostport_rules(lab: Cluster, node_name: str) -> list[str]:
    """The lines of the node's ``iptables-save`` that mention HOSTPORT (the walkthrough's grep)."""
    return [line for line in lab.exec(node_name, "iptables-save").splitlines() if "HOSTPORT" in line]


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


# -- worker2: the CNI package is missing --------------------------------------------------------
def host_cni_bin(lab: Cluster) -> Path:
    """The host folder that appears as ``/opt/cni/bin`` in worker2 (``kind/empty/bin``), from its extraMounts."""
    return heal.cni_bin_folder(lab, node(lab, "worker2"))


def portmap_source(lab: Cluster) -> Path:
    """A host copy of ``portmap``: the machine's CNI package on netns, a healthy node's on kind."""
    return heal.portmap_source(lab, node(lab, "worker2"))


def fix_worker2(lab: Cluster) -> Path:
    """The walkthrough's fix: copy ``portmap`` into the host folder mounted over worker2's ``/opt/cni``.

    The copy is renamed into place, so the node never runs half a binary. Returns the host path written.
    """
    return heal.fix_portmap(lab, node(lab, "worker2"))


def break_worker2(lab: Cluster, timeout: float | None = None) -> None:
    """Put worker2 back as the config made it: no ``portmap``, and its pod failing to start.

    A pod that is Running (it started while the plugin was there) is deleted first, so that its sandbox's
    CNI DEL still finds ``portmap``, and applied again once the plugin is gone; then the pod is waited for
    until its sandbox has failed once.
    """
    worker2, pod = node(lab, "worker2"), pod_name(lab, "worker2")
    if pod_phase(lab, pod) == "Running":
        lab.delete_pod(pod, wait=True)
        heal.break_portmap(lab, worker2)
        apply_pod(lab, pod)
    else:
        heal.break_portmap(lab, worker2)
    if pod_phase(lab, pod) is not None:
        wait_for_failure(lab, pod, timeout=timeout)
    if has_portmap(lab, worker2):
        raise KindlabError(f"{worker2} still has portmap after removing it from {host_cni_bin(lab)}")


# -- worker3: the chained conflist is missing ----------------------------------------------------
def chained_conflist_source(lab: Cluster) -> Path:
    """The host file mounted into the healthy worker as its chained conflist (``kind/cni/000-…-portmap.conflist``).

    On netns the lab mounts ``000-kindlab-portmap.conflist`` where the config names
    ``000-cilium-portmap.conflist``; the node's own listing says which of the siblings is really used.
    """
    worker = node(lab, "worker")
    in_node = chained_conflists(lab, worker)
    for m in lab.topology.node(worker).mounts:
        if m.container_path.startswith(NET_D + "/") and m.container_path.endswith("-portmap.conflist"):
            for name in in_node:
                if (Path(m.host_path).with_name(name)).is_file():
                    return Path(m.host_path).with_name(name)
            return Path(m.host_path)
    raise KindlabError(f"{worker} has no chained conflist mounted into {NET_D}; check its extraMounts")


def fix_worker3(lab: Cluster, recreate: bool = False, timeout: float | None = None) -> str:
    """The walkthrough's fix: ``docker cp`` the chained conflist into worker3's ``/etc/cni/net.d``.

    With ``recreate``, also delete and apply worker3's pod and wait until it is Running. Returns the file
    name written.
    """
    src = chained_conflist_source(lab)
    lab.cp(str(src), f"{node(lab, 'worker3')}:{NET_D}/{src.name}")
    if recreate:
        pod = pod_name(lab, "worker3")
        recreate_pod(lab, pod)
        lab.wait_for_pod(pod, "Running", timeout=wait_time(lab, timeout))
    return src.name


def break_worker3(lab: Cluster, timeout: float | None = None) -> None:
    """Put worker3 back as the config made it: no chained conflist, and its pod running without portmap.

    A pod whose node DNATs to it (it was created with the conflist in place) is deleted while the conflist
    is still there, so that its sandbox's CNI DEL runs portmap and removes its rules, then applied again.
    """
    worker3, pod = node(lab, "worker3"), pod_name(lab, "worker3")
    recreate = pod_phase(lab, pod) is not None and not pod_dnat(lab, pod).empty
    if recreate:
        lab.delete_pod(pod, wait=True)
    for name in chained_conflists(lab, worker3):
        lab.exec(worker3, ["rm", "-f", f"{NET_D}/{name}"])
    if recreate:
        apply_pod(lab, pod)
        lab.wait_for_pod(pod, "Running", timeout=wait_time(lab, timeout))


def wait_quietly(seconds: float, desc: str = "waiting") -> None:
    """Sleep ``seconds`` with a progress bar."""
    steps = max(1, int(seconds / 0.1))
    with progress(steps, desc) as bar:
        for _ in range(steps):
            time.sleep(seconds / steps)
            bar.update(1)


def heal_experiment(lab: Cluster, delays: list[float], repeats: int = 1, role: str = "worker2") -> pd.DataFrame:
    """:func:`kindlab.heal.experiment` on a worker's pod, one run at a time under one progress bar."""
    pod = pod_name(lab, role)
    plan = [d for _ in range(repeats) for d in delays]
    frames = []
    with progress(len(plan), f"break, fix and heal {pod}") as bar:
        for delay in plan:
            frames.append(heal.experiment(lab, delays=[delay], repeats=1, pod=pod, progress=False))
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
