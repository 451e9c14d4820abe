"""The CNI provider install, the part Cilium's DaemonSet plays on kind.

On each node it puts the lab's primary plugin `kindlab-cni` (and `loopback`) into /opt/cni/bin,
writes /etc/cni/net.d/05-kindlab.conf, and the node-local subnet.env the plugin reads.
Files go where the node sees those paths: its overlay layer, or, where an extraMount covers
/opt/cni (kind/config's worker2), into that host folder's bin/, as cilium-cni lands in the
seed's /tmp/empty/bin. The chained 000-kindlab-portmap.conflist is not installed here: it comes
through the extraMounts, as in the seed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ... import cni_plugin as plugin
from ...model.cni import CNI_BIN, NET_D
from ...topology import Node, Topology
from .mounts import NodeDirs, NodeMount, host_path

PLUGIN = plugin.PLUGIN
CONF = plugin.CONF_NAME


def plugin_script() -> str:
    """The plugin as an executable script: this Python, isolated, no site-packages."""
    return f"#!{sys.executable} -IS\n" + Path(plugin.__file__).read_text()


def conf() -> dict:
    """05-kindlab.conf, as Cilium 1.5 wrote 05-cilium.conf (today: 05-cilium.conflist)."""
    return dict(plugin.CONF)


def install(topology: Topology, node: Node, mounts: list[NodeMount], dirs: NodeDirs, cni_dir: Path) -> None:
    """Install the provider's files on one node (before its mount namespace exists, through host paths)."""
    bin_dir = host_path(mounts, CNI_BIN, dirs)
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / PLUGIN
    target.write_text(plugin_script())
    target.chmod(0o755)
    if bin_dir != dirs.upper and not (bin_dir / "loopback").exists():
        shutil.copy2(cni_dir / "loopback", bin_dir / "loopback")
    netd = host_path(mounts, NET_D, dirs)
    netd.mkdir(parents=True, exist_ok=True)
    (netd / CONF).write_text(json.dumps(conf(), indent=2) + "\n")
    (dirs.root / "subnet.env").write_text(
        f"KINDLAB_NETWORK={topology.networking.pod_subnet}\nKINDLAB_SUBNET={node.pod_cidr}\nKINDLAB_MTU=1500\n"
        f"KINDLAB_DELEGATE_PATH={cni_dir}\n")
