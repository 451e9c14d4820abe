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

import os
import re
import threading
from datetime import datetime
from pathlib import Path

from ....capabilities import RuntimeTimes

LINE = re.compile(r'^time="([^"]+)" level=\w+ msg="((?:[^"\\]|\\.)*)"')
# containerd 1.6 writes the sandbox's metadata as &PodSandboxMetadata{Name:P,Uid:U,...}, 1.7 as name:\"P\"  uid:\"U\"
SANDBOX = re.compile(r'RunPodSandbox for (?:&PodSandboxMetadata\{Name:[^,]*,Uid:([^,]+),'
                     r'|name:\\"[^"\\]*\\"\s+uid:\\"([^"\\]+)\\")')
RETURNS_SANDBOX = re.compile(r'returns sandbox id \\"([0-9a-f]+)\\"')
CONTAINER = re.compile(r'CreateContainer within sandbox \\"([0-9a-f]+)\\" for (?:&ContainerMetadata|name:).* '
                       r'returns container id \\"([0-9a-f]+)\\"')
STARTED = re.compile(r'StartContainer for \\"([0-9a-f]+)\\" returns successfully')
FAILED_SANDBOX = re.compile(r'failed to setup network for sandbox \\"([0-9a-f]+)\\"')
STOP_FAILED = re.compile(r'^StopPodSandbox for \\"([0-9a-f]+)\\" failed$')


def epoch(stamp: str) -> float:
    """containerd's RFC 3339 time with nanoseconds, as epoch seconds (to the microsecond)."""
    head, _, rest = stamp.rstrip("Z").partition(".")
    micros = (rest + "000000")[:6] if rest else "000000"
    return datetime.fromisoformat(f"{head}.{micros}+00:00").timestamp()


KEPT = ("RunPodSandbox for ", "StopPodSandbox for ", "CreateContainer within ", "StartContainer for ")


class _Entries:
    """The log lines `times` reads, kept as the log grows: each call reads only what was appended."""

    def __init__(self) -> None:
        self.inode: int | None = None
        self.offset = 0
        self.lines: list[tuple[str, str, str]] = []   # (stamp, msg, line)

    def update(self, log: Path) -> list[tuple[str, str, str]]:
        with open(log, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_ino != self.inode or st.st_size < self.offset:   # a new or truncated log: read it again
                self.inode, self.offset, self.lines = st.st_ino, 0, []
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1                 # a line still being written is read next time
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            if (m := LINE.match(line)) and m.group(2).startswith(KEPT):
                self.lines.append((m.group(1), m.group(2), line))
        return self.lines


_LOGS: dict[Path, _Entries] = {}
_LOGS_LOCK = threading.Lock()


def times(log: Path, uid: str) -> RuntimeTimes | None:
    """The failed sandbox attempts of the pod `uid` and its container's last start; None without a log entry."""
    try:
        with _LOGS_LOCK:
            entries = list(_LOGS.setdefault(log, _Entries()).update(log))
    except OSError:
        return None
    attempts: list[float] = []
    sandboxes: set[str] = set()
    failed: set[str] = set()
    containers: set[str] = set()
    running_at: float | None = None
    started: str | None = None
    seen = False
    for stamp, msg, line in entries:
        s = SANDBOX.search(msg)
        if s and (s.group(1) or s.group(2)) == uid:
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
