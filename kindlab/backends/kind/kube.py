"""The kind backend's way to its API server: the kubeconfig context kind-NAME."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from . import api_port, docker_host, tools

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def kubeconfig(name: str) -> str:
    """`kind get kubeconfig --name NAME`, its server at the host's port (api_port.py)."""
    return api_port.host_kubeconfig(name, tools.run(tools.kind_get_kubeconfig(name), timeout=60))


def api_client(name: str) -> ApiClient:
    """An ApiClient for context kind-NAME: from the kubeconfig where the machine's Docker runs the nodes, else
    (and where the kubeconfig lacks it) from `kind get kubeconfig`."""
    from kubernetes import config

    if not docker_host.own():
        try:
            return config.new_client_from_config(context=tools.context(name), persist_config=False)
        except config.ConfigException:
            pass
    return config.new_client_from_config_dict(yaml.safe_load(kubeconfig(name)), context=tools.context(name),
                                              persist_config=False)
