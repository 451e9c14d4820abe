"""The real components' configs and command lines: what each node gets, and no insecure setting anywhere."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from kindlab.backends.netns.real import components as c

NODES = [c.NodeSpec("kind-control-plane", "172.18.0.2", "control-plane"), c.NodeSpec("kind-worker", "172.18.0.3"),
         c.NodeSpec("kind-worker2", "172.18.0.4")]


@pytest.fixture(scope="module")
def cluster() -> c.ClusterSpec:
    return c.ClusterSpec(name="kind", nodes=NODES, bin_dir=Path("/cache/bin"), registry="172.18.0.1:5000")


@pytest.fixture(scope="module")
def written(cluster, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    c.write(folder, cluster)
    return folder


def flags(comp: c.Component) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in comp.argv[1:] if a.startswith("--") and "=" in a)


def test_addresses_from_the_service_subnet(cluster):
    assert cluster.service_ip == "10.96.0.1" and cluster.dns_ip == "10.96.0.10"
    assert cluster.server == "https://172.18.0.2:6443" and cluster.control_plane.name == "kind-control-plane"


def test_start_order_per_role(cluster):
    assert [x.name for x in c.components(cluster, NODES[0])] == [
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"]
    assert [x.name for x in c.components(cluster, NODES[1])] == ["containerd", "kubelet", "kube-proxy"]
    assert [x.name for x in c.control_plane(cluster)] == ["etcd", "kube-apiserver", "kube-controller-manager",
                                                          "kube-scheduler"]
    assert [x.name for x in c.node_agents(cluster, NODES[0])] == ["containerd", "kubelet", "kube-proxy"]
    no_kubelet = c.NodeSpec("cp", "172.18.0.2", "control-plane", kubelet=False)
    assert c.node_agents(cluster, no_kubelet) == []
    assert "kubelet" not in [x.name for x in c.components(cluster, no_kubelet)]


def test_apiserver_is_secure_and_inside_the_lab(cluster):
    f = flags(c.apiserver(cluster))
    assert f["authorization-mode"] == "Node,RBAC" and f["enable-admission-plugins"] == "NodeRestriction"
    assert f["insecure-port"] == "0" and f["bind-address"] == "172.18.0.2" and f["secure-port"] == "6443"
    assert f["client-ca-file"].endswith("/pki/ca.crt") and f["kubelet-certificate-authority"].endswith("/pki/ca.crt")
    assert f["etcd-servers"].startswith("https://") and f["service-cluster-ip-range"] == "10.96.0.0/12"
    assert "AlwaysAllow" not in " ".join(c.apiserver(cluster).argv)
    e = flags(c.etcd(cluster))
    assert e["client-cert-auth"] == "true" and e["peer-client-cert-auth"] == "true"
    assert all(u.startswith("https://") for u in e["listen-client-urls"].split(","))


def test_controller_manager_allocates_node_cidrs(cluster):
    f = flags(c.controller_manager(cluster))
    assert f["allocate-node-cidrs"] == "true" and f["cluster-cidr"] == "10.244.0.0/16"
    assert f["node-cidr-mask-size"] == "24" and f["port"] == "0" and f["use-service-account-credentials"] == "true"
    assert flags(c.scheduler(cluster))["port"] == "0"


def test_containerd_config(cluster):
    doc = tomllib.loads(c.containerd_config(cluster))
    assert doc["root"] == "/var/lib/containerd" and doc["state"] == "/run/containerd"
    assert doc["grpc"]["address"] == c.CONTAINERD_SOCK
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True and cri["sandbox_image"] == "registry.k8s.io/pause:3.2"
    assert cri["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["registry"] == {"config_path": "/etc/containerd/certs.d"}
    hosts = c.registry_hosts(cluster)
    assert set(hosts) == {"docker.io/hosts.toml", "registry.k8s.io/hosts.toml", "k8s.gcr.io/hosts.toml"}
    docker = tomllib.loads(hosts["docker.io/hosts.toml"])
    assert docker == {"server": "http://172.18.0.1:5000",
                      "host": {"http://172.18.0.1:5000": {"capabilities": ["pull", "resolve"]}}}
    no_registry = c.ClusterSpec(name="kind", nodes=NODES, bin_dir=Path("/b"))
    assert "registry" not in tomllib.loads(c.containerd_config(no_registry))["plugins"]["io.containerd.grpc.v1.cri"]


def test_kubelet_and_kube_proxy(cluster):
    f = flags(c.kubelet(cluster, NODES[1]))
    assert f["container-runtime"] == "remote" and f["container-runtime-endpoint"] == "unix:///run/containerd/containerd.sock"
    assert f["hostname-override"] == "kind-worker" and f["node-ip"] == "172.18.0.3"
    assert f["root-dir"] == "/var/lib/kubelet"
    cfg = c.kubelet_config(cluster, NODES[1])
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["cgroupsPerQOS"] is False and cfg["failSwapOn"] is False
    assert cfg["enforceNodeAllocatable"] == [] and cfg["evictionHard"] == {} and cfg["readOnlyPort"] == 0
    assert cfg["oomScoreAdj"] == 0 and cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authorization"]["mode"] == "Webhook" and cfg["clusterDNS"] == ["10.96.0.10"]
    assert "--oom-score-adj=0" in c.kube_proxy(cluster, NODES[1]).argv
    proxy = c.kube_proxy_config(cluster, NODES[1])
    assert proxy["mode"] == "iptables" and proxy["oomScoreAdj"] == 0 and proxy["conntrack"]["maxPerCore"] == 0


def test_each_node_gets_only_its_own_files(written):
    cp, worker = c.node_dir(written, "kind-control-plane"), c.node_dir(written, "kind-worker")
    for d in c.OWN_DIRS:
        assert (worker / d.lstrip("/")).is_dir()
    assert (cp / "etc/kubernetes/pki/ca.key").is_file() and (cp / "etc/kubernetes/pki/etcd/server.key").is_file()
    assert {p.name for p in (cp / "etc/kubernetes").glob("*.conf")} == {
        "admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf", "kube-proxy.conf"}
    assert sorted(p.name for p in (worker / "etc/kubernetes/pki").iterdir()) == [
        "ca.crt", "kubelet-kind-worker-serving.crt", "kubelet-kind-worker-serving.key"]
    assert {p.name for p in (worker / "etc/kubernetes").glob("*.conf")} == {"kubelet.conf", "kube-proxy.conf"}
    kubelet = yaml.safe_load((worker / "etc/kubernetes/kubelet.conf").read_text())
    assert kubelet["users"][0]["name"] == "system:node:kind-worker"
    assert kubelet["clusters"][0]["cluster"]["server"] == "https://172.18.0.2:6443"
    assert yaml.safe_load((worker / "var/lib/kubelet/config.yaml").read_text())["kind"] == "KubeletConfiguration"
    assert tomllib.loads((worker / "etc/containerd/config.toml").read_text())["version"] == 2
    assert (worker / "etc/containerd/certs.d/docker.io/hosts.toml").is_file()
    assert (written / "admin.conf").stat().st_mode & 0o077 == 0
