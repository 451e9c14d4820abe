"""kindlab: run the hostPort walkthrough for real, on kind or on an embedded netns lab.

Names are loaded on first use, so that `python -m kindlab.echo` and the lab's CNI
plugin start without importing pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Cluster": ("kindlab.cluster", "Cluster"),
    "HttpResponse": ("kindlab.cluster", "HttpResponse"),
    "KindlabError": ("kindlab.errors", "KindlabError"),
    "clusters": ("kindlab.backends", "clusters"),
    "delete": ("kindlab.backends", "delete"),
    "describe_choice": ("kindlab.backends", "describe_choice"),
    "get": ("kindlab.backends", "get"),
    "select_backend": ("kindlab.backends", "select_backend"),
    "up": ("kindlab.backends", "up"),
    "ways": ("kindlab.backends", "ways"),
}
_SUBMODULES = ("iptables", "heal", "doctor", "plots", "walkthrough", "topology", "objects", "errors")

__all__ = sorted([*_LAZY, "__version__", "iptables", "heal", "doctor"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'kindlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
