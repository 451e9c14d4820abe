"""What the kubelet and the API say about a pod, read one way everywhere.

Running and Ready as `kubectl get pods` shows them (1/1 Running), the hostPorts a pod asks for and the
portMappings the runtime hands CNI, the pod's sandbox failures (the kubelet's Warning events
`FailedCreatePodSandBox`, counted as the event correlator folds them), and RFC 3339 timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

SANDBOX_FAILED = "FailedCreatePodSandBox"
SANDBOX_CHANGED = "SandboxChanged"
#: The prefix the event correlator gives an event that stands for many similar ones.
COMBINED = "(combined from similar events): "
#: client-go's event correlator: past 10 similar events (same object, reason, different messages) in
#: 10 minutes, further ones fold into one "(combined ...)" event whose count grows.
SIMILAR_LIMIT, SIMILAR_WINDOW = 10, 600.0
#: client-go's spam filter (EventSourceObjectSpamFilter): per source and involved object, a burst of 25 events, then
#: one more per 5 minutes; the rest are dropped (seen: the 25th event of a failing pod is its last for minutes).
SPAM_BURST, SPAM_REFILL = 25, 300.0

Pod = dict[str, Any]
Event = dict[str, Any]


# -- time -------------------------------------------------------------------------------------
def epoch(timestamp: Any) -> float | None:
    """An RFC 3339 string (or an epoch number) as epoch seconds; None for nothing or nonsense."""
    if timestamp is None or timestamp == "":
        return None
    if isinstance(timestamp, int | float):
        return float(timestamp)
    try:
        parsed = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def rfc3339(t: float) -> str:
    """Epoch seconds as Kubernetes writes a timestamp: RFC 3339, whole seconds, UTC."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(ns: int) -> str:
    """Epoch nanoseconds as Go's time.RFC3339Nano writes them in UTC (trailing zeros of the fraction dropped),
    as the kubelet stamps `kubernetes.io/config.seen`."""
    whole, frac = divmod(ns, 10**9)
    fraction = f".{frac:09d}".rstrip("0").rstrip(".")
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


# -- a pod's state ----------------------------------------------------------------------------
def is_ready(pod: Pod | None) -> bool:
    """True when the pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in ((pod or {}).get("status") or {}).get("conditions") or [])


def is_running(pod: Pod | None) -> bool:
    """True when the pod is Running and Ready (`kubectl get pods`: 1/1 Running)."""
    return ((pod or {}).get("status") or {}).get("phase") == "Running" and is_ready(pod)


def phase(pod: Pod | None) -> str | None:
    """status.phase, or None when there is no pod."""
    return ((pod or {}).get("status") or {}).get("phase") if pod is not None else None


def uid(pod: Pod | None) -> str | None:
    """metadata.uid, if the pod has one."""
    return ((pod or {}).get("metadata") or {}).get("uid")


def node_name(pod: Pod | None) -> str | None:
    """spec.nodeName."""
    return ((pod or {}).get("spec") or {}).get("nodeName")


def pod_ip(pod: Pod | None) -> str | None:
    """status.podIP."""
    return ((pod or {}).get("status") or {}).get("podIP")


def pull_policy(container: dict[str, Any]) -> str:
    """imagePullPolicy as the API server defaults it: Always for an untagged or `:latest` image, else IfNotPresent."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    image = str(container.get("image") or "")
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    return "Always" if (last.split(":", 1)[1] if ":" in last else "latest") == "latest" else "IfNotPresent"


# -- hostPorts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostPort:
    """One hostPort of a pod: what its DNAT rule should send where."""

    pod: str
    host_port: int
    container_port: int
    protocol: str
    host_ip: str | None
    pod_ip: str | None
    running: bool


class DeclaredPort(NamedTuple):
    """A container port of a pod spec that asks for a hostPort, with the API server's defaults filled in."""

    host_port: int
    container_port: int
    protocol: str     # "TCP", "UDP" or "SCTP"
    host_ip: str      # "" for every address


def declared_host_ports(spec: dict[str, Any]) -> list[DeclaredPort]:
    """Every container port of `spec` with a hostPort, in container and port order."""
    return [DeclaredPort(int(p["hostPort"]), int(p["containerPort"]), str(p.get("protocol") or "TCP"),
                         str(p.get("hostIP") or ""))
            for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("hostPort")]


def host_ports(pod: Pod) -> list[HostPort]:
    """The pod's hostPorts, in container and port order (none for a hostNetwork pod: it needs no DNAT)."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return []
    name, ip, running = pod["metadata"]["name"], pod_ip(pod), phase(pod) == "Running"
    return [HostPort(name, d.host_port, d.container_port, d.protocol, d.host_ip or None, ip, running)
            for d in declared_host_ports(spec)]


def node_host_ports(pods: Iterable[Pod], node: str) -> list[HostPort]:
    """The hostPorts of the pods scheduled to `node`."""
    return [hp for p in pods if node_name(p) == node for hp in host_ports(p)]


def port_mappings(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """runtimeConfig.portMappings from a v1 pod spec's hostPorts, as containerd builds them: go-cni's PortMapping
    has no JSON tags, so the keys are Go's field names, every one written (portmap reads them, as Go decodes
    JSON, without regard to case)."""
    return [{"HostPort": d.host_port, "ContainerPort": d.container_port, "Protocol": d.protocol.lower(),
             "HostIP": d.host_ip} for d in declared_host_ports(spec)]


# -- sandbox failures -------------------------------------------------------------------------
# A real kubelet v1.20.2 with containerd 1.7 records every failed sandbox attempt as FailedCreatePodSandBox: the
# chain's DEL after the failed ADD fails the same way, so containerd keeps the sandbox in state SANDBOX_UNKNOWN;
# PLEG's next relist finds it, the kubelet records "SandboxChanged: Pod sandbox changed, it will be killed and
# re-created.", stops it (which succeeds: no CNI DEL is run for it) and makes a new one, about once a second.
# Each new sandbox has a new id, so each failure is an event of its own until the correlator combines the 10th
# and later ones. (Measured: tests/data/real. containerd 1.6.20 instead kept the sandbox for good, its stop
# failing in the DEL, so only SandboxChanged counted up, on the 10 s back-off.) So a pod's failed attempts are
# the counts of its FailedCreatePodSandBox events.
ATTEMPT_REASONS = (SANDBOX_FAILED,)

def about(event: Event, pod: str, pod_uid: str | None = None) -> bool:
    """True when the event is about pod `pod` (and, given a uid, about that very pod)."""
    obj = event.get("involvedObject") or {}
    return obj.get("name") == pod and not (pod_uid and obj.get("uid") and obj["uid"] != pod_uid)


def sandbox_failure_events(events: Iterable[Event], pod: str, pod_uid: str | None = None,
                           since: float | None = None, reasons: tuple[str, ...] = (SANDBOX_FAILED,)) -> list[Event]:
    """The pod's FailedCreatePodSandBox events (or those of `reasons`): of pod `pod_uid`, or, without a uid on
    the event, first seen after `since` (RFC 3339 rounds to the second, so one second of slack)."""
    out = []
    for e in events:
        if e.get("reason") not in reasons or not about(e, pod, pod_uid):
            continue
        has_uid = bool(pod_uid and (e.get("involvedObject") or {}).get("uid"))
        first = epoch(e.get("firstTimestamp") or e.get("eventTime"))
        if since is not None and not has_uid and first is not None and first < since - 1.0:
            continue
        out.append(e)
    return out


def count(event: Event) -> int:
    """How many occurrences an event stands for (the correlator's `count`, 1 when absent)."""
    return int(event.get("count") or 1)


def sandbox_attempt_events(events: Iterable[Event], pod: str, pod_uid: str | None = None,
                           since: float | None = None) -> list[Event]:
    """The events that stand for the pod's failed sandbox attempts (ATTEMPT_REASONS)."""
    return sandbox_failure_events(events, pod, pod_uid, since, ATTEMPT_REASONS)


def sandbox_failure_count(events: Iterable[Event], pod: str, pod_uid: str | None = None,
                          since: float | None = None, running: bool = False) -> int:
    """How many sandbox attempts of the pod failed: the counts of its FailedCreatePodSandBox events (`running`,
    whether the pod runs now, changes nothing since the attempt that healed it wrote none)."""
    return sum(count(e) for e in sandbox_attempt_events(events, pod, pod_uid, since))


def failure_times(events: Iterable[Event]) -> list[float]:
    """The attempt times that events can show: each event's first and last timestamps (whole seconds).

    A folded event (count > 2) hides the attempts between its first and last; `hidden_attempts` says how many.
    """
    stamps = {epoch(e.get(k)) for e in events for k in ("firstTimestamp", "lastTimestamp")}
    return sorted(t for t in stamps if t is not None)


def hidden_attempts(events: Iterable[Event]) -> int:
    """How many attempts the events fold away (count minus the timestamps they show)."""
    hidden = 0
    for e in events:
        shown = len({e.get("firstTimestamp"), e.get("lastTimestamp")} - {None, ""}) or 1
        hidden += max(0, count(e) - shown)
    return hidden


def message(event: Event) -> str:
    """The event's message without the correlator's "(combined from similar events): " prefix."""
    text = str(event.get("message") or "")
    return text[len(COMBINED):] if text.startswith(COMBINED) else text


def last_event(events: Iterable[Event]) -> Event | None:
    """The event seen last (by lastTimestamp)."""
    return max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), default=None)
