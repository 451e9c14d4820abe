"""The Kubernetes client's and its transport's exceptions as kindlab errors."""

from __future__ import annotations

import json
from typing import Any

from ...errors import ClusterError, KindlabError, NotFound

API_HINT = "is the cluster running? (`kindlab get clusters`, `kind get clusters`)"


def kubernetes_error(exc: Exception, where: str, config_hint: str = "") -> KindlabError | None:
    """The kindlab error for a Kubernetes client or urllib3 exception; None for anything else."""
    try:
        import urllib3.exceptions
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        return None
    if isinstance(exc, ConfigException):
        return ClusterError(f"{where}: no usable kubeconfig: {exc}" + (f"; {config_hint}" if config_hint else ""))
    if isinstance(exc, ApiException):
        message = api_message(exc)
        if exc.status == 404:
            return NotFound(f"{where}: {message}")
        return ClusterError(f"{where}: the API server answered {exc.status} {exc.reason}: {message}")
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return ClusterError(f"{where}: cannot reach the Kubernetes API server ({exc}); {API_HINT}")
    return None


def api_message(exc: Any) -> str:
    """The `message` of a Kubernetes Status body, else the HTTP reason."""
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason or exc.status)
