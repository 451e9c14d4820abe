"""The real components' configuration files and command lines, as kubeadm and kind write them.

Every path in a config or command line is a path *inside the node*, where a node is a machine
of its own (its own /etc, /var/lib, /run). `write` puts each node's files in a folder tree that
mirrors those paths (`<folder>/nodes/<node>/etc/kubernetes/...`); the node's mounts bind the
folders of OWN_DIRS from there (`node_dir`). On the control plane: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler; on every node with a kubelet: containerd, kubelet,
kube-proxy. No insecure port, no AlwaysAllow: RBAC + Node authorization, NodeRestriction,
certificates both ways, the API server bound to the control-plane's address inside the lab.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ....model.cni import CNI_BIN, NET_D
from ...oci.images import PAUSE_NAME
from . import kubeconfig, pki

K8S = "/etc/kubernetes"
PKI = f"{K8S}/pki"
CONTAINERD_SOCK = "/run/containerd/containerd.sock"
OWN_DIRS = ("/etc/kubernetes", "/etc/containerd", NET_D, "/var/lib/containerd", "/var/lib/kubelet",
            "/var/lib/kube-proxy", "/var/lib/etcd", "/var/lib/cni", "/var/log/pods", "/var/log/containers")
CERTS_D = "/etc/containerd/certs.d"
REGISTRIES = ("docker.io", "registry.k8s.io", "k8s.gcr.io")
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/master=:NoSchedule"            # kubeadm v1.20's
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclass(frozen=True)
class NodeSpec:
    """A node of the real cluster."""

    name: str
    ip: str
    role: str = "worker"          # "control-plane" or "worker"
    kubelet: bool = True          # runs containerd, kubelet and kube-proxy


@dataclass
class ClusterSpec:
    """What the components need to know about the cluster."""

    name: str
    nodes: list[NodeSpec]
    bin_dir: Path
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/12"
    node_cidr_mask: int = 24
    api_port: int = 6443
    dns_domain: str = "cluster.local"
    registry: str | None = None    # "IP:PORT" of registry.py, the only server of every registry
    extra_sans: list[str] = field(default_factory=list)
    node_status_update_frequency: str = "10s"   # the kubelet's default; a node turns Ready at its first tick
    allocate_node_cidrs: bool = True             # False: whoever makes the nodes sets their spec.podCIDR

    @property
    def control_plane(self) -> NodeSpec:
        return next(n for n in self.nodes if n.role == "control-plane")

    @property
    def server(self) -> str:
        return f"https://{self.control_plane.ip}:{self.api_port}"

    @property
    def service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_subnet)[1])

    @property
    def dns_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_subnet)[10])

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)


@dataclass(frozen=True)
class Component:
    """One long-running process of a node."""

    name: str
    argv: list[str]


def _flags(flags: dict[str, object]) -> list[str]:
    return [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags.items()]


def etcd(c: ClusterSpec) -> Component:
    cp = c.control_plane
    return Component("etcd", ["etcd", *_flags({
        "name": cp.name, "data-dir": "/var/lib/etcd",
        "listen-client-urls": f"https://127.0.0.1:2379,https://{cp.ip}:2379",
        "advertise-client-urls": f"https://{cp.ip}:2379",
        "listen-peer-urls": f"https://{cp.ip}:2380", "initial-advertise-peer-urls": f"https://{cp.ip}:2380",
        "initial-cluster": f"{cp.name}=https://{cp.ip}:2380", "listen-metrics-urls": "http://127.0.0.1:2381",
        "cert-file": f"{PKI}/etcd/server.crt", "key-file": f"{PKI}/etcd/server.key",
        "trusted-ca-file": f"{PKI}/etcd/ca.crt", "client-cert-auth": True,
        "peer-cert-file": f"{PKI}/etcd/peer.crt", "peer-key-file": f"{PKI}/etcd/peer.key",
        "peer-trusted-ca-file": f"{PKI}/etcd/ca.crt", "peer-client-cert-auth": True, "snapshot-count": 10000,
    })])


def apiserver(c: ClusterSpec) -> Component:
    cp = c.control_plane
    return Component("kube-apiserver", [c.bin("kube-apiserver"), *_flags({
        "advertise-address": cp.ip, "bind-address": cp.ip, "secure-port": c.api_port, "insecure-port": 0,
        "allow-privileged": True, "authorization-mode": "Node,RBAC", "enable-admission-plugins": "NodeRestriction",
        "anonymous-auth": True,   # kubeadm's default: /healthz, /version for probes; RBAC grants nothing else
        "client-ca-file": f"{PKI}/ca.crt", "tls-cert-file": f"{PKI}/apiserver.crt",
        "tls-private-key-file": f"{PKI}/apiserver.key",
        "etcd-servers": "https://127.0.0.1:2379", "etcd-cafile": f"{PKI}/etcd/ca.crt",
        "etcd-certfile": f"{PKI}/apiserver-etcd-client.crt", "etcd-keyfile": f"{PKI}/apiserver-etcd-client.key",
        "kubelet-client-certificate": f"{PKI}/apiserver-kubelet-client.crt",
        "kubelet-client-key": f"{PKI}/apiserver-kubelet-client.key",
        "kubelet-certificate-authority": f"{PKI}/ca.crt",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "proxy-client-cert-file": f"{PKI}/front-proxy-client.crt",
        "proxy-client-key-file": f"{PKI}/front-proxy-client.key",
        "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "requestheader-allowed-names": "front-proxy-client", "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group", "requestheader-username-headers": "X-Remote-User",
        "service-account-issuer": f"https://kubernetes.default.svc.{c.dns_domain}",
        "service-account-key-file": f"{PKI}/sa.pub", "service-account-signing-key-file": f"{PKI}/sa.key",
        "service-cluster-ip-range": c.service_subnet,
    })])


def controller_manager(c: ClusterSpec) -> Component:
    conf = f"{K8S}/controller-manager.conf"
    return Component("kube-controller-manager", [c.bin("kube-controller-manager"), *_flags({
        "kubeconfig": conf, "authentication-kubeconfig": conf, "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1", "port": 0, "leader-elect": False, "cluster-name": c.name,
        "allocate-node-cidrs": c.allocate_node_cidrs, "cluster-cidr": c.pod_subnet,
        "node-cidr-mask-size": c.node_cidr_mask,
        "service-cluster-ip-range": c.service_subnet, "controllers": "*,bootstrapsigner,tokencleaner",
        "client-ca-file": f"{PKI}/ca.crt", "requestheader-client-ca-file": f"{PKI}/front-proxy-ca.crt",
        "cluster-signing-cert-file": f"{PKI}/ca.crt", "cluster-signing-key-file": f"{PKI}/ca.key",
        "root-ca-file": f"{PKI}/ca.crt", "service-account-private-key-file": f"{PKI}/sa.key",
        "use-service-account-credentials": True,
    })])


def scheduler(c: ClusterSpec) -> Component:
    conf = f"{K8S}/scheduler.conf"
    return Component("kube-scheduler", [c.bin("kube-scheduler"), *_flags({
        "kubeconfig": conf, "authentication-kubeconfig": conf, "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1", "port": 0, "leader-elect": False,
    })])


def containerd(c: ClusterSpec) -> Component:
    return Component("containerd", ["containerd", "--config", "/etc/containerd/config.toml"])


def kubelet(c: ClusterSpec, node: NodeSpec) -> Component:
    flags: dict[str, object] = {
        "config": "/var/lib/kubelet/config.yaml", "kubeconfig": f"{K8S}/kubelet.conf",
        "container-runtime": "remote", "container-runtime-endpoint": f"unix://{CONTAINERD_SOCK}",
        "root-dir": "/var/lib/kubelet", "hostname-override": node.name, "node-ip": node.ip,
        "pod-infra-container-image": PAUSE_NAME,
    }
    if node.role == "control-plane":   # kubeadm's taint; its role labels are set by the admin (NodeRestriction)
        flags["register-with-taints"] = CONTROL_PLANE_TAINT
    return Component("kubelet", [c.bin("kubelet"), *_flags(flags)])


def kube_proxy(c: ClusterSpec, node: NodeSpec) -> Component:
    return Component("kube-proxy", [c.bin("kube-proxy"), "--config=/var/lib/kube-proxy/config.conf",
                                    f"--hostname-override={node.name}", "--oom-score-adj=0"])


def control_plane(c: ClusterSpec) -> list[Component]:
    """The control-plane node's own processes, in start order."""
    return [etcd(c), apiserver(c), controller_manager(c), scheduler(c)]


def node_agents(c: ClusterSpec, node: NodeSpec) -> list[Component]:
    """What every node with a kubelet runs, in start order."""
    return [containerd(c), kubelet(c, node), kube_proxy(c, node)] if node.kubelet else []


def components(c: ClusterSpec, node: NodeSpec) -> list[Component]:
    """All the node's processes in start order."""
    return (control_plane(c) if node.role == "control-plane" else []) + node_agents(c, node)


def containerd_config(c: ClusterSpec) -> str:
    """containerd's config.toml: its own root, state and socket; the CRI plugin as the real lab needs it."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2", 'root = "/var/lib/containerd"', 'state = "/run/containerd"', "oom_score = 0",
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", '
        '"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", '
        '"io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
        "", "[grpc]", f'  address = "{CONTAINERD_SOCK}"',
        "", f"[{cri}]", f'  sandbox_image = "{PAUSE_NAME}"',
        "  restrict_oom_score_adj = true   # these machines refuse a negative oom_score_adj, even to root",
        "  disable_apparmor = true", "  enable_selinux = false", '  stream_server_address = "127.0.0.1"',
        f"[{cri}.containerd]", '  snapshotter = "overlayfs"', '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]", '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]", "  SystemdCgroup = false",
        f"[{cri}.cni]", f'  bin_dir = "{CNI_BIN}"', f'  conf_dir = "{NET_D}"',
    ]
    if c.registry:   # each registry's hosts.toml names the lab's registry as its only server (registry_hosts)
        lines += [f"[{cri}.registry]", f'  config_path = "{CERTS_D}"']
    lines += ['[plugins."io.containerd.internal.v1.opt"]', '  path = "/var/lib/containerd/opt"']
    return "\n".join(lines) + "\n"


def registry_hosts(c: ClusterSpec) -> dict[str, str]:
    """certs.d/<registry>/hosts.toml for each registry: the lab's registry as `server`, so that a pull
    never falls back to the real registry (as the deprecated `mirrors` setting would)."""
    if not c.registry:
        return {}
    url = f"http://{c.registry}"
    text = f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n'
    return {f"{host}/hosts.toml": text for host in REGISTRIES}


def kubelet_config(c: ClusterSpec, node: NodeSpec) -> dict:
    """The KubeletConfiguration that runs in node namespaces (see the issue's measurements)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": f"{PKI}/ca.crt"}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": f"{PKI}/kubelet-{node.name}-serving.crt",
        "tlsPrivateKeyFile": f"{PKI}/kubelet-{node.name}-serving.key",
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
        "failSwapOn": False, "readOnlyPort": 0, "evictionHard": {}, "imageGCHighThresholdPercent": 100,
        "oomScoreAdj": 0, "healthzBindAddress": "127.0.0.1", "clusterDomain": c.dns_domain,
        "clusterDNS": [c.dns_ip], "resolvConf": "/etc/resolv.conf",
        "nodeStatusUpdateFrequency": c.node_status_update_frequency,
    }


def kube_proxy_config(c: ClusterSpec, node: NodeSpec) -> dict:
    """kube-proxy in iptables mode, touching no machine-wide sysctl (conntrack sizes left as they are)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": f"{K8S}/kube-proxy.conf"}, "mode": "iptables",
        "clusterCIDR": c.pod_subnet, "hostnameOverride": node.name, "oomScoreAdj": 0,
        "bindAddress": node.ip, "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def node_dir(folder: Path, node: str) -> Path:
    """Where `write` puts a node's own files: a tree mirroring the node's paths."""
    return folder / "nodes" / node


def write(folder: Path, c: ClusterSpec, roots: Mapping[str, Path] | None = None) -> dict[str, pki.Issued]:
    """Write the PKI, kubeconfigs and configs of every node under `folder`; returns the certificates.

    `<folder>/pki/` holds every certificate, `<folder>/admin.conf` the admin's kubeconfig (server:
    the control plane inside the lab) and each node's own files go in `roots[node]`, a tree mirroring
    the node's paths (default `<folder>/nodes/<node>/`, node_dir).
    """
    cp = c.control_plane
    certs = pki.write(folder / "pki", pki.ClusterIdentity(
        pki.NodeIdentity(cp.name, cp.ip), [pki.NodeIdentity(n.name, n.ip) for n in c.nodes if n.kubelet],
        service_ip=c.service_ip, dns_domain=c.dns_domain, extra_sans=c.extra_sans))
    ca = certs["ca"]
    kubeconfig.write(folder / "admin.conf", c.server, ca, certs["admin"], "kubernetes-admin", c.name)
    for node in c.nodes:
        root = roots[node.name] if roots else node_dir(folder, node.name)
        for d in OWN_DIRS:
            (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        etc = root / K8S.lstrip("/")
        wanted = ["ca.crt"]
        if node.role == "control-plane":
            wanted = sorted(str(p.relative_to(folder / "pki")) for p in (folder / "pki").rglob("*") if p.is_file())
            for user, stem in (("kubernetes-admin", "admin"), ("system:kube-controller-manager", "controller-manager"),
                               ("system:kube-scheduler", "scheduler")):
                kubeconfig.write(etc / f"{stem}.conf", c.server, ca, certs[stem], user, c.name)
        if node.kubelet:
            wanted += [f"kubelet-{node.name}-serving.crt", f"kubelet-{node.name}-serving.key"]
            kubeconfig.write(etc / "kubelet.conf", c.server, ca, certs[f"kubelet-{node.name}"],
                             f"system:node:{node.name}", c.name)
            kubeconfig.write(etc / "kube-proxy.conf", c.server, ca, certs["kube-proxy"], "system:kube-proxy", c.name)
            (root / "etc/containerd/config.toml").write_text(containerd_config(c))
            for rel, text in registry_hosts(c).items():
                path = root / CERTS_D.lstrip("/") / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            (root / "var/lib/kubelet/config.yaml").write_text(yaml.safe_dump(kubelet_config(c, node)))
            (root / "var/lib/kube-proxy/config.conf").write_text(yaml.safe_dump(kube_proxy_config(c, node)))
        for rel in sorted(set(wanted)):
            target = etc / "pki" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            source = folder / "pki" / rel
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    return certs
