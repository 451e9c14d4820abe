"""Deleting a kind cluster and everything kindlab made for it: its forwarder, the host folders it made, and,
with the last cluster, kindlab's own Docker Engine (or, on the machine's Docker, kind's network `kind`)."""

from __future__ import annotations

from ...errors import KindlabError
from . import api_port, docker_host, tools
from .state import delete as delete_cluster
from .translate import translate_errors


def delete(name: str) -> bool:
    """Delete the cluster, the host folders kindlab made for it and its forwarder; with kindlab's own engine,
    the engine too once it runs no cluster. False if there was no cluster."""
    api_port.stop(name)
    if docker_host.own() and not docker_host.answers():
        return False   # no engine, no cluster
    found = delete_cluster(name)
    if clusters():
        return found
    if docker_host.own():
        left = docker_host.stop_own()
        if left:
            raise KindlabError(f"kindlab's Docker Engine left behind: {', '.join(left)}; remove them by hand")
    else:   # kind keeps its network `kind` after its last cluster; nothing else uses it then
        with translate_errors("the Docker network kind"):
            for network in docker_host.client().networks.list(names=["kind"]):
                if not network.attrs.get("Containers"):
                    network.remove()
    return found


def clusters() -> list[str]:
    """`kind get clusters` (none where kindlab's own engine does not run)."""
    if docker_host.own() and not docker_host.answers():
        return []
    return tools.kind_cluster_names()
