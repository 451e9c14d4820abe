"""Names and places of everything a netns lab makes, so that a sweep finds it all.

    /run/netns/kindlab-<lab>-host          the lab's "host" network namespace (bridge `kind`)
    /run/netns/kindlab-<lab>-<node>        a node's network namespace (node names start with <lab>-)
    /run/kindlab/<lab>/                    the lab's state: records, pods, events, node folders
    /run/kindlab/<lab>/ns/<node>.mnt|.uts  a node's mount and UTS namespaces (a private bind mount)
    kindlab-lab=<lab>                      a word in the command line of every process the lab starts
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import ConfigError

STATE_ROOT = Path("/run/kindlab")
NETNS_DIR = Path("/run/netns")
NODE_LINK = STATE_ROOT / "node"     # in a node's mount namespace: that node's own folder (like /run/flannel)
BRIDGE = "kind"                     # the lab host's bridge, named like Docker's network
SUBNET = "172.18.0.0/16"            # the same in every lab: each lab has its own namespaces
GATEWAY = "172.18.0.1"
PREFIX_LEN = 16
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LAB_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,38}[a-z0-9])?$")


def check_lab_name(name: str) -> str:
    """`name` if it is a usable cluster name (lowercase letters, digits, '-', '.'; at most 40), else ConfigError."""
    if not isinstance(name, str) or not _LAB_NAME.match(name) or ".." in name:
        raise ConfigError(f"cluster name {name!r} is not valid: use lowercase letters, digits, '-' and '.', "
                          "starting and ending with a letter or digit, at most 40 characters")
    return name


def host_netns(lab: str) -> str:
    """The lab host network namespace: where the bridge lives and curl runs."""
    return f"kindlab-{lab}-host"


def node_netns(lab: str, node: str) -> str:
    """A node's network namespace."""
    return f"kindlab-{lab}-{node}"


def netns_path(netns: str) -> Path:
    """Where `ip netns` keeps a named network namespace."""
    return NETNS_DIR / netns


def owns_netns(lab: str, netns: str) -> bool:
    """True when the named network namespace belongs to `lab` (and not to a lab whose name extends it)."""
    lab_re = re.escape(lab)
    return bool(re.fullmatch(rf"kindlab-{lab_re}-(host|{lab_re}-(control-plane|worker)\d*)", netns))


def labs_of_netns(names: list[str]) -> set[str]:
    """Lab names that own at least one of these network namespaces (found by their host namespace)."""
    return {m.group(1) for n in names if (m := re.fullmatch(r"kindlab-(.+)-host", n))}


def marker(lab: str) -> str:
    """The command-line word that marks a process as the lab's."""
    return f"kindlab-lab={lab}"


def marked_lab(cmdline_words: list[str]) -> str | None:
    """The lab a process belongs to, from its command-line words (a title may hold several words)."""
    for word in cmdline_words:
        for part in word.split():
            if part.startswith("kindlab-lab="):
                return part.split("=", 1)[1]
    return None


def state_dir(lab: str) -> Path:
    """The lab's state folder."""
    return STATE_ROOT / lab


def node_ip(index: int) -> str:
    """Node `index` (config order) gets 172.18.0.2, .3, ... as Docker hands out addresses."""
    if not 0 <= index < 250:
        raise ConfigError(f"the netns backend supports at most 250 nodes, not {index + 1}")
    return f"172.18.0.{index + 2}"


def pod_key(namespace: str, name: str) -> str:
    """A pod's file name in the store."""
    return f"{namespace}_{name}"
