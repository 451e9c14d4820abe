"""The manifest loader: the repository's manifests, multi-document YAML, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from kindlab import objects
from kindlab.errors import ManifestError

ROOT = Path(__file__).resolve().parents[1]


def test_static_pods_one_per_worker_with_host_port_80():
    pods = objects.load(ROOT / "manifests" / "static")
    assert [p.name for p in pods] == ["echo-kind-worker", "echo-kind-worker2", "echo-kind-worker3"]
    for pod in pods:
        assert isinstance(pod, objects.PodSpec)
        assert pod.node_name == pod.name.removeprefix("echo-")
        assert pod.namespace == "default" and pod.labels == {"run": "echo"}
        (port,) = pod.host_ports
        assert (port.host_port, port.container_port, port.protocol) == (80, 8080, "TCP")
        assert pod.containers[0].image == "inanimate/echo-server"


def test_deployment_keeps_template_and_replicas():
    (deploy,) = objects.load(ROOT / "manifests" / "deploy" / "echo-deploy.yaml")
    assert isinstance(deploy, objects.Deployment)
    assert deploy.name == "echo" and deploy.replicas == 1
    assert deploy.template.labels == {"run": "echo"}
    assert deploy.template.host_ports[0].host_port == 80


def test_multi_document_yaml_and_lists():
    text = """
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  containers: [{name: c, image: i, env: [{name: X, value: "1"}], ports: [{containerPort: 80, hostIP: 10.0.0.1}]}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: other}
  spec: {containers: [{name: c, image: i}]}
"""
    a, b = objects.loads(text)
    assert a.containers[0].env == (("X", "1"),)
    assert a.containers[0].ports[0].host_ip == "10.0.0.1" and a.host_ports == []
    assert (b.name, b.namespace) == ("b", "other")


def test_round_trip_to_manifest():
    (pod,) = objects.load(ROOT / "manifests" / "static" / "echo-kind-worker.yaml")
    again = objects.from_dict(pod.to_manifest())[0]
    assert again == pod


@pytest.mark.parametrize(
    "text, message",
    [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", "unsupported kind 'Service'"),
        ("apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n", "use apps/v1"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c, image: i}]}\n", "metadata.name"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n", "spec.containers: is required"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n",
         "spec.containers[0].image: is required"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, "
         "ports: [{containerPort: 8080, hostPort: 99999}]}]}\n", "spec.containers[0].ports[0].hostPort"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, "
         "ports: [{containerPort: 8080, protocol: ICMP}]}]}\n", "ports[0].protocol"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchLabels: {a: b}}, "
         "template: {metadata: {labels: {a: c}}, spec: {containers: [{name: c, image: i}]}}}\n",
         "must match spec.selector.matchLabels"),
        ("kind: Pod\n  bad: [indent\n", "not valid YAML"),
        ("- 1\n- 2\n", "expected a Kubernetes object"),
    ],
)
def test_bad_manifests_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        objects.load(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(ManifestError, match="no such file or folder"):
        objects.load(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="no .yaml"):
        objects.load(tmp_path)
