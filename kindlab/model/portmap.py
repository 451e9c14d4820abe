"""The names portmap writes, once: its iptables chains, its nftables table and chains, its mark.

Read from the CNI reference plugins' portmap (iptables backend since v0.x, nftables backend since v1.6.0).
"""

from __future__ import annotations

#: The iptables chains portmap makes in the nat table; every one starts with HOSTPORT_PREFIX.
HOSTPORT_PREFIX = "CNI-HOSTPORT-"
DNAT_CHAIN = "CNI-HOSTPORT-DNAT"
SETMARK_CHAIN = "CNI-HOSTPORT-SETMARK"
MASQ_CHAIN = "CNI-HOSTPORT-MASQ"
#: A pod's own chain of DNAT rules: CNI-DN-<hash of the network name and the container id>.
POD_CHAIN_PREFIX = "CNI-DN-"
#: What the walkthrough's `iptables-save | grep HOSTPORT` finds.
GREP_WORD = "HOSTPORT"
#: The mark portmap sets on hairpin traffic so that CNI-HOSTPORT-MASQ masquerades it.
MASQ_MARK = "0x2000"

#: The nftables backend: one table per family, `ip cni_hostport` for IPv4.
NFT_TABLE = "cni_hostport"
NFT_FAMILY = "ip"
NFT_CHAINS = ("hostports", "hostip_hostports", "hostports_all", "prerouting", "output", "masquerading")


def is_portmap_chain(chain: str) -> bool:
    """True for a chain portmap writes: CNI-HOSTPORT-* or a pod's CNI-DN-*."""
    return chain.startswith(HOSTPORT_PREFIX) or chain.startswith(POD_CHAIN_PREFIX)


def is_pod_chain(chain: str) -> bool:
    """True for a pod's own chain of DNAT rules (CNI-DN-*)."""
    return chain.startswith(POD_CHAIN_PREFIX)
