"""A pod's sandbox attempts and container start, from its node's containerd log (the runtime's own clock).

containerd's CRI plugin logs each RunPodSandbox with the pod's name and uid, whether it failed or which
sandbox id it returned, each CreateContainer with its sandbox and the container id it returned, and each
StartContainer that returned successfully, all stamped to the nanosecond:

    time="…Z" level=error msg="RunPodSandbox for &PodSandboxMetadata{Name:P,Uid:U,…} failed, error" …
    time="…Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{…Uid:U…} returns sandbox id \\"S\\""
    time="…Z" level=info msg="CreateContainer within sandbox \\"S\\" for &ContainerMetadata{…} returns container id
                                \\"C\\""
    time="…Z" level=info msg="StartContainer for \\"C\\" returns successfully"

A retry after a failed sandbox begins by killing it (StopPodSandbox): where the CNI DEL that needs fails too,
as with portmap missing from a chained config, the retry ends there, and the log says

    time="…Z" level=error msg="StopPodSandbox for \\"S\\" failed" error="failed to destroy network for sandbox …"

`times(log, uid)` gives RuntimeTimes: the failed attempts (the RunPodSandbox that failed, then every failed
kill of its sandbox: the kubelet's retries), and when the pod's container last started, and its id.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from ....capabilities import RuntimeTimes

LINE = re.compile(r'^time="([^"]+)" level=\w+ msg="((?:[^"\\]|\\.)*)"')
SANDBOX = re.compile(r"RunPodSandbox for &PodSandboxMetadata\{Name:[^,]*,Uid:([^,]+),")
RETURNS_SANDBOX = re.compile(r'returns sandbox id \\"([0-9a-f]+)\\"')
CONTAINER = re.compile(r'CreateContainer within sandbox \\"([0-9a-f]+)\\" for &ContainerMetadata.* '
                       r'returns container id \\"([0-9a-f]+)\\"')
STARTED = re.compile(r'StartContainer for \\"([0-9a-f]+)\\" returns successfully')
FAILED_SANDBOX = re.compile(r'failed to setup network for sandbox \\"([0-9a-f]+)\\"')
STOP_FAILED = re.compile(r'^StopPodSandbox for \\"([0-9a-f]+)\\" failed$')


def epoch(stamp: str) -> float:
    """containerd's RFC 3339 time with nanoseconds, as epoch seconds (to the microsecond)."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    micros = (rest + "000000")[:6] if rest else "000000"
    return datetime.fromisoformat(f"{head}.{micros}+00:00").timestamp()


def times(log: Path, uid: str) -> RuntimeTimes | None:
    """The failed sandbox attempts of the pod `uid` and its container's last start; None without a log entry."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    attempts: list[float] = []
    sandboxes: set[str] = set()
    failed: set[str] = set()
    containers: set[str] = set()
    running_at: float | None = None
    started: str | None = None
    seen = False
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        stamp, msg = m.groups()
        s = SANDBOX.search(msg)
        if s and s.group(1) == uid:
            seen = True
            if msg.endswith("failed, error"):
                attempts.append(epoch(stamp))
                if f := FAILED_SANDBOX.search(line):
                    failed.add(f.group(1))
            elif r := RETURNS_SANDBOX.search(msg):
                sandboxes.add(r.group(1))
            continue
        if (k := STOP_FAILED.match(msg)) and k.group(1) in failed:
            attempts.append(epoch(stamp))   # a retry: the kubelet kills the failed sandbox first, and that failed
            continue
        if (c := CONTAINER.search(msg)) and c.group(1) in sandboxes:
            containers.add(c.group(2))
        elif (st := STARTED.search(msg)) and st.group(1) in containers:
            running_at, started = epoch(stamp), st.group(1)
    return RuntimeTimes(running_at=running_at, attempts=sorted(attempts), container_id=started) if seen else None
