"""The kind config loader: the repository's config, the seed's v1alpha3, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kindlab import topology
from kindlab.errors import ConfigError, KindlabError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "kind" / "config"

SEED_V1ALPHA3 = """
kind: Cluster
apiVersion: kind.sigs.k8s.io/v1alpha3
nodes:
- role: control-plane
  extraMounts:
  - containerPath: /etc/cni/net.d/000-cilium-portmap.conflist
    hostPath: cni/000-cilium-portmap.conflist
    readOnly: true
    type: File
- role: worker
- role: worker
  extraMounts:
  - containerPath: /opt/cni/
    hostPath: empty
    readOnly: false
    type: Directory
kubeadmConfigPatches:
- |
  apiVersion: kubeadm.k8s.io/v1beta1
  kind: ClusterConfiguration
  metadata:
    name: config
  networking:
    serviceSubnet: "10.96.0.1/12"
    podSubnet: "192.168.0.0/16"
"""


def write(tmp_path: Path, text: str, name: str = "config") -> Path:
    (tmp_path / "cni").mkdir(exist_ok=True)
    (tmp_path / "cni" / "000-cilium-portmap.conflist").write_text("{}")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_repository_config_is_the_seed_topology():
    topo = topology.load(CONFIG, name="kind")
    assert [n.name for n in topo.nodes] == ["kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"]
    assert [n.role for n in topo.nodes] == ["control-plane", "worker", "worker", "worker"]
    assert topo.networking.pod_subnet == "192.168.0.0/16"
    assert topo.networking.disable_default_cni is True
    conflist = "/etc/cni/net.d/000-cilium-portmap.conflist"
    has = {n.name: {m.container_path for m in n.mounts} for n in topo.nodes}
    assert has["kind-control-plane"] == {conflist}
    assert has["kind-worker"] == {conflist}
    assert has["kind-worker2"] == {conflist, "/opt/cni"}
    assert has["kind-worker3"] == set()
    worker2 = topo.node("kind-worker2")
    opt = next(m for m in worker2.mounts if m.container_path == "/opt/cni")
    assert opt.host_path == CONFIG.parent / "empty" and not opt.read_only
    mount = next(m for m in worker2.mounts if m.container_path == conflist)
    assert mount.host_path == CONFIG.parent / "cni" / "000-cilium-portmap.conflist" and mount.read_only


def test_pod_cidrs_are_one_slash_24_per_node_in_order():
    topo = topology.load(CONFIG, name="lab")
    assert [n.pod_cidr for n in topo.nodes] == [f"192.168.{i}.0/24" for i in range(4)]
    assert topo.nodes[0].name == "lab-control-plane"


def test_node_names_follow_kind():
    assert topology.node_names("x", ["control-plane", "worker", "worker", "control-plane"]) == [
        "x-control-plane", "x-worker", "x-worker2", "x-control-plane2"]


def test_seed_v1alpha3_is_converted_and_says_so(tmp_path):
    topo = topology.load(write(tmp_path, SEED_V1ALPHA3))
    assert topo.api_version == topology.KIND_API
    assert any("converted" in note and "v1alpha3" in note for note in topo.notes)
    assert topo.networking.pod_subnet == "192.168.0.0/16"
    assert topo.networking.service_subnet == "10.96.0.1/12"
    assert topo.node("kind-worker2").mounts[0].container_path == "/opt/cni/"


def test_to_kind_config_has_absolute_host_paths_and_no_type():
    rendered = topology.load(CONFIG).to_kind_config()
    assert rendered["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    mounts = [m for n in rendered["nodes"] for m in n.get("extraMounts", [])]
    assert mounts and all(Path(m["hostPath"]).is_absolute() and "type" not in m for m in mounts)
    assert rendered["networking"]["disableDefaultCNI"] is True
    yaml.safe_dump(rendered)


def test_to_frame_lists_mounts():
    frame = topology.load(CONFIG).to_frame()
    assert set(frame["node"]) == {"kind-control-plane", "kind-worker", "kind-worker2", "kind-worker3"}
    assert frame.loc[frame["node"] == "kind-worker3", "containerPath"].isna().all()


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n- role: control-plane\n"
         "  extraMounts:\n  - containerPath: /x\n    hostPath: cni/x.conflist\n",
         "nodes[1].extraMounts[0].hostPath: no such file 'cni/x.conflist'"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: master\n", "nodes[0].role"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha5\n", "apiVersion"),
        ("kind: Pod\napiVersion: v1\n", "kind: must be 'Cluster'"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n", "control-plane"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  podSubnet: banana\n",
         "networking.podSubnet: not a CIDR"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraMounts:\n"
         "  - containerPath: /x\n    hostPath: cni\n    type: Directory\n", "nodes[0].extraMounts[0].type"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraMounts:\n"
         "  - hostPath: cni\n", "nodes[0].extraMounts[0].containerPath: is required"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraMounts:\n"
         "  - containerPath: relative\n    hostPath: cni\n", "must be absolute"),
        ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  colour: blue\n",
         "unknown field(s) colour"),
        ("nodes: [\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a kind Cluster config"),
    ],
)
def test_bad_configs_name_the_file_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        topology.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_a_kindlab_error(tmp_path):
    with pytest.raises(KindlabError, match="no such kind config file"):
        topology.load(tmp_path / "nope")


def test_missing_writable_folder_is_allowed_as_docker_makes_it(tmp_path):
    text = ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraMounts:\n"
            "  - containerPath: /opt/cni\n    hostPath: empty\n")
    topo = topology.load(write(tmp_path, text))
    mount = topo.nodes[0].mounts[0]
    assert mount.host_path == tmp_path / "empty" and mount.is_dir
    assert not (tmp_path / "empty").exists()


def test_unknown_node_names_the_known_ones():
    with pytest.raises(ConfigError, match="kind-worker3"):
        topology.load(CONFIG).node("kind-worker9")


def test_what_kind_itself_carries_out_is_handed_on_to_kind(tmp_path):
    """Fields kindlab does not apply (feature gates, kube-proxy's mode, node labels, kubeadm patches) reach kind
    as written, and the notes say the netns lab does not apply them; a config without them is unchanged."""
    config = tmp_path / "config"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nfeatureGates:\n  EphemeralContainers: true\n"
        "kubeadmConfigPatches:\n- |\n  kind: ClusterConfiguration\n  apiServer:\n    extraArgs:\n      v: '4'\n"
        "networking:\n  kubeProxyMode: ipvs\nnodes:\n- role: control-plane\n"
        "- role: worker\n  labels:\n    tier: edge\n")
    topo = topology.load(config)
    rendered = topo.to_kind_config()
    assert rendered["featureGates"] == {"EphemeralContainers": True}
    assert rendered["kubeadmConfigPatches"][0].startswith("kind: ClusterConfiguration")
    assert rendered["networking"]["kubeProxyMode"] == "ipvs" and rendered["networking"]["podSubnet"]
    assert rendered["nodes"][1]["labels"] == {"tier": "edge"} and "labels" not in rendered["nodes"][0]
    rendered["nodes"][1]["labels"]["tier"] = "changed"   # a copy: the topology keeps what was written
    assert topo.to_kind_config()["nodes"][1]["labels"] == {"tier": "edge"}
    assert any("featureGates, kubeProxyMode, kubeadmConfigPatches, labels: kind's own" in n for n in topo.notes)
    plain = topology.load(CONFIG).to_kind_config()
    assert set(plain) == {"kind", "apiVersion", "networking", "nodes"} and not topology.load(CONFIG).notes
