"""Making and removing a whole lab: namespaces, mounts, provider files, state; and finding labs.

A lab is a state folder plus namespaces plus processes. `teardown` removes all three and works
from whatever is left (a half-made lab, a lab whose agent died, a state folder with no namespaces);
the processes it kills are the ones the lab's ledger names (processes.recorded), nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ...model.kubelet import KUBELET_BACKOFF
from ...progress import Reporter, quiet
from ...topology import Topology
from . import host, nodes, preflight, processes, provider
from .mounts import NodeDirs, Substitution, plan, prepare
from .names import (
    LABS_DIR,
    NETNS_DIR,
    NODE_LINK,
    STATE_ROOT,
    host_netns,
    labs_of_netns,
    netns_path,
    node_ip,
    node_netns,
    state_dir,
)
from .nodes import NodePlan, NodeView
from .real import startup
from .real import teardown as real_teardown
from .state import hostpaths
from .state.store import Store, read_json, timestamp
from .tools import run

LOCK = STATE_ROOT / "lifecycle.lock"
MACHINE_FILES = ("hostpaths.json", "hostpaths.lock")
KILL_ROUNDS = 5          # a process started while the sweep ran is found by the next round
AGENT_STOP = 5.0         # how long the agent may take to finish the work it has begun (then SIGKILL)


@contextlib.contextmanager
def locked(report: Reporter = quiet) -> Iterator[None]:
    """Serialize making and removing labs on this machine; when no lab is left, /run/kindlab goes too.
    While another process holds the lock, `report` says who, once."""
    f = _take_lock(report)
    try:
        yield
    finally:
        try:
            _tidy_root()    # still holding the lock: a waiter sees its file gone and takes a new one
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()


def _take_lock(report: Reporter = quiet) -> TextIO:
    """The flock on LOCK, on the file that is at that path once the lock is held (a holder may remove it)."""
    told = False
    while True:
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        f = open(LOCK, "a")  # closed by locked()
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                report(f"netns: waiting for {_holder(f)} to finish: labs are made and deleted one at a time on this "
                       f"machine ({LOCK})")
                told = True
            fcntl.flock(f, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(LOCK).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        f.close()


def _holder(f: TextIO) -> str:
    """Who holds the flock on `f`'s file, from /proc/locks: 'process PID (COMMAND)', or 'another kindlab'."""
    inode = os.fstat(f.fileno()).st_ino
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            words = line.split()
            if len(words) > 5 and words[1] == "FLOCK" and words[5].rsplit(":", 1)[-1] == str(inode):
                pid = int(words[4])
                said = " ".join(processes.cmdline(pid)[:4]) or "?"
                return f"process {pid} ({said[:80]})"
    return "another kindlab create or delete"


def fingerprint(topology: Topology) -> str:
    """What makes two configs the same lab: the kind config with absolute host paths."""
    return hashlib.sha256(json.dumps(topology.to_kind_config(), sort_keys=True).encode()).hexdigest()[:16]


def create(topology: Topology, backoff: float | None, kubernetes: str = "model",
           report: Reporter = quiet) -> tuple[dict[str, Any], list[Substitution]]:
    """Build the lab described by `topology`, its pods run by `kubernetes` ("model": kindlab's node agent,
    "real": the real components, real/lab.py); returns its record (also written to lab.json)."""
    cni_dir = preflight.check()
    preflight.check_overlay()
    preflight.check_layers()
    lab_name = topology.name
    real = kubernetes == "real"
    store = Store(state_dir(lab_name))
    store.create()
    record: dict[str, Any] = {
        "name": lab_name, "backend": "netns", "phase": "creating", "fingerprint": fingerprint(topology),
        "creator": [os.getpid(), processes.start_time(os.getpid())],
        "config": topology.to_kind_config(), "source": str(topology.source or ""), "created": timestamp(),
        "backoff": KUBELET_BACKOFF if backoff is None else float(backoff), "python": sys.executable,
        "cni_dir": str(cni_dir), "pod_subnet": topology.networking.pod_subnet,
        "service_subnet": topology.networking.service_subnet, "nodes": [], "substitutions": [],
        "kubernetes": kubernetes,
    }
    store.write_lab(record)
    ns_dir = store.root / "ns"
    run(["mount", "--bind", ns_dir, ns_dir], f"lab {lab_name!r}: binding its namespace folder")
    run(["mount", "--make-private", ns_dir], f"lab {lab_name!r}: making its namespace folder private")

    ips = [node_ip(n.index) for n in topology.nodes]
    plans, subs = [], []
    for node, ip in zip(topology.nodes, ips, strict=True):
        dirs = NodeDirs(store.root / "nodes" / node.name)
        dirs.make()
        mounts, node_subs = plan(topology, node, dirs, cni_dir, own=startup.own_dirs() if real else ())
        subs += node_subs
        root = prepare(lab_name, mounts, dirs)
        provider.install(topology, node, mounts, dirs, cni_dir)
        routes = [(o.pod_cidr, oip) for o, oip in zip(topology.nodes, ips, strict=True) if o.name != node.name]
        plans.append(NodePlan(lab_name=lab_name, name=node.name, role=node.role, index=node.index, ip=ip,
                              pod_cidr=node.pod_cidr, netns=node_netns(lab_name, node.name), routes=routes,
                              mounts=mounts, dirs=dirs, ns_dir=ns_dir, root=root))
    base = topology.source.parent if topology.source else None
    record["substitutions"] = substitution_lines(subs, base)
    host.create(lab_name, [n.name for n in topology.nodes])
    views = nodes.start(plans)
    record["nodes"] = [v.to_record() for v in views]
    if real:
        store.write_lab(record)     # the nodes are known to `teardown` before their components start
        record["real"] = startup.start(record, views, store.root, report)
    record["phase"] = "ready"
    store.write_lab(record)
    return record, subs


def substitution_lines(subs: list[Substitution], base: Path | None) -> list[str]:
    """One line per replaced file, naming the nodes."""
    grouped: dict[str, list[str]] = {}
    for s in subs:
        grouped.setdefault(s.line(base), []).append(s.node)
    return [f"{line} (on {', '.join(nodes)})" for line, nodes in grouped.items()]


def being_made(record: dict[str, Any]) -> bool:
    """True while the `create` that writes this record still runs."""
    pid, start = (record.get("creator") or [None, None])[:2]
    return record.get("phase") == "creating" and processes.alive(pid, start)


def broken(lab_name: str) -> str | None:
    """Why the lab `lab` cannot be used, unless it is fine or still being made."""
    record = read_json(state_dir(lab_name) / "lab.json", {"name": lab_name})
    issues = problems(record)
    return issues[0] if issues and not being_made(record) else None


def problems(record: dict[str, Any]) -> list[str]:
    """Why an existing lab cannot be used as it is (empty when it is healthy)."""
    if record.get("phase") != "ready":
        if being_made(record):
            return [f"lab {record.get('name')!r} is being made (by process {record['creator'][0]})"]
        return [f"lab {record.get('name')!r} was not completely made (its `create` was interrupted)"]
    out = []
    host_ns = netns_path(host_netns(record["name"]))
    if not host_ns.exists():
        out.append(f"the lab host namespace {host_ns.name} is gone")
    for n in record["nodes"]:
        out += NodeView.from_record(n).problems()
    return out


def teardown(lab_name: str) -> bool:
    """Remove every process, mount, namespace, host path and file of `lab`; False if nothing was there."""
    root = state_dir(lab_name)
    found = root.is_dir()
    _stop_agent(lab_name)
    found |= _kill_recorded(lab_name)
    # what the ledger cannot name: containerd's shims and the containers (real Kubernetes), found by namespace
    found |= bool(real_teardown.sweep([netns_path(n) for n in host.existing(lab_name)],
                                      sorted((root / "ns").glob("*.mnt"))))
    mounted = _mounts_under(root)
    if mounted:
        run(["umount", "-l", *mounted], f"lab {lab_name!r}: unmounting its namespaces", check=False)
    names = host.existing(lab_name)
    host.destroy(names)
    found |= bool(names)
    hostpaths.release(lab_name)
    shutil.rmtree(root, ignore_errors=True)
    return found


def _stop_agent(lab_name: str) -> None:
    """Stop the node agent as systemd stops a kubelet, SIGTERM first: it finishes the pod work it has begun,
    so every process that work starts is in the ledger before the ledger's processes are killed."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((state_dir(lab_name) / "agent.pid").read_text())
        if pid in processes.recorded(lab_name):
            processes.kill([pid], signal.SIGTERM, wait=AGENT_STOP)


def _kill_recorded(lab_name: str) -> bool:
    """Kill the processes the lab's ledger names, round after round (the agent may start one while
    it dies); True if there were any."""
    found = False
    for _ in range(KILL_ROUNDS):
        pids = processes.recorded(lab_name)
        if not pids:
            break
        found = True
        processes.kill(pids)
    return found


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root).rstrip("/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _tidy_root() -> None:
    """Remove /run/kindlab (call with the lock held) when no lab and no registered host path is left."""
    if not STATE_ROOT.exists() or _lab_dirs() or hostpaths.users():
        return
    for name in MACHINE_FILES:
        (STATE_ROOT / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        LABS_DIR.rmdir()
    with contextlib.suppress(OSError):
        NODE_LINK.rmdir()                 # the nodes' mount point for their own folder, if still there
    LOCK.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        STATE_ROOT.rmdir()


def _lab_dirs() -> list[str]:
    """Every lab state folder, whole or half-made."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return sorted(p.name for p in LABS_DIR.iterdir() if p.is_dir())
    return []


def lab_names() -> list[str]:
    """Labs that have a record (whole, being made or half-made: `problems` tells which)."""
    return [name for name in _lab_dirs() if (state_dir(name) / "lab.json").exists()]


def all_traces() -> list[str]:
    """Every lab with any trace: a state folder (with its ledger of processes) or a network namespace."""
    names = set(_lab_dirs())
    with contextlib.suppress(FileNotFoundError):
        names |= labs_of_netns([p.name for p in NETNS_DIR.iterdir()])
    return sorted(names)

