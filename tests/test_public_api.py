"""The names `kindlab` exports, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kindlab


def test_public_names_are_the_intended_ones():
    assert set(kindlab.__all__) == {
        "Cluster", "HttpResponse", "KindlabError", "__version__", "clusters", "delete", "doctor", "get",
        "heal", "iptables", "select_backend", "up", "describe_choice", "ways",
    }
    for name in kindlab.__all__:
        assert getattr(kindlab, name) is not None


def test_errors_form_one_tree():
    from kindlab import errors

    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, errors.KindlabError), name
            assert name in errors.__doc__, f"{name} missing from the tree in errors.py's docstring"


def test_import_does_not_load_pandas():
    code = "import sys, kindlab.echo, kindlab.errors; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_analysis_reads_capabilities_not_the_backends_name():
    """Issue 11: no module outside kindlab/backends/ compares `lab.backend` to a string or uses getattr on a lab."""
    import re
    from pathlib import Path

    package = Path(kindlab.__file__).parent
    asking = re.compile(r"backend\s*[!=]=|getattr\(\s*(lab|cluster|self\.lab)\b")
    offenders = [f"{path.relative_to(package)}:{n}: {line.strip()}"
                 for path in sorted(package.rglob("*.py")) if "backends" not in path.relative_to(package).parts
                 for n, line in enumerate(path.read_text().splitlines(), start=1) if asking.search(line)]
    assert offenders == []


def test_doctor_needs_no_heal_and_every_cluster_says_what_it_can_do():
    code = "import sys, kindlab.doctor; print('kindlab.heal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from kindlab.capabilities import Capabilities
    from kindlab.cluster import Cluster

    assert isinstance(Cluster.capabilities, property)
    assert Capabilities(backend="x").watches_pods is False and Capabilities(backend="x").poll_interval > 0
    assert callable(Cluster.watch_pods) and callable(Cluster.runtime_times)


def test_backends_register_themselves_and_meet_the_contract():
    from kindlab.backends import contract, registry

    found = registry.all_backends()
    assert [b.name for b in found] == ["kind", "netns"]     # auto-detection asks kind first
    assert all(isinstance(b, contract.Backend) for b in found)
    assert registry.kubernetes_choices() == ("real", "model")
    with pytest.raises(kindlab.KindlabError, match="unknown backend 'nope'; choose one of kind, netns"):
        registry.select("nope")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(contract.ModuleBackend("netns", 1, ("model",), "kindlab.backends.netns.backend"))


def test_every_way_says_what_it_lacks():
    for way in kindlab.ways():
        assert way.runs_here == (not way.missing)
        assert way.label in ("kind", "netns, real Kubernetes", "netns, model")


def test_auto_detection_asks_kind_first_then_the_lab(monkeypatch):
    from kindlab.backends import registry

    monkeypatch.delenv("KINDLAB_BACKEND", raising=False)
    kind, netns = registry.all_backends()
    monkeypatch.setattr(type(kind), "available", lambda self: self.name == "kind")
    assert kindlab.select_backend() == "kind"
    monkeypatch.setattr(type(kind), "available", lambda self: self.name == "netns")
    assert kindlab.select_backend() == "netns"
