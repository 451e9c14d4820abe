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
  (kindlab-cni itself, the primary plugin it installs: kindlab/cni_plugin.py, standalone, stdlib only)
  cni          the CNI runtime: config choice, chained ADD/DEL/CHECK, result cache (libcni + containerd)
  sandbox      pod sandboxes (network, UTS and mount namespaces held by a pause process)
  workloads    what a container runs (the echo server), kubelet-style env, hosts and resolv.conf
  events       events aggregated as Kubernetes' event correlator does
  processes    process identity, liveness, the ledger of each lab's processes
  agent        the node agent's entry point (`python -m kindlab.backends.netns.agent`): one per lab
  kubelet_loop the agent's kubelet: sync loop, admission, back-off and relist clocks (model/kubelet.py)
  pod_worker   the kubelet's pod work on pool threads: make, retry, remake, kill pods; their events
  pod_status   what the agent knows of a pod (PodState, Stage) and the v1 status it writes
  container_runtime  the agent's containerd: sandboxes, CNI ADD/DEL, container processes, orphans
  records      the agent's record of a pod's attempts and start, as annotations (the runtime's times)
  runtime_events  container starts pushed by the agent as they happen (as containerd's task events)
  controllers  deployments and scheduling for pods without a node
  lifecycle    making and removing whole labs
  files, curl  docker cp and curl for the lab
  cluster      NetnsLab (what every lab is) and ModelLab, a lab whose pods the model runs
  lab_nodes    the node half of every lab: exec, cp, curl
  model_api    the model's API half: the store as the API server
  real/        real Kubernetes in the nodes: components, PKI, images, registry, RealLab
  backend      the backend's functions (up, get, delete, ...); which Kubernetes a lab runs (real where built,
               else model)
Registering the backend imports nothing more, so that the agent and plugin start without pandas.
"""

from __future__ import annotations

from ..contract import ModuleBackend
from ..registry import register

BACKEND = register(ModuleBackend("netns", order=20, kubernetes=("real", "model"), module=f"{__name__}.backend"))
