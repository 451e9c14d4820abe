"""Diagnose hostPort on every node, as the seed's walkthrough does by hand.

Per node, through ``lab.exec`` only (so every backend works the same), these checks:

``portmap-binary``
    Is ``portmap`` in the node's ``/opt/cni/bin``, and executable?
``cni-config``
    Which file of ``/etc/cni/net.d`` the runtime picks (the first ``.conf``/``.conflist``/``.json`` in byte
    order; an invalid first file leaves the node without a network), and does it chain portmap with
    ``capabilities.portMappings``?
``cni-cache``
    For each Running pod of the node with a hostPort: was its sandbox set up (libcni's record in
    ``/var/lib/cni/results``) with the config the runtime picks now, chaining portmap? A pod set up before
    the chained config arrived keeps its old network until it is recreated. No record: said, not failed;
    an unreadable record: failed.
``hostport-dnat``
    For each Running pod of the node with a hostPort: does the node's nat table DNAT that hostPort
    to podIP:containerPort, reachable from PREROUTING, or portmap's nftables table from its prerouting
    chain? The finding names the backend that serves it.

``stale-dnat``
    Does every portmap ``CNI-DN-*`` DNAT go to a live pod of the node?
``hostport-conflict``, ``nodeport-range``
    Do two pods ask the same hostPort on a node; is a hostPort inside the NodePort range?
``iptables-backend``
    Are portmap's and kube-proxy's rules in one iptables backend (legacy or nft)?
``nft-hostport``
    Does portmap keep rules in nftables (its ``cni_hostport`` tables, plugins v1.6 and later), which
    ``iptables-save`` never shows, and do they DNAT to live pods only?
``hostport-reach``
    From inside the node, does a TCP connect to each hostPort on the node IP succeed (and, reported
    alongside, on 127.0.0.1)?

Each finding has node, check, ok, message and fix; the fix says what to copy where, and whether
the pod must be recreated.

The modules: ``nodes`` (what doctor reads from a node and its pods), ``checks`` (a finding, and the
checks of the plumbing: portmap-binary, cni-config, hostport-dnat, hostport-reach), ``cni_cache`` (cni-cache:
libcni's records of the config each sandbox was set up with), ``rulesets`` (the checks of the rules as a whole:
stale-dnat, hostport-conflict, nodeport-range, iptables-backend, nft-hostport), ``fixes`` (what a fix says to
copy where) and ``report`` (:func:`doctor`, :func:`problems`).
"""

from __future__ import annotations

from ..model.portmap import NFT_TABLE
from .checks import FINDING_COLUMNS, check_config, check_dnat, check_portmap, check_reach, dnat_rule, trace_hostport
from .cni_cache import check_cni_cache, read_cache
from .nodes import (
    BACKENDS_SCRIPT,
    NFT_SCRIPT,
    NodeState,
    cni_choice,
    host_ports,
    iptables_backends,
    nat_rules,
    nft_hostport,
    read_node,
)
from .nodes import stuck as _stuck  # noqa: F401  (doctor._stuck, as the tests call it)
from .report import doctor, problems
from .rulesets import NODEPORT_RANGE, check_backends, check_hostport_use, check_nft, check_stale_dnat

__all__ = [
    "BACKENDS_SCRIPT", "FINDING_COLUMNS", "NFT_SCRIPT", "NFT_TABLE", "NODEPORT_RANGE", "NodeState", "check_backends",
    "check_cni_cache", "check_config", "check_dnat", "check_hostport_use", "check_nft", "check_portmap", "check_reach",
    "check_stale_dnat",
    "cni_choice", "dnat_rule", "doctor", "host_ports", "iptables_backends", "nat_rules", "nft_hostport", "problems",
    "read_cache", "read_node", "trace_hostport",
]
