"""kindlab's kind node image and its CNI, piece by piece (the image itself is built and booted in test_kind_real)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kindlab import cni_plugin, topology
from kindlab.backends.kind import cni, lifecycle, node_image
from kindlab.backends.kind.node_image import files, images
from kindlab.backends.oci import images as oci
from kindlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_the_node_answers_what_kind_asks_of_an_image():
    made = files.node_files("v1.20.2", images.PAUSE)
    assert made["kind/version"] == ("v1.20.2\n", 0o644)            # one semver line (kind's KubeVersion)
    entrypoint, mode = made["usr/local/bin/entrypoint"]
    assert mode == 0o755 and entrypoint.startswith("#!/bin/sh") and entrypoint.rstrip().endswith('exec "$@"')
    assert "mount --make-rshared /" in entrypoint and "kubelet" in entrypoint   # cgroupRoot /kubelet made
    config = made["etc/containerd/config.toml"][0]
    for line in ('sandbox_image = "k8s.gcr.io/pause:3.2"', "SystemdCgroup = false", "restrict_oom_score_adj = true",
                 'config_path = "/etc/containerd/certs.d"', "version = 2"):
        assert line in config
    assert "OOMScoreAdjust=0" in made["etc/systemd/system/containerd.service.d/10-kindlab.conf"][0]
    assert "--oom-score-adj=0" in made["etc/systemd/system/kubelet.service"][0]
    hosts = [p for p in made if p.endswith("hosts.toml")]
    assert sorted(Path(p).parent.name for p in hosts) == ["docker.io", "k8s.gcr.io", "registry.k8s.io"]
    assert all(f'server = "http://{files.REGISTRY}"' in made[p][0] for p in hosts)
    links = files.node_links()
    assert links["etc/systemd/system/multi-user.target.wants/kubelet.service"] == "/etc/systemd/system/kubelet.service"
    assert links["etc/systemd/system/getty.target"] == "/dev/null"


def test_the_images_are_named_as_kubeadm_1_20_names_them():
    assert images.PAUSE == "k8s.gcr.io/pause:3.2" and images.ETCD == "k8s.gcr.io/etcd:3.4.13-0"
    assert images.KUBERNETES_VERSION == "v1.20.2"


def test_a_layer_keeps_its_links(tmp_path: Path):
    layer = oci.layer_tar({"/bin/busybox": b"x"}, links={"/bin/sh": "busybox"})
    image = oci.write_layout(tmp_path / "l", "docker.io/library/t:1", layer, {})
    import io
    import tarfile
    blobs = {p.name: p.read_bytes() for p in (image.layout / "blobs" / "sha256").iterdir()}
    with tarfile.open(fileobj=io.BytesIO(blobs[max(blobs, key=lambda k: len(blobs[k]))])) as tar:
        sh = tar.getmember("bin/sh")
    assert sh.issym() and sh.linkname == "busybox"


def test_the_images_tag_follows_every_binary_it_carries(tmp_path: Path):
    for name in {*node_image.NODE_BINARIES, *images.CONTROL_PLANE, "kube-proxy", "pause"}:
        (tmp_path / name).write_bytes(name.encode())
    first = node_image.inputs_key(tmp_path)
    assert node_image.inputs_key(tmp_path) == first and len(first) == 12
    (tmp_path / "kubeadm").write_bytes(b"another build")
    assert node_image.inputs_key(tmp_path) != first


def test_kindlab_cni_stands_in_for_cilium_in_the_config_kind_gets(tmp_path: Path):
    shutil.copytree(ROOT / "kind", tmp_path / "kind", ignore=shutil.ignore_patterns("empty"))
    topo = topology.load(tmp_path / "kind" / "config", name="kind")
    config, lines = lifecycle.kind_config(topo, cni.KINDLAB)
    mounts = [m for n in config["nodes"] for m in n.get("extraMounts", []) if "net.d" in m["containerPath"]]
    assert {Path(m["hostPath"]).name for m in mounts} == {"000-kindlab-portmap.conflist"}
    assert {m["containerPath"] for m in mounts} == {"/etc/cni/net.d/000-kindlab-portmap.conflist"}
    assert lines[1:] == ["kind: kindlab-cni stands in for cilium-cni: cni/000-cilium-portmap.conflist -> "
                         "cni/000-kindlab-portmap.conflist"]
    with_cilium, cilium_lines = lifecycle.kind_config(topo, cni.CILIUM)
    assert with_cilium["nodes"] == topo.to_kind_config()["nodes"] and cilium_lines == lines[:1]


def test_kind_kubelets_get_the_settings_of_the_netns_labs_kubelets(tmp_path: Path):
    """Every kubelet kindlab starts sends node status every second (kube.kubelet_settings); on kind through a
    kubeadm patch of the KubeletConfiguration, said in the lines create reports."""
    topo = topology.load(ROOT / "kind" / "config", name="kind")
    for which in (cni.KINDLAB, cni.CILIUM):
        config, lines = lifecycle.kind_config(topo, which)
        patches = [yaml.safe_load(p) for p in config["kubeadmConfigPatches"]]
        assert {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                "nodeStatusUpdateFrequency": "1s"} in patches
        assert lines[0] == "kind: kubelets send node status every 1s (kubeadmConfigPatches), as the netns lab's do"


def test_the_cni_is_chosen_by_what_is_installed(monkeypatch):
    monkeypatch.delenv("KINDLAB_CNI", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cni.choose() == cni.KINDLAB
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert cni.choose() == cni.CILIUM and cni.choose("kindlab") == cni.KINDLAB
    with pytest.raises(ConfigError, match="unknown CNI 'flannel' for kind; choose one of cilium, kindlab"):
        cni.choose("flannel")


def test_the_installer_daemonset_runs_on_every_node_with_the_nodes_root():
    ds = cni.daemonset("192.168.0.0/16")
    spec = ds["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert spec["hostNetwork"] and spec["tolerations"] == [{"operator": "Exists"}]
    assert container["securityContext"] == {"privileged": True} and container["image"] == cni.CNI_INSTALLER
    assert spec["volumes"] == [{"name": "host", "hostPath": {"path": "/"}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["POD_NETWORK"] == "192.168.0.0/16" and json.loads(env["CONF"]) == cni_plugin.CONF
    assert env["CONF_NAME"] == "05-kindlab.conf"
    yaml.safe_dump(ds)   # a manifest kubectl would take


def test_the_plugin_runs_with_the_nodes_python():
    script = cni.plugin_script(Path(cni_plugin.__file__).read_text())
    assert script.startswith("#!/usr/bin/python3 -IS\n") and "def main()" in script
