"""Names and places of everything a netns lab makes, so that a sweep finds it all.

    /run/netns/kindlab-<lab>-host               the lab's "host" network namespace (bridge `kind`)
    /run/netns/kindlab-<lab>-<node>             a node's network namespace (node names start with <lab>-)
    /run/kindlab/labs/<lab>/                    the lab's state: records, pods, events, node folders
    /run/kindlab/labs/<lab>/ns/<node>.mnt|.uts  a node's mount and UTS namespaces (a private bind mount)
    /run/kindlab/labs/<lab>/processes           "pid start-time" of every long-lived process the lab started
    /run/kindlab/lifecycle.lock, hostpaths.*    the machine's own files, beside labs/ so no lab name reaches them
    kindlab-lab=<lab>                           a word in the titles of the lab's processes (for people, not sweeps)

Cluster names are checked once, by `topology.check_cluster_name` (a DNS label short enough for node names).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ...errors import ConfigError
from ...topology import LAB_STATE, NODE_NETWORK, check_cluster_name

STATE_ROOT = LAB_STATE
LABS_DIR = STATE_ROOT / "labs"      # one folder per lab; nothing else lives here
NETNS_DIR = Path("/run/netns")
NODE_LINK = STATE_ROOT / "node"     # in a node's mount namespace: that node's own folder (like /run/flannel)
BRIDGE = "kind"                     # the lab host's bridge, named like Docker's network
SUBNET = NODE_NETWORK               # the same in every lab: each lab has its own namespaces
GATEWAY = "172.18.0.1"
PREFIX_LEN = 16
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_POD_KEY = 180                   # a pod's file names stay well below NAME_MAX (255) with the store's suffixes


def check_lab_name(name: str) -> str:
    """`name` if it is a valid cluster name, else ConfigError (see topology.check_cluster_name)."""
    return check_cluster_name(name)


def host_netns(lab_name: str) -> str:
    """The lab host network namespace: where the bridge lives and curl runs."""
    return f"kindlab-{lab_name}-host"


def node_netns(lab_name: str, node: str) -> str:
    """A node's network namespace."""
    return f"kindlab-{lab_name}-{node}"


def netns_path(netns: str) -> Path:
    """Where `ip netns` keeps a named network namespace."""
    return NETNS_DIR / netns


def owns_netns(lab_name: str, netns: str) -> bool:
    """True when the named network namespace belongs to `lab` (and not to a lab whose name extends it)."""
    lab_re = re.escape(lab_name)
    return bool(re.fullmatch(rf"kindlab-{lab_re}-(host|{lab_re}-(control-plane|worker)\d*)", netns))


def labs_of_netns(names: list[str]) -> set[str]:
    """Lab names that own at least one of these network namespaces (found by their host namespace)."""
    return {m.group(1) for n in names if (m := re.fullmatch(r"kindlab-(.+)-host", n))}


def marker(lab_name: str) -> str:
    """The word in the titles of the lab's processes (`ps` shows whose they are; sweeps use the ledger)."""
    return f"kindlab-lab={lab_name}"


def marked_lab(cmdline_words: list[str]) -> str | None:
    """The lab a process belongs to, from its command-line words (a title may hold several words)."""
    for word in cmdline_words:
        for part in word.split():
            if part.startswith("kindlab-lab="):
                return part.split("=", 1)[1]
    return None


def state_dir(lab_name: str) -> Path:
    """The lab's state folder."""
    return LABS_DIR / lab_name


def ledger(lab_name: str) -> Path:
    """The file listing the lab's long-lived processes, one "pid start-time" a line."""
    return state_dir(lab_name) / "processes"


def node_ip(index: int) -> str:
    """Node `index` (config order) gets 172.18.0.2, .3, ... as Docker hands out addresses."""
    if not 0 <= index < 250:
        raise ConfigError(f"the netns backend supports at most 250 nodes, not {index + 1}")
    return f"172.18.0.{index + 2}"


def pod_key(namespace: str, name: str) -> str:
    """A pod's file name in the store: `<namespace>_<name>`, shortened with a hash when that is too long."""
    key = f"{namespace}_{name}"
    if len(key) <= MAX_POD_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[:MAX_POD_KEY - 17]}-{digest}"
