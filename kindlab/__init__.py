"""kindlab: run the hostPort walkthrough for real, on kind or on an embedded netns lab."""

from __future__ import annotations

from . import iptables
from .backends import clusters, delete, get, select_backend, up
from .cluster import Cluster, HttpResponse
from .errors import KindlabError

__version__ = "0.1.0"

__all__ = [
    "Cluster",
    "HttpResponse",
    "KindlabError",
    "__version__",
    "clusters",
    "delete",
    "get",
    "iptables",
    "select_backend",
    "up",
]
