"""The lab's processes: identity (pid + start time), liveness, the sweep by command-line marker, kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from .names import marked_lab

CHILDREN: dict[int, subprocess.Popen] = {}


def keep(proc: subprocess.Popen) -> int:
    """Keep a long-lived child's Popen (so it is reaped, and not reported as leaked); returns its pid."""
    CHILDREN[proc.pid] = proc
    return proc.pid


def reap() -> None:
    """Collect the exit status of children that ended."""
    for pid, proc in list(CHILDREN.items()):
        if proc.poll() is not None:
            del CHILDREN[pid]


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
    """Every live process that carries a lab marker, with its lab."""
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
    deadline = time.monotonic() + wait
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            if pid in CHILDREN:
                if CHILDREN[pid].poll() is not None:
                    del CHILDREN[pid]
            else:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            if not alive(pid):
                pending.remove(pid)
        if pending:
            time.sleep(0.005)


def terminate(pid: int, start: int | None, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: how the kubelet stops a container."""
    if not alive(pid, start):
        return
    kill([pid], signal.SIGTERM, wait=grace)
    if alive(pid, start):
        kill([pid], signal.SIGKILL)
