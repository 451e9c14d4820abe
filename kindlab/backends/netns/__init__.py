"""The netns backend: a kind-like lab made of Linux namespaces, with the reference CNI plugins.

Module map:
  names        names and places of everything a lab makes (a sweep finds it all)
  tools        running ip/nsenter/unshare/mount, with failures turned into KindlabErrors
  preflight    root, tools, CNI plugins, overlayfs
  state/       the store (lab record, pods, statuses, events) and the host-path registry
  host         the lab host namespace with bridge `kind`, node network namespaces and veths
  rootfs       each node's own root: the machine's folders as lower layers, the node's writable layers above
  mounts       each node's mounts on that root: overlay /opt/cni/bin, its own /etc/cni/net.d, extraMounts
  nodes        node mount+UTS namespaces and node init processes
  provider     the CNI provider install (kindlab-cni, loopback, 05-kindlab.conf)
  plugin       kindlab-cni itself (standalone, stdlib only)
  cni          the CNI runtime: config choice, chained ADD/DEL/CHECK, result cache (libcni + containerd)
  sandbox      pod sandboxes (network, UTS and mount namespaces held by a pause process)
  workloads    what a container runs (the echo server), kubelet-style env, hosts and resolv.conf
  events       events aggregated as Kubernetes' event correlator does
  processes    process identity, liveness, the ledger of each lab's processes
  agent        the node agent: one per lab, the kubelet's reconcile loop (its clocks: model/kubelet.py)
  records      the agent's record of a pod's attempts and start, as annotations (the runtime's times)
  runtime_events  container starts pushed by the agent as they happen (as containerd's task events)
  controllers  deployments and scheduling for pods without a node
  lifecycle    making and removing whole labs
  files, curl  docker cp and curl for the lab
  cluster      NetnsCluster: a lab whose pods the model runs
  real/        real Kubernetes in the nodes: components, PKI, images, registry, RealLab
  backend      the module API below; which Kubernetes a lab runs (real where built, else model)
The functions below import lazily, so that the agent and plugin start without pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...progress import Reporter, quiet

if TYPE_CHECKING:
    from .cluster import NetnsCluster


def up(topology: Any, backoff: float | None = None, report: Reporter = quiet,
       kubernetes: str | None = None) -> NetnsCluster:
    """Get-or-create the lab for `topology`, run by real or model Kubernetes (see api.up)."""
    from .backend import up as _up
    return _up(topology, backoff=backoff, report=report, kubernetes=kubernetes)


def get(name: str) -> NetnsCluster:
    """The lab called `name`; NotFound otherwise."""
    from .backend import get as _get
    return _get(name)


def delete(name: str) -> bool:
    """Delete lab `name`; False if there was none."""
    from .backend import delete as _delete
    return _delete(name)


def clusters() -> list[str]:
    """Names of the labs on this machine."""
    from .backend import clusters as _clusters
    return _clusters()


def delete_all() -> list[str]:
    """Delete every lab, dead ones too."""
    from .backend import delete_all as _delete_all
    return _delete_all()
