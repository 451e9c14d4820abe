"""The lab's "host": a network namespace with a bridge, the analogue of Docker's `kind` network.

Everything is made inside namespaces: veth pairs are created in the lab host namespace with their
peer placed straight into the node's namespace, so the machine's own network namespace never
gains an interface, a route or a rule. The lab host namespace has no route out: traffic from it
reaches only the nodes.
"""

from __future__ import annotations

from pathlib import Path

from .names import BRIDGE, GATEWAY, NETNS_DIR, PREFIX_LEN, host_netns, netns_path, node_netns, owns_netns
from .tools import ip_batch, nsenter, run


def create(lab_name: str, nodes: list[str]) -> list[str]:
    """Make the lab host namespace, the node network namespaces and their veths; returns the node netns names."""
    host = host_netns(lab_name)
    node_ns = [node_netns(lab_name, n) for n in nodes]
    ip_batch([f"netns add {name}" for name in (host, *node_ns)], f"lab {lab_name!r}: making network namespaces")
    lines = [
        "link set lo up",
        f"link add {BRIDGE} type bridge",
        f"addr add {GATEWAY}/{PREFIX_LEN} dev {BRIDGE}",
        f"link set {BRIDGE} up",
    ]
    for i, ns in enumerate(node_ns):
        lines += [f"link add veth{i} type veth peer name eth0 netns {ns}",
                  f"link set veth{i} master {BRIDGE} up"]
    ip_batch(lines, f"lab {lab_name!r}: making the bridge and veths", netns=host)
    run([*nsenter(net=netns_path(host)), "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
        f"lab {lab_name!r}: turning forwarding off in the lab host")
    return node_ns


def existing(lab_name: str) -> list[str]:
    """The lab's network namespaces that exist now."""
    try:
        names = sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []
    return [n for n in names if owns_netns(lab_name, n)]


def destroy(names: list[str]) -> None:
    """Delete network namespaces (their veths, bridges and rules go with them)."""
    present = [n for n in names if netns_path(n).exists()]
    if present:
        run(["ip", "-force", "-batch", "-"], "deleting network namespaces", check=False,
            input="".join(f"netns del {n}\n" for n in present))
    for n in present:   # a namespace file left by an interrupted `ip netns add`
        p: Path = netns_path(n)
        if p.exists():
            run(["umount", "-l", p], f"unmounting {p}", check=False)
            p.unlink(missing_ok=True)
