"""The API server's port on the host, where the nodes live in kindlab's own Docker Engine.

kind publishes the control plane's 6443 on 127.0.0.1:<port> of the engine's network namespace, which is not
the host's. A forwarder (kube/forward.py, a detached process) listens on the same port of the host's loopback
(another where that one is taken) and joins each connection to it, so that `kind get kubeconfig`'s server,
kubectl and kindlab reach the API server as on a machine whose Docker publishes on the host. On a machine with
a Docker of its own nothing is forwarded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from ...errors import ClusterError
from ...waiting import until
from . import docker_host
from .state import load_state, update_state

API_PORT = "6443/tcp"
MODULE = "kindlab.backends.kube.forward"
START_TIMEOUT = 10.0
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def published_port(name: str) -> int:
    """The port kind published the control plane's API server on (`docker inspect`)."""
    container = docker_host.client().containers.get(f"{name}-control-plane")
    bindings = (container.attrs.get("NetworkSettings") or {}).get("Ports", {}).get(API_PORT) or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", "0.0.0.0", ""):
            return int(binding["HostPort"])
    raise ClusterError(f"kind cluster {name!r}: its control plane publishes no {API_PORT}; recreate it")


def start_time(pid: int) -> str | None:
    """A live process's start time (field 22 of /proc/PID/stat), to tell it from a later one with its pid; None
    when it is gone or a zombie (it ended, its parent, the process that started it, has not reaped it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def running(name: str) -> dict | None:
    """The cluster's forwarder as its state records it, while that process runs."""
    forward = load_state(name).get("forward")
    if forward and start_time(forward["pid"]) == forward["start"]:
        return forward
    return None


def forwarders(name: str) -> list[int]:
    """Every live forwarder process of cluster `name`, recorded or not (found by its marker)."""
    marker = f"kindlab-kind={name}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if MODULE.encode() in argv and marker in argv and start_time(int(proc.name)):
            found.append(int(proc.name))
    return found


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ensure(name: str) -> int | None:
    """Start the cluster's forwarder unless it runs (only with kindlab's own engine); the host's port."""
    netns = docker_host.netns()
    if netns is None:
        return None
    if forward := running(name):
        return int(forward["port"])
    stop(name)   # one whose record was lost (a create writes the state anew)
    inner = published_port(name)
    listen = inner if _free(inner) else 0
    argv = [sys.executable, "-m", MODULE, "--netns", str(netns), "--to",
            f"127.0.0.1:{inner}", "--listen", str(listen), "--marker", f"kindlab-kind={name}"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True, cwd="/")
    line = proc.stdout.readline().strip() if proc.stdout else b""
    if not line.isdigit():
        proc.kill()
        raise ClusterError(f"kind cluster {name!r}: the API server's forwarder did not start")
    port = int(line)
    started = until(lambda: start_time(proc.pid), START_TIMEOUT, what="the forwarder's start time")
    update_state(name, forward={"pid": proc.pid, "start": started, "port": port, "inner": inner})
    return port


def _ended(pid: int, started: str | None) -> bool:
    """True once the process `pid` that started at `started` runs no more."""
    return start_time(pid) != started


def stop(name: str) -> None:
    """Stop the cluster's forwarders, where any runs."""
    for pid in forwarders(name):
        started = start_time(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        until(functools.partial(_ended, pid, started), START_TIMEOUT, every=0.05,
              what="the API server's forwarder stopped")
        with contextlib.suppress(ChildProcessError):   # reap it where this process started it
            os.waitpid(pid, os.WNOHANG)
    if load_state(name).get("forward"):
        update_state(name, forward=None)


def host_kubeconfig(name: str, text: str) -> str:
    """`kind get kubeconfig`'s text with the server at the host's port (where it is forwarded to another)."""
    forward = running(name)
    if not forward or forward["port"] == forward["inner"]:
        return text
    config = yaml.safe_load(text)
    for cluster in config.get("clusters") or []:
        server = cluster["cluster"]["server"]
        cluster["cluster"]["server"] = re.sub(r":\d+$", f":{forward['port']}", server)
    return yaml.safe_dump(config, sort_keys=False)
