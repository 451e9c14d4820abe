"""The lab's processes: identity (pid + start time), liveness, the lab's ledger of them, kill.

Every long-lived process a lab starts (node inits, the agent, pause processes, workloads) is written
to the lab's ledger as "pid start-time" the moment it is started; a sweep kills what the ledger names
and still runs with the same start time, never a process picked by its command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from ...errors import ClusterError
from ...waiting import Deadline
from .names import ledger, marked_lab

CHILDREN: dict[int, subprocess.Popen] = {}
#: How long a container has after SIGTERM before SIGKILL.
TERMINATE_GRACE = 2.0
_CHILDREN_LOCK = threading.Lock()   # the agent's loop reaps while its pool threads kill


def keep(proc: subprocess.Popen, lab_name: str) -> int:
    """Record a long-lived child in `lab`'s ledger and keep its Popen (so it is reaped); returns its pid."""
    with _CHILDREN_LOCK:
        CHILDREN[proc.pid] = proc
    start = start_time(proc.pid)
    if start is None:
        return proc.pid                     # it has already ended: nothing to sweep
    try:
        with open(ledger(lab_name), "a") as f:   # one short O_APPEND write: safe from several threads
            f.write(f"{proc.pid} {start}\n")
    except OSError as exc:                  # an unrecorded process would outlive the lab: stop it now
        kill([proc.pid])
        raise ClusterError(f"lab {lab_name!r}: cannot record process {proc.pid} in {ledger(lab_name)} "
                           f"({exc.strerror}); is the lab being deleted? Check with: kindlab get clusters") from None
    return proc.pid


def recorded(lab_name: str) -> list[int]:
    """The live processes `lab`'s ledger names (same pid and start time), in the order they were started."""
    try:
        lines = ledger(lab_name).read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for line in lines:
        pid, _, start = line.partition(" ")
        if pid.isdigit() and start.isdigit() and int(pid) != os.getpid() and alive(int(pid), int(start)):
            out.append(int(pid))
    return list(dict.fromkeys(out))


def _collect(pid: int) -> bool:
    """Reap `pid` if it is a child that ended; True when it has ended (or is not ours to reap)."""
    with _CHILDREN_LOCK:
        proc = CHILDREN.get(pid)
    if proc is None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return True
    if proc.poll() is None:
        return False
    with _CHILDREN_LOCK:
        CHILDREN.pop(pid, None)
    return True


def reap() -> None:
    """Collect the exit status of children that ended."""
    with _CHILDREN_LOCK:
        pids = list(CHILDREN)
    for pid in pids:
        _collect(pid)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (with the pid, a unique identity)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def alive(pid: int | None, start: int | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, when `start` is given, is the same process."""
    if not pid:
        return False
    fields = _stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == start


def cmdline(pid: int) -> list[str]:
    """The process's command-line words."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [w.decode(errors="replace") for w in raw.split(b"\0") if w]


def marked() -> dict[int, str]:
    """Every live process whose title carries a lab marker, with its lab: for reports and leak checks only
    (a title is anyone's to choose; sweeps use `recorded`)."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            lab = marked_lab(cmdline(pid))
            if lab is not None and pid != os.getpid() and alive(pid):
                out[pid] = lab
    return out


def kill(pids: list[int], sig: int = signal.SIGKILL, wait: float = 3.0) -> None:
    """Signal processes and wait (up to `wait` s) until they are gone or zombies."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = Deadline(wait)
    pending = list(pids)
    while pending and not deadline.passed:
        for pid in list(pending):
            _collect(pid)
            if not alive(pid):
                pending.remove(pid)
        if pending:
            deadline.sleep(0.005)


def terminate(pid: int, start: int | None, grace: float = TERMINATE_GRACE) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds: how the kubelet stops a container. False when it took SIGKILL."""
    if not alive(pid, start):
        return True
    kill([pid], signal.SIGTERM, wait=grace)
    if alive(pid, start):
        kill([pid], signal.SIGKILL)
        return False
    return True
