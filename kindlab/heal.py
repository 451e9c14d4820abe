"""Measure self-healing: fix a broken node, then time the pod to Running and its hostPort to answering.

    res = heal.measure(lab, "echo-kind-worker2", lambda: scenario.fix_portmap(lab, "kind-worker2"))
    df = heal.experiment(lab, delays=[0, 2, 5, 8], repeats=3)
    heal.backoff_model(10.0).curve([0, 2, 5, 8])

Changes are seen through the backend's pod watch (pushed, or polled at `capabilities.poll_interval`),
never by sleeping. A polled transition is placed midway between the last read that missed it and the
first that saw it; where the runtime keeps its own times (`Cluster.runtime_times`) they check the
estimate (`agent_running_after`, `accuracy(df)`). Where the runtime also pushes its containers' starts
(`capabilities.runtime_events`: containerd's task-start events), the healed container's start is timed by
that push (`started_after`), a clock of milliseconds beside the API server's whole seconds. Breaking and
fixing the nodes is `kindlab.scenario`'s.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from . import objects, scenario
from .capabilities import RuntimeTimes
from .cluster import Cluster, events_frame
from .errors import CurlError, KindlabError, NotFound, WaitTimeout
from .model import pods as pod_rules
from .model.backoff import BackoffModel, backoff_model, retry_model
from .model.kubelet import KUBELET_BACKOFF, KUBELET_JITTER
from .progress import Reporter, quiet
from .waiting import Deadline

__all__ = ["BackoffModel", "HealResult", "KUBELET_BACKOFF", "KUBELET_JITTER", "accuracy", "backoff_model",
           "retry_model",
           "estimate_setup", "experiment", "measure", "mid_period", "wait_running"]

CURL_POLL = 0.05
EXPERIMENT_COLUMNS = ["run", "delay", "late_by", "after_failure", "running_after", "curl_after", "attempts_before",
                      "attempts_after", "backoff", "agent_running_after", "started_after", "error"]


# -- results -----------------------------------------------------------------------------
@dataclass
class HealResult:
    """What one fix did: seconds from the fix to Running and to a working hostPort, and the attempts.

    `attempt_times` are the failed attempts' epochs: the runtime's own record where the backend keeps one
    (to the microsecond), else the events' timestamps (whole seconds), with `attempts_unseen` the attempts
    that folded events hide.
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
    #: Failed attempts whose times no record shows (folded into an event's count, without a runtime record).
    attempts_unseen: int = 0
    #: When the healed container's start reached kindlab, pushed by the runtime (s after the fix), where it pushes.
    started_after: float | None = None
    #: The runtime's own stamp on that pushed start (s after the fix): `started_after` less the push's delivery.
    stamped_after: float | None = None
    #: How long after the moment asked for (`measure(at=...)`) the fix came: the watches' set-up overran it.
    late_by: float | None = None

    @property
    def error(self) -> float | None:
        """The runtime's own time less kindlab's (s): agent_running_after - started_after where the runtime
        pushes starts, else agent_running_after - running_after; None unless both are known."""
        measured = self.started_after if self.started_after is not None else self.running_after
        if self.agent_running_after is None or measured is None:
            return None
        return self.agent_running_after - measured

    def after_failure(self, seen: Sequence[float] = ()) -> float | None:
        """How long after the last failed attempt before it the fix came (s), of `attempt_times` and the
        attempts `seen` by a watch before the measure; None if none came before it."""
        before = [t for t in (*self.attempt_times, *seen) if t < self.fix_at]
        return self.fix_at - max(before) if before else None

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields (and error) as a dict; events as a list of records."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "events"}
        out["error"] = self.error
        out["events"] = self.events.to_dict(orient="records")
        return out


# -- reading pods and events ---------------------------------------------------------------
def failed_attempts(lab: Cluster, pod: str, uid: str | None = None, since: float | None = None,
                    current: dict[str, Any] | None = None, events: list[dict[str, Any]] | None = None) -> int:
    """How many sandbox attempts of the pod failed (model.pods.sandbox_failure_count); `current` is the pod and
    `events` the lab's events as the caller last read them (read here when not given)."""
    current = current if current is not None else scenario.find_pod(lab, pod)
    events = events if events is not None else lab.event_list()
    return pod_rules.sandbox_failure_count(events, pod, uid, since, running=pod_rules.is_running(current))


def attempt_times(lab: Cluster, pod: dict[str, Any]) -> list[float]:
    """The pod's failed sandbox attempts (epochs): the runtime's own record where the backend keeps one,
    else what the events show (first and last timestamps, whole seconds)."""
    return _attempts(lab, pod, lab.runtime_times(pod))[0]


def unseen_attempts(lab: Cluster, pod: dict[str, Any]) -> int:
    """How many failed attempts of the pod have no time of their own: 0 where the runtime records every one,
    else those the event correlator folded into counts."""
    return _attempts(lab, pod, lab.runtime_times(pod))[1]


def _attempts(lab: Cluster, pod: dict[str, Any], recorded: RuntimeTimes | None,
              events: list[dict[str, Any]] | None = None) -> tuple[list[float], int]:
    """(the failed attempts' epochs, how many have none): from the runtime's record `recorded` where there is
    one, else from the events (`events`, or read here)."""
    if recorded is not None:
        return list(recorded.attempts), 0
    folded = pod_rules.sandbox_attempt_events(events if events is not None else lab.event_list(),
                                              pod["metadata"]["name"], pod_rules.uid(pod))
    return pod_rules.failure_times(folded), pod_rules.hidden_attempts(folded)


def pod_events(lab: Cluster, pod: str, current: bool = False,
               events: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """The events about `pod`, as `lab.events()` gives them (of `events`, if given); with `current`, only the
    existing pod's (by uid)."""
    uid = pod_rules.uid(scenario.find_pod(lab, pod)) if current else None
    events = events if events is not None else lab.event_list()
    return events_frame([e for e in events if pod_rules.about(e, pod, uid)])


# -- watching ------------------------------------------------------------------------------
def _reads(lab: Cluster, pod: str, timeout: float) -> Iterator[tuple[float, dict[str, Any] | None]]:
    """(epoch, the pod or None) each time the backend's pod watch reports on it."""
    to_epoch = time.time() - time.monotonic()
    for mono, kind, obj in lab.watch_pods(timeout=timeout):
        if ((obj or {}).get("metadata") or {}).get("name") == pod:
            yield mono + to_epoch, None if kind == "DELETED" else obj


def wait_running(lab: Cluster, pod: str, *, since: float, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
    """Wait for `pod` to be Running and Ready; (estimated epoch of the transition, the pod). WaitTimeout otherwise.

    Where the backend pushes changes (`capabilities.watches_pods`), the push's arrival is the estimate.
    Where it is polled, the estimate is the midpoint between the last read that saw the pod not Running
    (or `since`) and the first that saw it Running: its error is at most half the gap between two reads.
    """
    pushed = lab.capabilities.watches_pods
    deadline = Deadline(timeout)
    previous = since
    for seen, value in _reads(lab, pod, timeout):
        if value is not None and pod_rules.is_running(value):
            return (seen if pushed else (previous + seen) / 2), value
        if deadline.passed:
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
        deadline = Deadline(self.deadline - time.time())
        while not self.stop.is_set() and not deadline.passed:
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
def _sleep_until(epoch: float) -> None:
    deadline = Deadline(epoch - time.time())
    while not deadline.passed:
        deadline.sleep(0.05)


def mid_period(last: float, period: float) -> Callable[[float], float]:
    """For `measure(at=...)`: the first moment half a retry period after an attempt (the last one seen at
    `last`, the next ones a `period` apart) that is not before the epoch it is given (the watches' set-up end)."""
    def at(ready: float) -> float:
        return last + period * (max(0, math.ceil((ready - last) / period - 0.5)) + 0.5)
    return at


def measure(lab: Cluster, pod: str, fix: Callable[[], Any], *, timeout: float = 60.0, url: str | None = None,
            curl_grace: float = 5.0, at: float | Callable[[float], float] | None = None) -> HealResult:
    """Apply `fix()` and time the pod's healing: to Running (and Ready), to its hostPort answering
    (curl of http://<node IP>:<hostPort>/, or `url`, a lab address), and the failed attempts around it.

    With `at` (an epoch, or a function of the epoch the watches were set up by giving one, like `mid_period`;
    it may wait for what the fix is timed against, as `experiment` waits for the failure),
    the fix is applied then, once the watches are set up (they take a moment on a real runtime), or at once if
    they took longer (`late_by` says by how much); without, as soon as they are. The failed attempts after the
    fix are those the runtime recorded after it, where it records them; else those the events add after it.
    The hostPort is tried from the fix on; once the pod is Running it gets `curl_grace` s more (a pod whose
    hostPort never answers, like worker3's, gives curl_after None).
    """
    url = check_lab_url(lab, url or hostport_url(lab, pod))
    current = lab.pod(pod)
    uid, created = pod_rules.uid(current), pod_rules.epoch((current.get("metadata") or {}).get("creationTimestamp"))
    with lab.container_starts(pod_rules.node_name(current) or "") as starts:
        planned = at(time.time()) if callable(at) else at
        if planned is not None:
            _sleep_until(planned)
        before = failed_attempts(lab, pod, uid, created, current)
        fix_at, limit = time.time(), Deadline(timeout)
        fix()
        curl = CurlWatch(lab, url, deadline=fix_at + timeout)
        curl.start()
        try:
            running_at, running = wait_running(lab, pod, since=fix_at, timeout=timeout)
        finally:
            curl_at = curl.result(min(limit.left(), curl_grace))
        recorded = lab.runtime_times(running)
        pushed = starts.start_of(recorded.container_id) if recorded and recorded.container_id else None
    agent_at = recorded.running_at if recorded is not None else None
    events = lab.event_list()       # read once, for the counts and the table
    times, unseen = _attempts(lab, running, recorded, events)
    after = (sum(1 for t in times if t > fix_at) if recorded is not None      # each failure to the microsecond
             else failed_attempts(lab, pod, pod_rules.uid(running), created, running, events) - before)
    return HealResult(
        pod=pod, fix_at=fix_at, running_after=running_at - fix_at,
        curl_after=None if curl_at is None else curl_at - fix_at,
        attempts_before=before, attempts_after=after,
        agent_running_after=None if agent_at is None else agent_at - fix_at,
        started_after=None if pushed is None else pushed.arrived_at - fix_at,
        stamped_after=None if pushed is None else pushed.runtime_at - fix_at,
        events=pod_events(lab, pod, events=events), attempt_times=times,
        attempts_unseen=unseen, late_by=None if planned is None else max(0.0, fix_at - planned),
    )


# -- the experiment --------------------------------------------------------------------------
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
    """The pod's spec: from the live pod, else from the walkthrough's static manifests."""
    live = scenario.find_pod(lab, pod)
    if live is not None:
        spec = pod_manifest(live)
    else:
        static = scenario.static_pods(lab).get(pod)
        if static is None:
            raise NotFound(f"pod {pod!r} is not in cluster {lab.name!r} and not in {scenario.static_manifests(lab)}")
        spec = static
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


def wait_failure(lab: Cluster, pod: str, *, since: float, at_least: int = 1,
                 timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
    """Wait for the pod's `at_least`-th failed sandbox attempt; (epoch of that failure, the pod).

    The runtime's own record counts where the backend keeps one (an attempt is there once it has failed);
    otherwise the events, whose RFC 3339 timestamps are whole seconds: then the time it was seen.
    """
    def seen() -> tuple[float, dict[str, Any]] | None:
        current = scenario.find_pod(lab, pod)
        if current is None:
            return None
        recorded = lab.runtime_times(current)
        if recorded is not None:
            return (recorded.attempts[at_least - 1], current) if len(recorded.attempts) >= at_least else None
        if failed_attempts(lab, pod, pod_rules.uid(current), since, current) < at_least:
            return None
        return time.time(), current
    return lab.wait_for(seen, timeout=timeout, interval=lab.capabilities.poll_interval,
                        what=f"a failed sandbox attempt of {pod}")


def experiment(lab: Cluster, delays: Sequence[float], repeats: int = 1, *, pod: str = "echo-kind-worker2",
               break_: Callable[[Cluster, str], Any] = scenario.break_portmap,
               fix: Callable[[Cluster, str], Any] | None = None,
               report: Reporter = quiet, timeout: float | None = None) -> pd.DataFrame:
    """Repeat break → fix → heal for each delay (`repeats` times); one row per run (EXPERIMENT_COLUMNS).

    Each run removes portmap, recreates the pod, waits for its first failed sandbox attempt, and applies
    the fix `delay` seconds after that failure (`after_failure`: after the last one, where the runtime records
    them). The pod is left healed (fixed) at the end. Each finished run is reported to `report` (kindlab.progress).
    """
    spec = _spec_for(lab, pod)
    node = spec.node_name or ""
    caps = lab.capabilities
    backoff = caps.sandbox_backoff
    timeout = timeout or 3 * caps.retry_bounds[1] + max(delays, default=0) + 10
    plan = [float(d) for _ in range(repeats) for d in delays]
    rows: list[dict[str, Any]] = []
    with scenario.healthy_portmap(lab, node) as source:
        def heal_it(lab_: Cluster, node_: str) -> Any:
            return fix(lab_, node_) if fix else scenario.install_portmap(lab_, node_, source)
        try:
            for run, delay in enumerate(plan):
                rows.append({"run": run, "delay": delay, "backoff": backoff,
                             **_one_run(lab, spec, node, delay, break_, heal_it, timeout)})
                report(f"heal {pod}", run + 1, len(plan))
        finally:
            heal_it(lab, node)
    return experiment_frame(rows)


def _one_run(lab: Cluster, spec: objects.PodSpec, node: str, delay: float, break_: Callable,
             fix: Callable, timeout: float) -> dict[str, Any]:
    # fixed first: a real runtime cannot delete a pod whose CNI DEL fails (a missing chained plugin), and
    # keeps it Terminating until the plugin is back; the old sandbox's DEL must find its plugins
    fix(lab, node)
    applied = recreate(lab, spec, between=lambda: break_(lab, node))
    immediate = lab.capabilities.immediate_retries   # the kubelet's first retry, at once

    def after_the_failure(_ready: float) -> float:
        """Wait for the failure with the watches already set up, so that even a fix at once is on time."""
        failed_at, _ = wait_failure(lab, spec.name, since=applied, at_least=1 + immediate, timeout=timeout)
        return failed_at + delay
    result = measure(lab, spec.name, lambda: fix(lab, node), timeout=timeout, at=after_the_failure)
    # where the runtime records each attempt: how long after the last failure before it the fix came, which is
    # later than the one waited for when the next attempt failed first (an attempt that took long, on the model)
    last = result.after_failure() if lab.capabilities.runtime_timestamps else None
    return {"delay": delay, "after_failure": last,
            **{k: v for k, v in result.to_dict().items() if k in EXPERIMENT_COLUMNS}}


def experiment_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of an experiment as its DataFrame, columns in EXPERIMENT_COLUMNS order."""
    frame = pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)
    for col in ("delay", "late_by", "after_failure", "running_after", "curl_after", "backoff", "agent_running_after",
                "started_after", "error"):
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


# -- the statistics ------------------------------------------------------------------------
def estimate_setup(df: pd.DataFrame, jitter: float = KUBELET_JITTER) -> float:
    """The mean time from the successful retry to Running, from an experiment's runs with delay < backoff.

    There `running_after + delay` is the retry's time after the failure (mean backoff·(1+jitter/2)) plus setup.
    """
    runs = df[df["delay"] < df["backoff"]].dropna(subset=["running_after"])
    if not len(runs):
        return 0.0
    return float((runs["running_after"] + fixed_after(runs) - runs["backoff"] * (1 + jitter / 2)).mean())


def fixed_after(df: pd.DataFrame) -> pd.Series:
    """When each run's fix came after the last failure before it (s): as the runtime recorded them
    (`after_failure`), else its delay and what it was late by (`late_by`) after the failure waited for."""
    late = df["late_by"] if "late_by" in df else pd.Series(0.0, index=df.index)
    planned = df["delay"] + late.fillna(0.0)
    return df["after_failure"].fillna(planned) if "after_failure" in df else planned
