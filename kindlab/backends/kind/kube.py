"""The kind backend's way to its API server: the kubeconfig context kind-NAME."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from . import tools

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def api_client(name: str) -> ApiClient:
    """An ApiClient for context kind-NAME: from the kubeconfig, else from `kind get kubeconfig`."""
    from kubernetes import config

    try:
        return config.new_client_from_config(context=tools.context(name), persist_config=False)
    except config.ConfigException:
        kubeconfig = yaml.safe_load(tools.run(tools.kind_get_kubeconfig(name), timeout=60))
        return config.new_client_from_config_dict(kubeconfig, context=tools.context(name), persist_config=False)
