"""Which Kubernetes a netns lab runs: --kubernetes, kubernetes=, KINDLAB_KUBERNETES, else real where built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kindlab import backends
from kindlab.backends.netns import backend as api
from kindlab.errors import ConfigError, KindlabError

ROOT = Path(__file__).resolve().parents[1]


def test_the_choice_in_order(monkeypatch):
    monkeypatch.delenv("KINDLAB_KUBERNETES", raising=False)
    monkeypatch.setattr(api.binaries, "missing", lambda: [])
    assert api.select_kubernetes() == "real"              # built here: real by default
    monkeypatch.setattr(api.binaries, "missing", lambda: ["kubelet"])
    assert api.select_kubernetes() == "model"             # not built: the model
    monkeypatch.setenv("KINDLAB_KUBERNETES", "real")
    assert api.select_kubernetes() == "real"
    assert api.select_kubernetes("model") == "model"      # the argument wins over the environment
    with pytest.raises(ConfigError, match="unknown kubernetes 'mock'.*real, model"):
        api.select_kubernetes("mock")


def test_describe_choice_says_what_up_would_run(monkeypatch):
    monkeypatch.setattr(api.binaries, "missing", lambda: [])
    assert "real Kubernetes" in backends.describe_choice("netns", "real")
    assert "model of the kubelet" in backends.describe_choice("netns", "model")
    assert "kind" in backends.describe_choice("kind")


def test_kind_has_no_model(tmp_path):
    with pytest.raises(KindlabError, match="kind runs real Kubernetes"):
        backends.up(ROOT / "kind" / "config", backend="kind", kubernetes="model")


def test_a_bad_choice_on_the_command_line_is_one_line():
    done = subprocess.run([sys.executable, "-m", "kindlab.cli", "create", "cluster", "--kubernetes", "mock"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice: 'mock'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.netns
def test_the_model_has_no_kubeconfig_and_says_so(make_lab):
    lab = make_lab()
    assert lab.capabilities.kubelet == "model" and not lab.capabilities.kubeconfig
    with pytest.raises(KindlabError, match="no Kubernetes API server.*--kubernetes real"):
        lab.kubeconfig()
    done = subprocess.run([sys.executable, "-m", "kindlab.cli", "get", "kubeconfig", "--name", lab.name,
                           "--backend", "netns"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "no Kubernetes API server" in done.stderr
    assert lab.nodes()["kubelet"].eq("model").all()
    with pytest.raises(KindlabError, match="already exists running model Kubernetes|cannot run here"):
        backends.up(lab.topology.source, name=lab.name, backend="netns", kubernetes="real")
