"""The kind backend: the walkthrough on a real kind cluster with real Cilium.

Modules: backend (up, get, delete, ...), cluster (KindCluster: KubeApi + nodes.DockerNodes), lifecycle
(kind create, Cilium, waiting, a topology from the containers), state (what kindlab keeps, delete), tools
(kind, helm, docker as commands), translate (Docker's errors), archive and curl (docker cp, curl).

Nodes are Docker containers made by `kind create cluster`; exec and cp go through the Docker SDK;
pods, events, apply, delete and watches go through the Kubernetes Python client with the
`kind-<name>` context; curl goes from the host to the node IP (from inside a node where the host
cannot route to the Docker network, as with Docker Desktop).

Cilium is installed as its "Installation Using Kind" guide does: `helm install cilium cilium/cilium
--version X --namespace kube-system --set image.pullPolicy=IfNotPresent --set ipam.mode=kubernetes`,
at the pinned version `CILIUM_VERSION` (1.20.2), plus `--set cni.exclusive=false` (by default Cilium
renames every other file in /etc/cni/net.d to `*.cilium_bak`, the seed's chained
`000-cilium-portmap.conflist` included) and `--set kubeProxyReplacement=false`, stated rather than left
to the chart: so, as in 2019, a hostPort answers only where the chained portmap plugin runs, and the
seed's broken workers break the same way.

Where today's Cilium differs from the seed's (2019, Cilium <= 1.5):
- Cilium 1.5 had no way to chain portmap, so the seed mounts its own conflist
  (`cilium-cni` then `portmap`) that sorts before Cilium's own `05-cilium.conf`.
- Since Cilium 1.6 (August 2019; cilium/cilium#7901, merged May 2019) Cilium chains portmap itself:
  `cni-chaining-mode: portmap`, today the helm value `cni.chainingMode=portmap`, writes
  `05-cilium.conflist` with portmap after cilium-cni, which makes the seed's file unnecessary.
- Since Cilium 1.8 (June 2020; cilium/cilium#10592) hostPort is implemented natively in eBPF by
  Cilium's kube-proxy replacement; chaining is needed only with `kubeProxyReplacement=false`.
  With kube-proxy replacement on, worker3 (no chained conflist) would answer on its hostPort too.
- Today's agent writes `05-cilium.conflist` (not `.conf`), and with `cni.exclusive=true` (the
  default) renames foreign CNI configs to `*.cilium_bak`; kindlab turns that off.
"""

from __future__ import annotations

from ..contract import ModuleBackend
from ..registry import register

BACKEND = register(ModuleBackend("kind", order=10, kubernetes=("real",), module=f"{__name__}.backend",
                                  cnis=("cilium", "kindlab"), builds=("node-image",)))
