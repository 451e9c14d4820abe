"""The one translator of the Kubernetes client's and its transport's exceptions into kindlab errors."""

from __future__ import annotations

import json
from contextlib import ContextDecorator
from typing import Any, Literal

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
        said = " ".join(str(exc).split())
        return ClusterError(f"{where}: no usable kubeconfig: {said}" + (f"; {config_hint}" if config_hint else ""))
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


class kube_errors(ContextDecorator):
    """Within it, Kubernetes client and transport exceptions become kindlab errors naming `where`; kindlab
    errors and programming errors pass unchanged."""

    def __init__(self, where: str, config_hint: str = ""):
        self.where = where
        self.config_hint = config_hint

    def __enter__(self) -> kube_errors:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, KindlabError) or not isinstance(exc, Exception):
            return False
        mapped = kubernetes_error(exc, self.where, self.config_hint)
        if mapped is None:
            return False
        raise mapped from None
