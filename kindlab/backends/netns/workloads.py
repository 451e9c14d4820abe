"""What a container runs on the netns backend, and what the kubelet gives it.

Image `inanimate/echo-server` (any registry or tag) runs the project's echo server (`kindlab.echo`)
in the pod's network and UTS namespaces, inside the node's mount namespace, with the image's
environment (PORT=8080, SSLPORT=8443, ADD_HEADERS), the kubelet's (HOSTNAME, KUBERNETES_* for the
service subnet) and the container's own. The kubelet-style /etc/hosts and /etc/resolv.conf of the
pod are files in the lab state, bind-mounted over the pod's own /etc/hosts and /etc/resolv.conf
(see sandbox.py), so the echo server reads them where the image's would.
Other images are not available: the agent reports that as an event.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

from .names import STD_PATH, marker
from .nodes import NodeView
from .processes import keep, start_time
from .sandbox import Sandbox
from .tools import nsenter

ECHO_IMAGE = "inanimate/echo-server"
ECHO_ENV = {"PORT": "8080", "SSLPORT": "8443", "ADD_HEADERS": '{"X-Real-Server": "echo-server"}'}
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# Runs kindlab.echo with the lab's marker words in the command line (so `ps` shows whose it is)
# and without putting anything into the environment the echo server prints.
# Python's C-locale coercion adds LC_CTYPE to the environment: take it out again unless the pod set it.
BOOT = ("import os, runpy, sys; sys.path.insert(0, {root!r}); sys.argv = ['kindlab.echo', *sys.argv[3:]]; "
        "{drop}runpy.run_module('kindlab.echo', run_name='__main__', alter_sys=True)")
DROP_LC_CTYPE = "os.environ.get('LC_CTYPE') == 'C.UTF-8' and os.environ.pop('LC_CTYPE'); "


def image_name(image: str) -> str:
    """`docker.io/inanimate/echo-server:latest` -> `inanimate/echo-server`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: name.rindex(":")]
    for registry in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(registry):
            name = name[len(registry):]
    return name


def supported(image: str) -> bool:
    """True for the images the netns backend can run."""
    return image_name(image) == ECHO_IMAGE


def unsupported_message(image: str) -> str:
    """The event message for an image the netns backend cannot run."""
    return (f'Failed to pull image "{image}": the netns backend has no image "{image}"; '
            f"it runs only {ECHO_IMAGE} (use the kind backend for other images)")


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it (the kubelet's "pulled ... in 47.626648ms")."""
    ns = max(0, round(seconds * 1e9))
    for unit, size in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if ns >= size:
            return f"{ns / size:.9f}".rstrip("0").rstrip(".") + unit
    return f"{ns}ns"


def service_env(service_subnet: str) -> dict[str, str]:
    """The kubelet's variables for the `kubernetes` service (the subnet's first address)."""
    ip = str(next(ipaddress.ip_network(service_subnet, strict=False).hosts()))
    return {
        "KUBERNETES_SERVICE_HOST": ip, "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": f"tcp://{ip}:443", "KUBERNETES_PORT_443_TCP": f"tcp://{ip}:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": ip,
    }


def environment(pod_name: str, container: dict[str, Any], service_subnet: str) -> dict[str, str]:
    """The container's environment: image, kubelet, then the container's own env."""
    env = {"PATH": STD_PATH, "HOSTNAME": pod_name, "HOME": "/", **ECHO_ENV, **service_env(service_subnet)}
    for e in container.get("env", []) or []:
        env[str(e["name"])] = str(e.get("value", ""))
    return env


def dns_ip(service_subnet: str) -> str:
    """kube-dns's address: the service subnet's tenth."""
    return str(ipaddress.ip_network(service_subnet, strict=False)[10])


def pod_dns(namespace: str, service_subnet: str) -> dict[str, list[str]]:
    """The kubelet's DNS config of a ClusterFirst pod (CRI's DNSConfig, with go-cni's DNS keys): kube-dns, the
    cluster's search domains (the node's resolv.conf adds none), ndots:5."""
    return {"Servers": [dns_ip(service_subnet)],
            "Searches": [f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            "Options": ["ndots:5"]}


def write_pod_files(folder: Path, pod_name: str, namespace: str, pod_ip: str | None,
                    service_subnet: str) -> tuple[Path, Path]:
    """The pod's kubelet-managed hosts file and resolv.conf."""
    folder.mkdir(parents=True, exist_ok=True)
    hosts = folder / "hosts"   # written in place: the sandbox has it bind-mounted
    hosts.write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
                     "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\n"
                     "fe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n" + (f"{pod_ip}\t{pod_name}\n" if pod_ip else ""))
    resolv = folder / "resolv.conf"
    dns = pod_dns(namespace, service_subnet)
    resolv.write_text("".join(f"nameserver {s}\n" for s in dns["Servers"]) + f"search {' '.join(dns['Searches'])}\n"
                      f"options {' '.join(dns['Options'])}\n")
    return hosts, resolv


def start(view: NodeView, sandbox: Sandbox, env: dict[str, str], log: Path, pod_label: str) -> tuple[int, int]:
    """Start the echo server in the sandbox's namespaces; returns its (pid, start time)."""
    argv = [*nsenter(mnt=sandbox.mnt, uts=sandbox.uts, net=sandbox.netns), sys.executable, "-c",
            BOOT.format(root=str(PROJECT_ROOT), drop="" if "LC_CTYPE" in env else DROP_LC_CTYPE),
            marker(view.lab_name), f"pod={pod_label}"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd="/", start_new_session=True)
    return keep(proc, view.lab_name), start_time(proc.pid) or 0
