"""Measure self-healing: fix a broken node, then time the pod to Running and its hostPort to answering.

    res = heal.measure(lab, "echo-kind-worker2", lambda: heal.fix_portmap(lab, "kind-worker2"))
    df = heal.experiment(lab, delays=[0, 2, 5, 8], repeats=3)
    heal.backoff_model(10.0).curve([0, 2, 5, 8])

Changes are seen by watching (the kind backend's pod watch) or by polling (10 ms on netns), never by
sleeping. A polled transition is placed midway between the last read that missed it and the first that
saw it; on netns the agent's own record (annotation `kindlab.io/running-at`) checks it: `accuracy(df)`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from . import objects
from .cluster import Cluster, events_frame
from .errors import CurlError, KindlabError, NotFound, WaitTimeout

SANDBOX_FAILED = "FailedCreatePodSandBox"
RUNNING_AT = "kindlab.io/running-at"
ATTEMPTS = "kindlab.io/sandbox-attempts"
CNI_BIN = PurePosixPath("/opt/cni/bin")
PACKAGE_PORTMAP = Path("/usr/lib/cni/portmap")
POLL = 0.01  # netns: reading the lab's store costs well under 1 ms
API_POLL = 0.1  # kind: each read is an API server request
CURL_POLL = 0.05
KUBELET_BACKOFF = 10.0
KUBELET_JITTER = 0.5
EXPERIMENT_COLUMNS = ["run", "delay", "running_after", "curl_after", "attempts_before", "attempts_after",
                      "backoff", "agent_running_after", "error"]


# -- results -----------------------------------------------------------------------------
@dataclass
class HealResult:
    """What one fix did: seconds from the fix to Running and to a working hostPort, and the attempts.

    `attempt_times` are the failed attempts' epochs: the agent's own record on netns (to the microsecond),
    else the events' timestamps (whole seconds).
    """

    pod: str
    fix_at: float
    running_after: float | None
    curl_after: float | None
    attempts_before: int
    attempts_after: int
    agent_running_after: float | None = None
    events: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    attempt_times: list[float] = field(default_factory=list, repr=False)

    @property
    def error(self) -> float | None:
        """agent_running_after - running_after (s), where both are known."""
        if self.agent_running_after is None or self.running_after is None:
            return None
        return self.agent_running_after - self.running_after

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields (and error) as a dict; events as a list of records."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "events"}
        out["error"] = self.error
        out["events"] = self.events.to_dict(orient="records")
        return out


# -- reading pods and events ---------------------------------------------------------------
def _find_pod(lab: Cluster, pod: str) -> dict[str, Any] | None:
    try:
        return lab.pod(pod)
    except NotFound:
        return None


def is_running(pod: dict[str, Any] | None) -> bool:
    """True when a v1 Pod dict is Running and Ready (`kubectl get pods`: 1/1 Running), as the agent's
    kindlab.io/running-at records it."""
    status = (pod or {}).get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_uid(pod: dict[str, Any] | None) -> str | None:
    """The pod's metadata.uid, if the backend gives one."""
    return ((pod or {}).get("metadata") or {}).get("uid")


def _epoch(timestamp: Any) -> float | None:
    """An RFC 3339 string (or epoch number) as epoch seconds."""
    if timestamp in (None, ""):
        return None
    if isinstance(timestamp, int | float):
        return float(timestamp)
    try:
        return datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def agent_running_at(pod: dict[str, Any] | None) -> float | None:
    """The agent's own recorded Running time (epoch), from annotation kindlab.io/running-at; None elsewhere."""
    annotations = ((pod or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return float(annotations[RUNNING_AT])
    except (KeyError, TypeError, ValueError):
        return None


def agent_attempts(pod: dict[str, Any] | None) -> list[float] | None:
    """The agent's recorded failed sandbox attempts (epochs), from kindlab.io/sandbox-attempts; None elsewhere."""
    annotations = ((pod or {}).get("metadata") or {}).get("annotations") or {}
    try:
        return [float(t) for t in json.loads(annotations[ATTEMPTS])]
    except (KeyError, TypeError, ValueError):
        return None


def sandbox_failures(lab: Cluster, pod: str, uid: str | None = None, since: float | None = None) -> list[dict]:
    """The pod's Warning FailedCreatePodSandBox events (of pod `uid`, or first seen after `since`)."""
    out = []
    for e in lab.event_list():
        obj = e.get("involvedObject") or {}
        if e.get("reason") != SANDBOX_FAILED or obj.get("name") != pod:
            continue
        if uid and obj.get("uid") and obj["uid"] != uid:
            continue
        if since is not None and not (uid and obj.get("uid")):
            first = _epoch(e.get("firstTimestamp") or e.get("eventTime"))
            if first is not None and first < since - 1.0:  # RFC 3339 may round to the second
                continue
        out.append(e)
    return out


def failed_attempts(lab: Cluster, pod: str, uid: str | None = None, since: float | None = None) -> int:
    """How many sandbox attempts of the pod failed: the sum of its FailedCreatePodSandBox counts."""
    return sum(int(e.get("count") or 1) for e in sandbox_failures(lab, pod, uid, since))


def attempt_times(lab: Cluster, pod: dict[str, Any]) -> list[float]:
    """The pod's failed sandbox attempts (epochs): the agent's record, else each event's first/last timestamps."""
    recorded = agent_attempts(pod)
    if recorded is not None:
        return sorted(recorded)
    name, uid = pod["metadata"]["name"], pod_uid(pod)
    stamps = {_epoch(e.get(k)) for e in sandbox_failures(lab, name, uid) for k in ("firstTimestamp", "lastTimestamp")}
    return sorted(t for t in stamps if t is not None)


def pod_events(lab: Cluster, pod: str, current: bool = False) -> pd.DataFrame:
    """The events about `pod`, as `lab.events()` gives them; with `current`, only the existing pod's (by uid)."""
    uid = pod_uid(_find_pod(lab, pod)) if current else None
    return events_frame([e for e in lab.event_list() if (e.get("involvedObject") or {}).get("name") == pod
                         and (not uid or (e.get("involvedObject") or {}).get("uid") in (None, uid))])


# -- watching ------------------------------------------------------------------------------
def _poll_reads(lab: Cluster, pod: str, interval: float) -> Iterator[tuple[float, bool, dict[str, Any] | None]]:
    """(read time, False, pod) forever: the read time is the midpoint of the call that read the pod."""
    while True:
        start = time.time()
        value = _find_pod(lab, pod)
        yield (start + time.time()) / 2, False, value
        time.sleep(interval)


def _watch_reads(lab: Cluster, pod: str, interval: float,
                 timeout: float) -> Iterator[tuple[float, bool, dict[str, Any] | None]]:
    """(time, pushed, pod): the backend's pod watch if it has one (kind: the Kubernetes watch), else polling."""
    watch = getattr(lab, "watch_pods", None)
    if watch is None:
        yield from _poll_reads(lab, pod, interval)
        return
    to_epoch = time.time() - time.monotonic()
    for mono, _kind, obj in watch(timeout=timeout):  # (time.monotonic(), ADDED|MODIFIED|DELETED, v1 Pod)
        if ((obj or {}).get("metadata") or {}).get("name") == pod:
            yield mono + to_epoch, True, obj


def wait_running(lab: Cluster, pod: str, *, since: float, timeout: float = 60.0,
                 interval: float = POLL) -> tuple[float, dict[str, Any]]:
    """Wait for `pod` to be Running and Ready; (estimated epoch of the transition, the pod). WaitTimeout otherwise.

    A watch pushes the change, so its arrival is the estimate. Polling estimates the midpoint between the
    last read that saw the pod not Running (or `since`) and the first that saw it Running: its error is at
    most half the gap between two reads.
    """
    deadline = time.time() + timeout
    previous = since
    for seen, pushed, value in _watch_reads(lab, pod, interval, timeout):
        if is_running(value):
            return (seen if pushed else (previous + seen) / 2), value
        if time.time() > deadline:
            break
        previous = seen
    raise WaitTimeout(f"pod {pod!r} not Running {timeout:g}s after the fix; see `kindlab get events`")


class CurlWatch(threading.Thread):
    """A thread that GETs `url` every `interval` until it answers; `.answered_at` is that epoch."""

    def __init__(self, lab: Cluster, url: str, deadline: float, interval: float = CURL_POLL):
        super().__init__(daemon=True, name=f"kindlab-curl-{url}")
        self.lab, self.url, self.deadline, self.interval = lab, url, deadline, interval
        self.answered_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and time.time() < self.deadline:
            try:
                self.lab.curl(self.url, timeout=0.5)
            except CurlError:
                self.stop.wait(self.interval)
                continue
            self.answered_at = time.time()
            return

    def result(self, timeout: float) -> float | None:
        """Wait up to `timeout` for the answer; its epoch or None."""
        self.join(max(0.0, timeout))
        self.stop.set()
        return self.answered_at


def hostport_url(lab: Cluster, pod: str) -> str:
    """http://<node IP>[:hostPort]/ for the pod's first hostPort (the seed's `curl 172.17.0.4`)."""
    p = lab.pod(pod)
    node = (p.get("spec") or {}).get("nodeName")
    if not node:
        raise KindlabError(f"pod {pod!r} has no spec.nodeName, so no node IP to curl")
    ports = [port for c in (p.get("spec") or {}).get("containers") or [] for port in c.get("ports") or []
             if port.get("hostPort")]
    if not ports:
        raise KindlabError(f"pod {pod!r} has no hostPort to curl")
    host_port = int(ports[0]["hostPort"])
    return f"http://{lab.node_ip(node)}/" if host_port == 80 else f"http://{lab.node_ip(node)}:{host_port}/"


def check_lab_url(lab: Cluster, url: str) -> str:
    """`url` if its host is one of the lab's node IPs; KindlabError otherwise (curl only lab addresses)."""
    host = urlsplit(url).hostname
    ips = set(lab.nodes()["ip"].dropna())
    if host not in ips:
        raise KindlabError(f"refusing to curl {url}: {host} is not a node IP of cluster {lab.name!r} "
                           f"({', '.join(sorted(ips))})")
    return url


# -- measuring -----------------------------------------------------------------------------
def poll_interval(lab: Cluster) -> float:
    """How often to read the cluster when polling: 10 ms on netns, 100 ms against an API server."""
    return POLL if lab.backend == "netns" else API_POLL


def measure(lab: Cluster, pod: str, fix: Callable[[], Any], *, timeout: float = 60.0, url: str | None = None,
            interval: float | None = None, curl_grace: float = 5.0) -> HealResult:
    """Apply `fix()` and time the pod's healing: to Running (and Ready), to its hostPort answering
    (curl of http://<node IP>:<hostPort>/, or `url`, a lab address), and the failed attempts around it.

    The hostPort is tried from the fix on; once the pod is Running it gets `curl_grace` s more (a pod whose
    hostPort never answers, like worker3's, gives curl_after None).
    """
    interval = interval or poll_interval(lab)
    url = check_lab_url(lab, url or hostport_url(lab, pod))
    current = lab.pod(pod)
    uid, created = pod_uid(current), _epoch((current.get("metadata") or {}).get("creationTimestamp"))
    before = failed_attempts(lab, pod, uid, created)
    fix_at = time.time()
    fix()
    curl = CurlWatch(lab, url, deadline=fix_at + timeout)
    curl.start()
    try:
        running_at, running = wait_running(lab, pod, since=fix_at, timeout=timeout, interval=interval)
    finally:
        curl_at = curl.result(min(fix_at + timeout - time.time(), curl_grace))
    agent_at = agent_running_at(running)
    return HealResult(
        pod=pod, fix_at=fix_at, running_after=running_at - fix_at,
        curl_after=None if curl_at is None else curl_at - fix_at,
        attempts_before=before, attempts_after=failed_attempts(lab, pod, uid, created) - before,
        agent_running_after=None if agent_at is None else agent_at - fix_at,
        events=pod_events(lab, pod), attempt_times=attempt_times(lab, running),
    )


# -- breaking and fixing worker2 ----------------------------------------------------------
def cni_bin_folder(lab: Cluster, node: str) -> Path:
    """The host folder that is the node's /opt/cni/bin: from the extraMount over /opt/cni (or a parent)."""
    mounts = [m for m in lab.topology.node(node).mounts
              if PurePosixPath(m.container_path) == CNI_BIN or PurePosixPath(m.container_path) in CNI_BIN.parents]
    if not mounts:
        raise KindlabError(f"node {node!r} has no host folder mounted over {CNI_BIN} (extraMounts in "
                           f"{lab.topology.source or 'the kind config'}); only such a node can be broken this way")
    mount = max(mounts, key=lambda m: len(PurePosixPath(m.container_path).parts))
    return Path(mount.host_path) / CNI_BIN.relative_to(mount.container_path)


def break_portmap(lab: Cluster, node: str = "kind-worker2") -> Path:
    """Remove `portmap` from the host folder mounted over the node's /opt/cni; returns that file's path."""
    target = cni_bin_folder(lab, node) / "portmap"
    target.unlink(missing_ok=True)
    return target


_SOURCES: dict[tuple[str, str], Path] = {}


def portmap_source(lab: Cluster, node: str = "kind-worker2") -> Path:
    """A portmap binary on this host: the CNI package's (netns), or one copied from another node (kind)."""
    if lab.backend == "netns" and PACKAGE_PORTMAP.exists():
        return PACKAGE_PORTMAP
    key = (lab.backend, lab.name)
    if key in _SOURCES and _SOURCES[key].exists():
        return _SOURCES[key]
    donors = [n.name for n in lab.topology.nodes if n.name != node and not _mounted_over_bin(n.mounts)]
    for donor in donors:
        dest = Path(tempfile.mkdtemp(prefix="kindlab-portmap-")) / "portmap"
        try:
            lab.cp(f"{donor}:{CNI_BIN / 'portmap'}", str(dest))
        except KindlabError:
            continue
        _SOURCES[key] = dest
        return dest
    raise KindlabError(f"no portmap binary to copy: {PACKAGE_PORTMAP} is missing and no node of "
                       f"{lab.name!r} other than {node} has {CNI_BIN}/portmap")


def _mounted_over_bin(mounts: Iterable[Any]) -> bool:
    return any(PurePosixPath(m.container_path) == CNI_BIN or PurePosixPath(m.container_path) in CNI_BIN.parents
               for m in mounts)


def fix_portmap(lab: Cluster, node: str = "kind-worker2", source: Path | None = None) -> Path:
    """Copy portmap into the host folder mounted over the node's /opt/cni (atomically); returns its path."""
    folder = cni_bin_folder(lab, node)
    folder.mkdir(parents=True, exist_ok=True)
    src = source or portmap_source(lab, node)
    tmp = folder / ".portmap.kindlab-tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, folder / "portmap")  # the runtime never sees a half-written binary
    return folder / "portmap"


def pod_manifest(pod: dict[str, Any]) -> objects.PodSpec:
    """A live v1 Pod dict back to the spec that `lab.apply_object` re-creates."""
    meta = pod.get("metadata") or {}
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                        "labels": meta.get("labels") or {}},
           "spec": {k: v for k, v in (pod.get("spec") or {}).items() if k in ("nodeName", "containers")}}
    spec = objects.from_dict(doc, where=f"pod/{meta['name']}")[0]
    assert isinstance(spec, objects.PodSpec)
    return spec


def _spec_for(lab: Cluster, pod: str) -> objects.PodSpec:
    """The pod's spec: from the live pod, else from manifests/static/<pod>.yaml."""
    live = _find_pod(lab, pod)
    if live is not None:
        spec = pod_manifest(live)
    else:
        path = Path("manifests/static") / f"{pod}.yaml"
        if not path.exists():
            raise NotFound(f"pod {pod!r} is not in cluster {lab.name!r} and there is no {path} to apply")
        spec = next(m for m in objects.load(path) if isinstance(m, objects.PodSpec))
    if not spec.node_name:
        raise KindlabError(f"pod {pod!r} has no spec.nodeName; the experiment needs a pod pinned to a node")
    return spec


def recreate(lab: Cluster, spec: objects.PodSpec, between: Callable[[], Any] | None = None) -> float:
    """Delete the pod (until gone), run `between()`, apply it again; returns the epoch just before the apply.

    Breaking between the delete and the apply lets the old sandbox's CNI DEL still find its plugins.
    """
    try:
        lab.delete_pod(spec.name, spec.namespace, wait=True)
    except NotFound:
        pass
    if between is not None:
        between()
    applied = time.time()
    lab.apply_object(spec)
    return applied


def wait_failure(lab: Cluster, pod: str, *, since: float, at_least: int = 1, timeout: float = 30.0,
                 interval: float | None = None) -> tuple[float, dict[str, Any]]:
    """Wait for the pod's `at_least`-th failed sandbox attempt; (epoch of that failure, the pod)."""
    interval = interval or poll_interval(lab)
    def seen() -> tuple[float, dict[str, Any]] | None:
        current = _find_pod(lab, pod)
        uid = pod_uid(current)
        if current is None or failed_attempts(lab, pod, uid, since) < at_least:
            return None
        recorded = agent_attempts(current)
        # Events' RFC 3339 timestamps are whole seconds: without the agent's record, the time it was seen.
        return (max(recorded) if recorded else time.time()), current
    return lab.wait_for(seen, timeout=timeout, interval=interval, what=f"a failed sandbox attempt of {pod}")


def lab_backoff(lab: Cluster) -> float:
    """The lab's configured sandbox back-off (netns `backoff=`), else the kubelet's 10 s."""
    value = getattr(lab, "backoff", None)
    return float(value) if value else KUBELET_BACKOFF


def _sleep_until(epoch: float) -> None:
    while (left := epoch - time.time()) > 0:
        time.sleep(min(left, 0.05))


def experiment(lab: Cluster, delays: Sequence[float], repeats: int = 1, *, pod: str = "echo-kind-worker2",
               break_: Callable[[Cluster, str], Any] = break_portmap,
               fix: Callable[[Cluster, str], Any] | None = None,
               progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Repeat break → fix → heal for each delay (`repeats` times); one row per run (EXPERIMENT_COLUMNS).

    Each run removes portmap, recreates the pod, waits for its first failed sandbox attempt, and applies
    the fix `delay` seconds after that failure. The pod is left healed (fixed) at the end.
    """
    from tqdm import tqdm

    spec = _spec_for(lab, pod)
    node = spec.node_name or ""
    backoff = lab_backoff(lab)
    timeout = timeout or 3 * backoff * (1 + KUBELET_JITTER) + max(delays, default=0) + 10
    if fix is None:
        source = portmap_source(lab, node)
        fix = lambda lab_, node_: fix_portmap(lab_, node_, source)  # noqa: E731
    plan = [(r, float(d)) for r in range(repeats) for d in delays]
    rows = []
    try:
        for run, (_, delay) in enumerate(tqdm(plan, desc=f"heal {pod}", disable=not progress, unit="run")):
            rows.append({"run": run, "delay": delay, "backoff": backoff,
                         **_one_run(lab, spec, node, delay, break_, fix, timeout)})
    finally:
        fix(lab, node)
    return experiment_frame(rows)


def _one_run(lab: Cluster, spec: objects.PodSpec, node: str, delay: float, break_: Callable,
             fix: Callable, timeout: float) -> dict[str, Any]:
    applied = recreate(lab, spec, between=lambda: break_(lab, node))
    failed_at, _ = wait_failure(lab, spec.name, since=applied, timeout=timeout)
    _sleep_until(failed_at + delay)
    result = measure(lab, spec.name, lambda: fix(lab, node), timeout=timeout)
    return {k: v for k, v in result.to_dict().items() if k in EXPERIMENT_COLUMNS}


def experiment_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of an experiment as its DataFrame, columns in EXPERIMENT_COLUMNS order."""
    frame = pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)
    for col in ("delay", "running_after", "curl_after", "backoff", "agent_running_after", "error"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("run", "attempts_before", "attempts_after"):
        frame[col] = frame[col].astype(int)
    return frame


def accuracy(df: pd.DataFrame) -> dict[str, float]:
    """The measured Running times against the agent's: n, and the p50, p95 and max of the absolute error, in ms."""
    err = (df["error"].dropna().astype(float).abs() * 1000.0).to_numpy()
    if not len(err):
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {"n": int(len(err)), "p50": float(np.percentile(err, 50)), "p95": float(np.percentile(err, 95)),
            "max": float(err.max())}


# -- the back-off model --------------------------------------------------------------------
@dataclass(frozen=True)
class BackoffModel:
    """The kubelet's sandbox retry: each attempt U[backoff, backoff·(1+jitter)] after the previous failure.

    A fix applied `delay` s after a failure heals at the first attempt later than the fix, so the time to
    heal is that attempt's time minus `delay`, plus `setup` (sandbox, CNI ADD, container start until Ready).
    For delay ≤ backoff it is uniform on [backoff - delay, backoff·(1+jitter) - delay] + setup.
    """

    backoff: float = KUBELET_BACKOFF
    jitter: float = KUBELET_JITTER
    setup: float = 0.0

    @property
    def low(self) -> float:
        """The earliest retry after a failure (s)."""
        return self.backoff

    @property
    def high(self) -> float:
        """The latest retry after a failure (s)."""
        return self.backoff * (1 + self.jitter)

    def _gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, n) if self.high > self.low else np.full(n, self.low)

    def sample(self, delay: float = 0.0, n: int = 100_000, seed: int | None = 0) -> np.ndarray:
        """`n` sampled times to heal for a fix at `delay` s after a failure."""
        rng = np.random.default_rng(seed)
        attempt = self._gaps(rng, n)
        while (late := attempt <= delay).any():  # the fix came after this attempt: it failed too
            attempt[late] += self._gaps(rng, int(late.sum()))
        return attempt - delay + self.setup

    def mean(self, delay: float = 0.0) -> float:
        """Expected time to heal (s); exact for delay ≤ backoff, sampled beyond."""
        if delay <= self.low:
            return (self.low + self.high) / 2 - delay + self.setup
        return float(self.sample(delay).mean())

    def quantile(self, q: float | Sequence[float], delay: float = 0.0) -> float | np.ndarray:
        """Quantile(s) of the time to heal (s); exact for delay ≤ backoff, sampled beyond."""
        qs = np.asarray(q, dtype=float)
        if delay <= self.low:
            out = self.low + qs * (self.high - self.low) - delay + self.setup
        else:
            out = np.quantile(self.sample(delay), qs)
        return float(out) if out.ndim == 0 else out

    def pdf(self, x: float | np.ndarray, delay: float = 0.0) -> np.ndarray:
        """Density of the time to heal at `x` for delay ≤ backoff (uniform); NaN beyond."""
        x = np.asarray(x, dtype=float) - self.setup
        if delay > self.low:
            return np.full_like(x, np.nan)
        width = self.high - self.low
        inside = (x >= self.low - delay) & (x <= self.high - delay)
        return np.where(inside, 1.0 / width if width else np.inf, 0.0)

    def curve(self, delays: Iterable[float], quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> pd.DataFrame:
        """Per delay: mean and quantiles of the time to heal; columns delay, mean, p5, p50, p95, ..."""
        rows = []
        for d in delays:
            values = np.atleast_1d(self.quantile(quantiles, float(d)))
            rows.append({"delay": float(d), "mean": self.mean(float(d)),
                         **{f"p{round(q * 100):g}": float(v) for q, v in zip(quantiles, values, strict=True)}})
        return pd.DataFrame(rows)


def estimate_setup(df: pd.DataFrame, jitter: float = KUBELET_JITTER) -> float:
    """The mean time from the successful retry to Running, from an experiment's runs with delay < backoff.

    There `running_after + delay` is the retry's time after the failure (mean backoff·(1+jitter/2)) plus setup.
    """
    runs = df[df["delay"] < df["backoff"]].dropna(subset=["running_after"])
    if not len(runs):
        return 0.0
    return float((runs["running_after"] + runs["delay"] - runs["backoff"] * (1 + jitter / 2)).mean())


def backoff_model(backoff: float = KUBELET_BACKOFF, jitter: float = KUBELET_JITTER,
                  setup: float = 0.0) -> BackoffModel:
    """The back-off model for a kubelet (10 s, 50 % jitter) or a lab's configured back-off.

    `setup` (s) shifts the times by the sandbox and container start, e.g. `estimate_setup(df)`.
    """
    if backoff <= 0 or jitter < 0 or setup < 0:
        raise ValueError(f"backoff must be > 0, jitter and setup >= 0; got {backoff}, {jitter}, {setup}")
    return BackoffModel(float(backoff), float(jitter), float(setup))
