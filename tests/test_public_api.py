"""The names `kindlab` exports, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import kindlab


def test_public_names_are_the_intended_ones():
    assert set(kindlab.__all__) == {
        "Cluster", "HttpResponse", "KindlabError", "__version__", "clusters", "delete", "doctor", "get",
        "heal", "iptables", "select_backend", "up",
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
